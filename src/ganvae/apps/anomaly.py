"""Per-image anomaly scores from a trained model; higher = the model finds the image less likely.

Which scores a model offers follows its capabilities, never its name:

- ``neg_elbo``   (has_likelihood): -ELBO, nats, estimated from ``k`` posterior samples;
- ``neg_iwae``   (has_likelihood): -L_k, the importance-weighted bound (Burda et al. 2016), same ``k`` samples;
- ``recon``      (has_encoder): mean squared pixel error of the reconstruction from the posterior mean;
- ``disc``       (has_discriminator): the negated discriminator logit (D judges real -> low score);
- ``fanogan``    (has_discriminator): the f-AnoGAN residual (Schlegl et al. 2019), see :mod:`.encoder`.

:func:`anomaly_scores` returns ``{name: (N,) float64 numpy}``; ``one_class_auroc`` turns scores and
"is anomaly" flags into AUROC per score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import GanvaeError
from ..metrics.auroc import auroc
from ..metrics.likelihood import log_weights
from ..util.modes import eval_mode
from .encoder import _float, residual_score


@dataclass(frozen=True)
class Score:
    needs: str        # the capability flag the model must have
    summary: str


SCORES: dict[str, Score] = {
    "neg_elbo": Score("has_likelihood", "-ELBO (nats), k posterior samples"),
    "neg_iwae": Score("has_likelihood", "-L_k, the importance-weighted bound (nats), the same k samples"),
    "recon": Score("has_encoder", "mean squared pixel error of the reconstruction from the posterior mean"),
    "disc": Score("has_discriminator", "the negated discriminator logit"),
    "fanogan": Score("has_discriminator", "f-AnoGAN residual: pixels + kappa * D features of x vs G(E(x))"),
}


def available(model) -> list[str]:
    """The scores ``model`` offers, in the order of :data:`SCORES`."""
    return [name for name, s in SCORES.items() if getattr(model, s.needs, False)]


def resolve_scores(model, scores: str | list[str] | None, what: str = "model") -> list[str]:
    """``--scores a,b`` checked against what ``model`` offers (None or "all": every score it offers)."""
    if model.conditional:
        raise GanvaeError("score: conditional models are not supported yet (their scores need each image's class)")
    offered = available(model)
    if scores is None or scores == "all" or scores == ["all"]:
        if not offered:
            raise GanvaeError(f"score: this {what} offers no anomaly score (it has no encoder or discriminator)")
        return offered
    names = [s.strip() for s in (scores.split(",") if isinstance(scores, str) else scores) if s.strip()]
    if not names:
        raise GanvaeError(f"--scores: expected one or more of {', '.join(SCORES)}")
    for n in names:
        if n not in SCORES:
            raise GanvaeError(f"--scores {n}: unknown score; expected one of {', '.join(SCORES)}")
        if n not in offered:
            raise GanvaeError(f"--scores {n}: needs a model with {SCORES[n].needs.replace('has_', 'a ')}; this "
                              f"{what} offers {', '.join(offered) or 'none'}")
    return list(dict.fromkeys(names))


@torch.no_grad()
def _bounds(model, x: torch.Tensor, k: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    lw = log_weights(model.bound_parts(), x, k, gen).double()      # (B, k)
    return {"neg_elbo": -lw.mean(1), "neg_iwae": -(torch.logsumexp(lw, 1) - math.log(k))}


def anomaly_scores(model, images: torch.Tensor, scores: list[str], *, k: int = 64, seed: int = 0,
                   encoder=None, kappa: float = 1.0, batch_size: int = 256,
                   on_batch: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """``{score: (N,) float64}`` for ``images`` (uint8 or float in [0, 1], (N, C, H, W)); higher = more anomalous.

    ``k``: posterior samples for neg_elbo / neg_iwae (seeded by ``seed``). ``encoder``: the trained f-AnoGAN
    encoder (needed for ``fanogan``). ``on_batch(n)``: called after each batch with its size.
    """
    if "fanogan" in scores and encoder is None:
        raise GanvaeError("score fanogan: needs the trained f-AnoGAN encoder")
    if not 1 <= k <= 100_000:
        raise GanvaeError(f"--k {k}: expected 1 to 100000 posterior samples")
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {s: [] for s in scores}
    with eval_mode(model, encoder):
        for i in range(0, images.shape[0], batch_size):
            x = _float(images[i:i + batch_size]).to(dev)
            got: dict[str, torch.Tensor] = {}
            if "neg_elbo" in scores or "neg_iwae" in scores:
                got.update(_bounds(model, x, k, gen))
            with torch.no_grad():
                if "recon" in scores:
                    got["recon"] = ((x - model.reconstruct(x)) ** 2).flatten(1).mean(1)
                if "disc" in scores:
                    got["disc"] = -model.discriminate(x).flatten()
                if "fanogan" in scores:
                    got["fanogan"] = residual_score(model, encoder, x, kappa, True)
            for s in scores:
                out[s].append(got[s].double().cpu())
            if on_batch is not None:
                on_batch(x.shape[0])
    return {s: torch.cat(v).numpy() if v else np.zeros(0) for s, v in out.items()}


def one_class_auroc(scores: dict[str, np.ndarray], is_anomaly) -> dict[str, float]:
    """AUROC per score: anomalies (``is_anomaly`` True) should score higher than normal images."""
    return {f"auroc_{name}": auroc(v, is_anomaly) for name, v in scores.items()}


# ------------------------------------------------------------------------------------ `ganvae eval --metrics auroc`
EVAL_K = 100  # posterior samples per image for neg_elbo / neg_iwae in `eval` (at most; --k lower uses --k)


def _eval_scores(model) -> list[str]:
    return [s for s in available(model) if s != "fanogan"] if model is not None else []


def _auroc_check(model, opts: dict) -> None:
    if opts.get("normal_classes") is None:
        raise GanvaeError("metric auroc needs a one-class run: train on normal data only with --set data.classes=K "
                          "(the test split's other classes are the anomalies); this run's data has no class filter")
    if opts.get("ref_labels") is None:
        raise GanvaeError("metric auroc: the test split has no class labels, so no image is known to be anomalous")
    if model is not None and model.conditional:
        raise GanvaeError("metric auroc: conditional models are not supported (their scores need each image's class)")
    if not _eval_scores(model):
        raise GanvaeError("metric auroc: this run's export offers no anomaly score (a GAN's discriminator is not in "
                          "it); use `ganvae score RUN --images SOURCE` for the disc and fanogan scores")


def _auroc_metric(x) -> dict[str, float]:
    _auroc_check(x.model, x.opts)
    normal = torch.as_tensor(x.opts["normal_classes"])
    flags = ~torch.isin(x.opts["ref_labels"].cpu(), normal)
    images = x.ref.images
    with x.gen.bar("auroc", "nll", total=images.shape[0]) as bar:
        scores = anomaly_scores(x.model, images, _eval_scores(x.model), k=min(x.opts.get("k", EVAL_K), EVAL_K),
                                seed=x.opts.get("seed", 0), on_batch=lambda n: bar.update(n))
    return one_class_auroc(scores, flags.numpy())


def _register() -> None:
    from ..metrics.registry import METRICS, Metric

    if "auroc" in METRICS.names():
        return
    keys = tuple(f"auroc_{s}" for s in SCORES if s != "fanogan")
    METRICS.add("auroc", Metric(_auroc_metric, keys, (False,) * len(keys), "model",
                                f"one-class protocol: AUROC of each anomaly score, test images of classes outside "
                                f"data.classes as anomalies (Mann-Whitney, ties 1/2; k<={EVAL_K})",
                                check=_auroc_check))


_register()

"""``evaluate(model, splits)``: every score beside its real-data and untrained baselines, with its protocol.

Protocol (written into every record): ``n_generated`` samples from the model (latent seed
``seed``) against ``n_reference`` images of the data split ``reference_split`` (a seeded
subset when the split is larger), features from ``feature_net``. The floor is the same
metric with real *training* images (as many as generated) in place of the samples: what a
perfect generator that memorised nothing would score. The ceiling uses an untrained
generator (``untrained``, built by the caller from the same config and seed).

This module takes loaded objects and returns records; reading and writing run folders
(``RUN/eval.jsonl``) is :func:`ganvae.api.evaluate`'s.
"""

from __future__ import annotations

import datetime as _dt
import math
import time

import torch

from ..errors import GanvaeError
from .registry import METRICS, EvalInputs, Side

DOMAIN_NETS = {"digits": "mnist", "shapes": "shapes"}  # data meta "domain" -> the feature net trained for it


def pick_feature_net(meta: dict) -> str:
    """``auto``: the net trained for the data's domain (digits, shapes), the digit net for any 28x28 grey
    10-class data, else EfficientNet-Lite0."""
    if meta.get("domain") in DOMAIN_NETS:
        return DOMAIN_NETS[meta["domain"]]
    if meta.get("channels") == 1 and meta.get("num_classes") == 10 and meta.get("image_size") == 28:
        return "mnist"
    return "effnet"


def subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most ``n`` rows: a seeded subset, in the original order (the same rows for images, labels, factors)."""
    if images.shape[0] <= n:
        return images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx.sort().values]


def parse_metrics(spec: str | list[str]) -> list[str]:
    names = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    if not names:
        raise GanvaeError("--metrics: give at least one metric, e.g. fid,kid")
    for m in names:
        METRICS.get(m)
    return names


def reference(splits, split: str, n: int, seed: int, net, *, k: int = 5000, kid_subset_size: int = 1000,
              binarize: bool = False) -> tuple[Side, dict]:
    """The reference side (a seeded subset of ``split``) and the options every metric reads.

    One builder for ``evaluate`` and the periodic :class:`TrainingEvaluator`, so both score the same way.
    """
    data = getattr(splits, split)
    if data.images.shape[0] < 2:
        raise GanvaeError(f"data split {split!r} of {splits.meta.get('source')} has {data.images.shape[0]} images; "
                          "nothing to compare")
    ref = Side(subset(data.images, n, seed).float() / 255, net)
    opts = {"seed": seed, "k": k, "kid_subset_size": kid_subset_size, "binarize": binarize,
            "factors": None if data.factors is None else subset(data.factors, n, seed),  # mig/dci: same rows
            "ref_labels": (subset(data.labels, n, seed)  # cacc's floor: the reference images' classes
                           if data.labels is not None and data.labels.dim() == 1 else None)}
    return ref, opts


def check(names: list[str], model, opts: dict) -> None:
    """Refuse what cannot run on this model and data before anything is scored."""
    for m in names:
        fn = METRICS.get(m).check
        if fn is not None:
            fn(model, opts)


def evaluate(model, splits, *, metrics: str | list[str] = "fid,kid,pr,dc", n: int = 10000,
             feature_net: str = "auto", split: str = "test", seed: int = 0, k: int = 5000,
             kid_subset_size: int = 1000, untrained=None, binarize: bool = False, inception_weights: str | None = None,
             device: str = "cpu", model_path: str | None = None, log=print) -> list[dict]:
    """Score ``model`` against ``splits`` (:class:`ganvae.data.DataSplits`); one record per value.

    ``untrained``: the same model untrained (for the ceiling column; None: no baselines).
    ``binarize``: nll on binarised images, as the run trained. ``model_path`` goes into the records.
    """
    from .features import get_feature_net

    names = parse_metrics(metrics)
    if n < 2:
        raise GanvaeError(f"--n {n}: expected at least 2 samples")
    if split not in ("train", "test"):
        raise GanvaeError(f"--split {split!r}: expected train or test")
    net_name = pick_feature_net(splits.meta) if feature_net == "auto" else feature_net
    uses_features = any(METRICS.get(m).uses in ("features", "logits", "conditional") for m in names)
    net = get_feature_net(net_name, device=device, **({"weights_path": inception_weights}
                                                       if net_name == "inception" else {})) if uses_features else None
    n_ref = min(n, getattr(splits, split).images.shape[0])
    if "kid" in names and n_ref < kid_subset_size:
        raise GanvaeError(f"kid: {n_ref} samples are fewer than the KID subset size "
                          f"{kid_subset_size}; raise --n or lower --kid-subset-size")
    ref, opts = reference(splits, split, n, seed, net, k=k, kid_subset_size=kid_subset_size, binarize=binarize)
    check(names, model, opts)

    t0 = time.perf_counter()
    sides = {"value": EvalInputs(Side(model.sample(n, seed=seed).cpu(), net), ref, model, opts)}
    if untrained is not None:
        floor_imgs = subset(splits.train.images, n, seed + 1).float() / 255
        sides["floor"] = EvalInputs(Side(floor_imgs, net), ref, None, opts)
        sides["ceiling"] = EvalInputs(Side(untrained.sample(n, seed=seed).cpu(), net), ref, untrained, opts)
    records = [rec for m in names for rec in _score(m, sides, dict(
        feature_net=net_name, n_generated=sides["value"].gen.images.shape[0], n_reference=ref.images.shape[0],
        reference_split=split, step=(getattr(model, "meta", None) or {}).get("step"), seed=seed,
        model_path=model_path), k, binarize)]
    if log:
        log(format_table(records, net_name, time.perf_counter() - t0))
    return records


def _score(m: str, sides: dict[str, EvalInputs], protocol: dict, k: int, binarize: bool) -> list[dict]:
    """Metric ``m`` on every side; one record per key it returns."""
    spec = METRICS.get(m)
    results = {which: spec.compute(inputs) for which, inputs in sides.items()
               if not (which == "floor" and spec.uses == "model")}  # a likelihood has no "real data" floor
    out = []
    for key in spec.keys:
        if key not in results["value"]:
            continue
        out.append({
            "metric": key,
            "value": results["value"][key],
            "floor": results.get("floor", {}).get(key),
            "ceiling": results.get("ceiling", {}).get(key),
            **protocol,
            "feature_net": protocol["feature_net"] if spec.uses != "model" else None,
            "n_generated": protocol["n_generated"] if spec.uses != "model" else 0,
            "protocol": spec.summary + (f"; k={k}" if m == "nll" else "") + ("; binarised" if m == "nll" and binarize
                                                                              else ""),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.4g}"


def format_table(records: list[dict], net_name: str | None, seconds: float) -> str:
    if not records:
        return "no results"
    r0 = records[0]
    head = (f"{r0['n_generated'] or r0['n_reference']} samples vs {r0['n_reference']} {r0['reference_split']} images; "
            f"features: {net_name}; step {r0['step']}; seed {r0['seed']}; {seconds:.0f}s")
    rows = [("metric", "model", "floor: real train", "ceiling: untrained")]
    rows += [(r["metric"], _fmt(r["value"]), _fmt(r["floor"]), _fmt(r["ceiling"])) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


class TrainingEvaluator:
    """Scores the generator during training on a smaller sample (``train.eval_n``), reference features cached.

    Called by the loop as ``evaluator(model, net) -> {"eval/<key>": value, ...}``; ``primary`` and
    ``lower_is_better`` say which value ``--keep-best`` follows. Built with the same :func:`reference`
    and :func:`check` as :func:`evaluate`; nll uses k=100 importance samples.
    """

    def __init__(self, metric: str, model, splits, n: int, seed: int = 0, device: str = "cpu",
                 binarize: bool = False):
        from .features import get_feature_net

        self.spec = METRICS.get(metric)
        self.metric, self.n, self.seed = metric, n, seed
        self.primary = self.spec.keys[0]
        self.lower_is_better = self.spec.lower_is_better[0]
        net = None if self.spec.uses == "model" else get_feature_net(pick_feature_net(splits.meta), device=device)
        self.ref, self.opts = reference(splits, "test", n, seed, net, k=100, binarize=binarize)
        check([metric], model, self.opts)
        if net is not None:
            _ = self.ref.features  # once

    def __call__(self, model, net=None) -> dict[str, float]:
        gen = Side(model.sample(self.n, seed=self.seed, net=net).cpu(), self.ref.net)
        out = self.spec.compute(EvalInputs(gen, self.ref, model, self.opts))
        return {f"eval/{k}": float(v) for k, v in out.items() if k in self.spec.keys}

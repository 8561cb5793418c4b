"""The metric registry: each entry adapts one metric module to one signature.

A metric takes an :class:`EvalInputs` (generated and reference images, lazily
computed features and class logits, the model) and returns named values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import GanvaeError
from ..registry import Registry


@dataclass
class Side:
    """One set of images with its features and logits, computed once, on first use."""

    images: torch.Tensor   # (N, C, H, W) float in [0, 1], CPU
    net: object            # a FeatureNet
    _feats: torch.Tensor | None = None
    _logits: torch.Tensor | None = None

    @property
    def features(self) -> torch.Tensor:
        if self._feats is None:
            self._feats = self.net.features(self.images).double()
        return self._feats

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            out = self.net.logits(self.images)
            if out is None:
                raise GanvaeError(f"feature net {self.net.name!r} has no class outputs; "
                                  "use --feature-net mnist for is/modes")
            self._logits = out.double()
        return self._logits


@dataclass
class EvalInputs:
    gen: Side                 # the images under test (generated, or real train for the floor)
    ref: Side                 # the reference split
    model: object | None      # the generator (for model-based metrics like nll)
    opts: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    compute: Callable[[EvalInputs], dict[str, float]]
    keys: tuple[str, ...]      # the values it returns, in print order
    lower_is_better: tuple[bool, ...]
    uses: str                  # "features", "logits" or "model"
    summary: str


METRICS: Registry[Metric] = Registry("metric")


def _fid(x: EvalInputs):
    from .frechet import fid
    return {"fid": fid(x.gen.features, x.ref.features)}


def _kid(x: EvalInputs):
    from .kid import kid
    size = x.opts.get("kid_subset_size", 1000)
    return kid(x.gen.features, x.ref.features, subset_size=size, seed=x.opts.get("seed", 0))


def _prdc(x: EvalInputs):
    if "prdc" not in x.cache:
        from .prdc import prdc
        x.cache["prdc"] = prdc(x.ref.features, x.gen.features, k=x.opts.get("k_nn", 5))
    return x.cache["prdc"]


def _pr(x: EvalInputs):
    r = _prdc(x)
    return {"precision": r["precision"], "recall": r["recall"]}


def _dc(x: EvalInputs):
    r = _prdc(x)
    return {"density": r["density"], "coverage": r["coverage"]}


def _is(x: EvalInputs):
    from .inception_score import inception_score
    return inception_score(x.gen.logits, from_logits=True)


def _modes(x: EvalInputs):
    from .modes import class_histogram, mode_coverage
    c = x.gen.logits.shape[1]
    ref_hist = class_histogram(x.ref.logits.argmax(1), c)
    out = mode_coverage(x.gen.logits.argmax(1), c, reference=ref_hist)
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


def _nll(x: EvalInputs):
    from .likelihood import vae_bounds
    m = x.model
    if m is None or getattr(m, "family", None) != "vae":
        raise GanvaeError("metric nll needs a VAE run (it bounds log p(x) with the encoder)")
    r = vae_bounds(m, x.ref.images, k=x.opts.get("k", 5000), seed=x.opts.get("seed", 0),
                   binarize=x.opts.get("binarize", False))
    return {"elbo": r["elbo"], "nll": r["nll"], "nll_bits_per_dim": r["nll_bits_per_dim"]}


METRICS.add("fid", Metric(_fid, ("fid",), (True,), "features", "Frechet distance of Gaussian fits (Heusel et al. 2017)"))
METRICS.add("kid", Metric(_kid, ("kid", "kid_std"), (True, True), "features",
                          "unbiased MMD^2, cubic kernel, subsets (Binkowski et al. 2018)"))
METRICS.add("pr", Metric(_pr, ("precision", "recall"), (False, False), "features",
                         "k-NN manifold precision/recall, k=5 (Kynkaanniemi et al. 2019)"))
METRICS.add("dc", Metric(_dc, ("density", "coverage"), (False, False), "features",
                         "density/coverage, k=5 (Naeem et al. 2020)"))
METRICS.add("is", Metric(_is, ("is", "is_std"), (False, False), "logits",
                         "Inception-Score-style exp E KL(p(y|x)||p(y)) from the feature net's classifier, 10 splits"))
METRICS.add("modes", Metric(_modes, ("modes_covered", "kl_to_uniform", "tv_to_reference"), (False, True, True),
                            "logits", "class histogram of samples by the feature net's classifier"))
METRICS.add("nll", Metric(_nll, ("elbo", "nll", "nll_bits_per_dim"), (False, True, True), "model",
                          "VAE: held-out ELBO and importance-weighted bound L_k (Burda et al. 2016)"))

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
from .progress import OFF, Feedback


@dataclass
class Side:
    """One set of images with its features and logits, computed once, on first use."""

    images: torch.Tensor   # (N, C, H, W) float in [0, 1], CPU
    net: object            # a FeatureNet
    _feats: torch.Tensor | None = None
    _logits: torch.Tensor | None = None
    feedback: Feedback = OFF  # progress bars (stage "features") while computing features and logits
    label: str = ""           # what these images are, in the bars: "model", "real data", "untrained", ...

    def bar(self, what: str, stage: str, total: int | None = None):
        return self.feedback.bar(self.images.shape[0] if total is None else total, f"{what}: {self.label}", stage)

    @property
    def features(self) -> torch.Tensor:
        if self._feats is None:
            with self.bar("features", "features") as bar:
                self._feats = self.net.features(self.images, progress=bar).double()
        return self._feats

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            if getattr(self.net, "num_classes", None) is None:
                out = None
            else:
                with self.bar("class outputs", "features") as bar:
                    out = self.net.logits(self.images, progress=bar)
            if out is None:
                raise GanvaeError(f"feature net {self.net.name!r} has no class outputs; "
                                  "use --feature-net mnist for is/modes")
            self._logits = out.double()
        return self._logits


@dataclass
class EvalInputs:
    gen: Side                 # the images under test (generated, or real train images for "real data")
    ref: Side                 # the reference split
    model: object | None      # the generator (for model-based metrics like nll)
    opts: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    compute: Callable[[EvalInputs], dict[str, float]]
    keys: tuple[str, ...]      # the values it returns, in print order
    lower_is_better: tuple[bool, ...]
    uses: str                  # "features", "logits", "conditional", "model" or "images" (pixels only)
    summary: str
    check: Callable[[object, dict], None] | None = None  # (model, opts): raises before any scoring if it cannot run
    headline: tuple[str, ...] | None = None  # keys read out in words after the table (None: all but *_std)

    def headlines(self) -> tuple[str, ...]:
        return self.headline if self.headline is not None else tuple(k for k in self.keys if not k.endswith("_std"))


METRICS: Registry[Metric] = Registry("metric")


def _fid(x: EvalInputs):
    from .frechet import fid
    return {"fid": fid(x.gen.features, x.ref.features)}


def _kid(x: EvalInputs):
    from .kid import kid
    # never more than either side has (evaluate() picks one size for all sides and says so in the protocol)
    size = min(x.opts.get("kid_subset_size", 1000), x.gen.images.shape[0], x.ref.images.shape[0])
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


def _cacc_check(m, opts=None) -> None:
    if not m.conditional:
        raise GanvaeError(f"metric cacc needs a conditional model (cdcgan, cvae); this run is {m.registered_name}")


def _nll_check(m, opts=None) -> None:
    if m is None or not m.has_encoder:
        raise GanvaeError("metric nll needs a VAE run (it bounds log p(x) with the encoder)")
    if m.conditional:
        raise GanvaeError("metric nll: the bound for conditional VAEs (log p(x | y)) is not implemented")
    if not m.has_likelihood:
        raise GanvaeError(f"metric nll: {m.registered_name} has no pixel likelihood p(x | z) to bound "
                          "(its reconstruction is measured in a discriminator's features)")


def _factors_check(metric: str):
    def check(m, opts) -> None:
        if m is None or not m.has_encoder:
            raise GanvaeError(f"metric {metric} needs a VAE run (it reads the encoder's posterior means)")
        if opts.get("factors") is None:
            raise GanvaeError(f"metric {metric} needs data with ground-truth factors (e.g. --data shapes); "
                              "this run's data has none")
    return check


def _cacc(x: EvalInputs):
    """Conditional accuracy: the share of samples of class c that the feature net's classifier calls c."""
    net = x.gen.net
    if x.model is None:  # real data: the classifier on real reference images with their true labels
        y = x.opts.get("ref_labels")
        if y is None:
            return {}
        pred = x.ref.logits.argmax(1)
        return {"cacc": (pred == y.to(pred.device)).double().mean().item()}
    m = x.model
    _cacc_check(m)
    c = m.config.num_classes
    n = x.gen.images.shape[0]
    labels = torch.arange(n) % c  # every class equally often
    imgs = m.sample(n, seed=x.opts.get("seed", 0), labels=labels).cpu()
    logits = net.logits(imgs)
    if logits is None or logits.shape[1] != c:
        raise GanvaeError(f"metric cacc needs a feature net whose classifier has the run's {c} classes "
                          f"(feature net {net.name!r} has {None if logits is None else logits.shape[1]}); "
                          "for digits use --feature-net mnist")
    return {"cacc": (logits.argmax(1) == labels).double().mean().item()}


def _nll(x: EvalInputs):
    from .likelihood import vae_bounds
    m = x.model
    _nll_check(m)
    with x.gen.bar("nll", "nll", total=x.ref.images.shape[0]) as bar:
        r = vae_bounds(m, x.ref.images, k=x.opts.get("k", 5000), seed=x.opts.get("seed", 0),
                       binarize=x.opts.get("binarize", False), progress=bar)
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
METRICS.add("cacc", Metric(_cacc, ("cacc",), (False,), "conditional",
                           "conditional models: share of class-c samples the feature net classifies as c, "
                           "classes balanced", check=_cacc_check))
METRICS.add("nll", Metric(_nll, ("elbo", "nll", "nll_bits_per_dim"), (False, True, True), "model",
                          "VAE: held-out ELBO and importance-weighted bound L_k (Burda et al. 2016)",
                          check=_nll_check, headline=("elbo", "nll")))


def _spectrum(x: EvalInputs):
    from .spectrum import checkerboard, spectral_distance
    return {"spectral_distance": spectral_distance(x.gen.images, x.ref.images),
            "checkerboard": checkerboard(x.gen.images, x.ref.images)}


METRICS.add("spectrum", Metric(_spectrum, ("spectral_distance", "checkerboard"), (True, True), "images",
                               "pixel power spectra against the reference: mean |log10| ratio over frequency "
                               "rings (blur, artefacts), and the period-2 (checkerboard) power share over the "
                               "reference's"))


def _codes_and_factors(x: EvalInputs, metric: str):
    from .mig import encode_means
    factors = x.opts.get("factors")
    _factors_check(metric)(x.model, x.opts)
    if "codes" not in x.cache:
        x.cache["codes"] = encode_means(x.model, x.ref.images)
    return x.cache["codes"], factors


def _mig(x: EvalInputs):
    from .mig import mig
    codes, factors = _codes_and_factors(x, "mig")
    return {"mig": mig(codes, factors)["mig"]}


def _dci(x: EvalInputs):
    from .mig import dci
    codes, factors = _codes_and_factors(x, "dci")
    r = dci(codes, factors, seed=x.opts.get("seed", 0))
    return {"dci_disentanglement": r["disentanglement"], "dci_completeness": r["completeness"],
            "dci_informativeness": r["informativeness"]}


METRICS.add("mig", Metric(_mig, ("mig",), (False,), "model",
                          "VAE: mutual information gap of posterior means vs the data's factors, 20 bins "
                          "(Chen et al. 2018)", check=_factors_check("mig")))
METRICS.add("dci", Metric(_dci, ("dci_disentanglement", "dci_completeness", "dci_informativeness"),
                          (False, False, False), "model",
                          "VAE: DCI of posterior means vs the data's factors, random-forest importances "
                          "(Eastwood & Williams 2018)", check=_factors_check("dci")))

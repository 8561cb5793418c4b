"""Evaluation of translation models (pix2pix, cyclegan) through the one ``evaluate``.

:func:`translation_view` turns a translation model and its two-domain data into what ``evaluate`` scores:
"samples" are the model's translations of the source domain's test images (a seeded subset, ``n`` of them),
and the data is the target domain's (its test split the reference, its train split the real-data baseline).
So fid, kid, pr, dc measure the target domain (with the target's feature net), and the metrics below add:

* ``labels`` (label preservation): the share of translated images that the target domain's classifier (the
  feature net's class outputs; digits -> MNIST: the shipped MNIST net) assigns to the source image's label.
  Real data: the classifier's accuracy on the reference images.
* ``paired`` (paired data only): L1, PSNR and SSIM of each translation against its ground truth, and the
  same for the input itself (``input_l1``, ``input_ssim``: the bar a translation must beat).

SSIM (Wang et al. 2004) is written here: an 11x11 Gaussian window with sigma 1.5 (smaller when an image is
under 11 px: the largest odd size that fits), K1 = 0.01, K2 = 0.03, data range 1, 'valid' filtering, the
mean over windows, channels and images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.config import DataSplits, ImageData
from ..errors import GanvaeError
from .registry import METRICS, EvalInputs, Metric


# ---------------------------------------------------------------- SSIM, PSNR, L1 on (N, C, H, W) in [0, 1]

def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size, size) weights summing to 1."""
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, k1: float = 0.01, k2: float = 0.03, size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of image pairs ``x``, ``y`` (N, C, H, W) in [0, 1] (data range 1)."""
    size = min(size, x.shape[-1] - (1 - x.shape[-1] % 2), x.shape[-2] - (1 - x.shape[-2] % 2))
    c = x.shape[1]
    w = gaussian_window(size, sigma).to(x.device)[None, None].expand(c, 1, size, size)
    x, y = x.double(), y.double()

    def filt(t):
        return F.conv2d(t, w, groups=c)  # 'valid': each value is one window's weighted mean

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """10 log10(1 / MSE) over every pixel of the pairs (data range 1); inf for identical images."""
    mse = (x.double() - y.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def mean_l1(x: torch.Tensor, y: torch.Tensor) -> float:
    return (x.double() - y.double()).abs().mean().item()


# ---------------------------------------------------------------- the view evaluate() scores

def seeded_rows(n_all: int, n: int, seed: int) -> torch.Tensor:
    """The rows ``evaluate.subset`` keeps: all when ``n_all <= n``, else a seeded subset in order."""
    if n_all <= n:
        return torch.arange(n_all)
    return torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))[:n].sort().values


class TranslationView:
    """A translation model as ``evaluate`` sees it: ``sample(n, seed)`` translates n seeded source test images.

    Everything else (flags, config, meta, registered name) is the model's.
    """

    def __init__(self, model, source: ImageData, targets: torch.Tensor | None, direction: str = "a2b"):
        self._model, self.source, self.targets, self.direction = model, source, targets, direction

    def __getattr__(self, name):
        return getattr(self.__dict__["_model"], name)

    def rows(self, n: int, seed: int | None) -> torch.Tensor:
        return seeded_rows(self.source.images.shape[0], n, int(seed or 0))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, **kw) -> torch.Tensor:
        x = self.source.images[self.rows(n, seed)].float() / 255
        return self._model.translate(x, self.direction)

    def source_labels(self, n: int, seed: int | None) -> torch.Tensor | None:
        return None if self.source.labels is None else self.source.labels[self.rows(n, seed)]


def translation_view(model, splits: DataSplits, untrained=None, direction: str = "a2b"):
    """(view of ``model``, the target domain's splits, view of ``untrained``) for ``evaluate``."""
    if direction == "b2a":
        raise GanvaeError("evaluation of translation runs scores a2b (source A -> target B)")
    src = splits.test
    if src.images.shape[0] < 2:
        raise GanvaeError(f"data source {splits.meta.get('source')!r}: its test split has {src.images.shape[0]} "
                          "source images; nothing to translate")
    if splits.b is not None:  # unpaired: B's own splits
        target, partners = splits.b, None
    else:  # paired: the partners, with the A rows' labels
        meta = {**splits.meta, "channels": splits.meta.get("channels_b", splits.meta["channels"]), "source": "B of "
                + str(splits.meta.get("source"))}
        meta["domain"] = splits.meta.get("domain")
        target = DataSplits(train=ImageData(splits.train.b, splits.train.labels),
                            test=ImageData(src.b, src.labels), meta=meta)
        partners = src.b
    wrap = (lambda m: None if m is None else TranslationView(m, src, partners, direction))
    return wrap(model), target, wrap(untrained)


# ---------------------------------------------------------------- metrics

def _view_check(metric: str, paired: bool = False):
    def check(m, opts=None) -> None:
        if m is None or not getattr(m, "translation", False):
            raise GanvaeError(f"metric {metric} needs a translation run (pix2pix, cyclegan)")
        if paired and getattr(m, "targets", None) is None:
            raise GanvaeError(f"metric {metric} needs paired data (ground-truth targets); this run's data is unpaired")
    return check


def _labels(x: EvalInputs):
    if x.model is None:  # real data: the classifier's accuracy on the reference images with their true labels
        y = x.opts.get("ref_labels")
        if y is None:
            return {}
        pred = x.ref.logits.argmax(1)
        return {"label_preservation": (pred == y.to(pred.device)).double().mean().item()}
    n = x.gen.images.shape[0]
    labels = x.model.source_labels(n, x.opts.get("seed", 0))
    if labels is None:
        raise GanvaeError("metric labels needs labels on the source domain's test images; this data has none")
    k = x.model.config.num_classes
    if x.gen.logits.shape[1] != k:
        raise GanvaeError(f"metric labels needs a feature net whose classifier has the data's {k} classes (feature "
                          f"net {x.gen.net.name!r} has {x.gen.logits.shape[1]}); for digits use --feature-net mnist")
    pred = x.gen.logits.argmax(1)
    return {"label_preservation": (pred.cpu() == labels.cpu()).double().mean().item()}


def _paired(x: EvalInputs):
    m = x.model
    _view_check("paired", paired=True)(m)
    rows = m.rows(x.gen.images.shape[0], x.opts.get("seed", 0))
    out, target = x.gen.images.double(), m.targets[rows].double() / 255
    inp = m.source.images[rows].double() / 255
    inp = inp.expand(-1, target.shape[1], -1, -1) if inp.shape[1] == 1 else inp
    if inp.shape[1] != target.shape[1]:  # colour input, grey target: the input's mean over channels
        inp = inp.mean(1, keepdim=True)
    return {"l1": mean_l1(out, target), "psnr": psnr(out, target), "ssim": ssim(out, target).item(),
            "input_l1": mean_l1(inp, target), "input_ssim": ssim(inp, target).item()}


METRICS.add("labels", Metric(_labels, ("label_preservation",), (False,), "logits",
                             "translation: share of translated test images the target domain's classifier gives "
                             "the source label", check=_view_check("labels")))
METRICS.add("paired", Metric(_paired, ("l1", "psnr", "ssim", "input_l1", "input_ssim"),
                             (True, False, False, True, False), "model",
                             "paired translation: L1, PSNR, SSIM (Gaussian 11, sigma 1.5) of translations against "
                             "their ground truth, and of the input itself", check=_view_check("paired", True),
                             headline=("l1", "ssim")))




class TranslationEvaluator:
    """The periodic evaluation (``--eval-every``) of a translation run: a :class:`TrainingEvaluator` built on
    the view and the target domain's splits; the loop's ``evaluator(model, net)`` scores the view."""

    def __init__(self, inner, view: TranslationView):
        self.inner, self.view = inner, view
        self.primary, self.lower_is_better = inner.primary, inner.lower_is_better

    def __call__(self, model, net=None) -> dict[str, float]:
        return self.inner(self.view, None)

"""Mode statistics from a classifier's predicted labels on generated samples.

The usual mode-collapse measures of the GAN literature (e.g. Stacked MNIST
mode counts and KL to the uniform label distribution: Metz et al. 2017,
"Unrolled GANs"; Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018,
"PacGAN"), plus total variation to a reference label histogram (e.g. the
classifier's histogram on real data) and the accuracy of class-conditional
generation (the share of samples classified as the class that was asked for).

Protocol choices:

* shares are counts / number of samples (classes never predicted get 0);
* a mode is *covered* when its share is ``>= min_share`` and it has at least
  one sample. Default ``min_share = 0.1 / num_classes``: a class needs a tenth
  of its share under a uniform distribution, so a few stray
  misclassifications do not count as a mode (PacGAN counts any class with >= 1
  sample: pass ``min_share=0`` for that);
* ``kl_to_uniform = KL(p || U) = sum_c p_c log(p_c * C)`` in nats, 0 log 0 = 0
  (0 for a uniform histogram, log C for a single class);
* ``tv_to_reference = 0.5 * sum_c |p_c - q_c|`` with the reference histogram
  ``q`` normalised to sum 1 (it may be given as shares or counts).
"""

from __future__ import annotations

import numpy as np

from ganvae.errors import GanvaeError

__all__ = ["class_histogram", "mode_coverage", "conditional_accuracy"]


def _labels(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise GanvaeError(f"{name} must be a 1-D array of class indices, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
            raise GanvaeError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def class_histogram(pred_labels, num_classes: int) -> list[float]:
    """Share of samples predicted as each class ``0 .. num_classes-1`` (sums to 1)."""
    if num_classes < 1:
        raise GanvaeError(f"num_classes must be >= 1, got {num_classes}")
    y = _labels(pred_labels, "pred_labels")
    if y.size == 0:
        raise GanvaeError("class histogram of zero samples: generate at least one sample")
    if y.min() < 0 or y.max() >= num_classes:
        raise GanvaeError(
            f"predicted labels must lie in 0..{num_classes - 1}, got values {y.min()}..{y.max()}"
        )
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return [float(c) for c in counts / y.size]


def mode_coverage(
    pred_labels, num_classes: int, min_share: float | None = None, reference=None
) -> dict[str, float]:
    """``{"modes_covered": int, "kl_to_uniform": float[, "tv_to_reference": float]}``.

    ``reference`` (optional): a length-``num_classes`` histogram (shares or
    counts) to compare with, e.g. the classifier's histogram on real data.
    """
    p = np.asarray(class_histogram(pred_labels, num_classes))
    if min_share is None:
        min_share = 0.1 / num_classes
    if not 0 <= min_share <= 1:
        raise GanvaeError(f"min_share must lie in [0, 1], got {min_share}")
    covered = int(np.count_nonzero((p > 0) & (p >= min_share)))
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] * num_classes)))
    out: dict[str, float] = {"modes_covered": covered, "kl_to_uniform": max(kl, 0.0)}
    if reference is not None:
        if hasattr(reference, "detach"):
            reference = reference.detach().cpu().numpy()
        q = np.asarray(reference, dtype=np.float64)
        if q.shape != (num_classes,) or (q < 0).any() or not q.sum() > 0:
            raise GanvaeError(
                f"reference histogram must have {num_classes} non-negative entries with a positive sum, "
                f"got shape {q.shape}"
            )
        q = q / q.sum()
        out["tv_to_reference"] = float(0.5 * np.abs(p - q).sum())
    return out


def conditional_accuracy(pred_labels, requested_labels) -> float:
    """Share of generated samples whose predicted class equals the requested class."""
    pred = _labels(pred_labels, "pred_labels")
    req = _labels(requested_labels, "requested_labels")
    if pred.shape != req.shape:
        raise GanvaeError(f"pred_labels and requested_labels differ in length: {pred.size} vs {req.size}")
    if pred.size == 0:
        raise GanvaeError("conditional accuracy of zero samples: generate at least one sample")
    return float(np.mean(pred == req))

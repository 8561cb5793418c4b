"""Inception Score (IS).

Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen 2016, "Improved
Techniques for Training GANs" (NeurIPS)::

    IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x)

computed per split and reported as mean and standard deviation over splits.

Protocol choices:

* input is ``(n, C)`` class logits or probabilities. ``from_logits=None``
  (default) decides: rows that are non-negative and sum to 1 (atol 1e-4) are
  probabilities, anything else is logits (turned into probabilities with a
  float64 log-softmax). Pass ``from_logits=True/False`` to force it;
* ``splits`` consecutive parts via ``numpy.array_split`` (sizes differ by at
  most 1; the original code drops the remainder ``n % splits`` instead);
  p(y) is the marginal within each split, as in the original code;
* ``0 * log 0 = 0``; ``is_std`` is the population std over splits
  (``ddof=0``, ``np.std`` as in the original code); float64 throughout.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, xlogy

from ganvae.errors import GanvaeError

__all__ = ["inception_score"]


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _looks_like_probs(a: np.ndarray) -> bool:
    return bool((a >= 0).all() and np.allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-4))


def inception_score(preds, splits: int = 10, from_logits: bool | None = None) -> dict[str, float]:
    """``{"is": mean, "is_std": std}`` over ``splits`` parts of ``preds`` ``(n, C)`` (logits or probabilities)."""
    a = _f64(preds)
    if a.ndim != 2 or a.shape[1] < 1:
        raise GanvaeError(f"IS: predictions must be a 2-D array (samples, classes), got shape {a.shape}")
    n = a.shape[0]
    if splits < 1 or n < splits:
        raise GanvaeError(f"IS: need at least one sample per split, got {n} samples for {splits} splits")
    if not np.isfinite(a).all():
        raise GanvaeError("IS: predictions contain NaN or inf values")
    if from_logits is None:
        from_logits = not _looks_like_probs(a)
    if from_logits:
        logp = log_softmax(a, axis=1)
        p = np.exp(logp)
    else:
        if (a < 0).any():
            raise GanvaeError("IS: probabilities must be non-negative (pass from_logits=True for logits)")
        p = a / a.sum(axis=1, keepdims=True)
        logp = None
    scores = []
    for idx in np.array_split(np.arange(n), splits):
        part = p[idx]
        marginal = part.mean(axis=0)
        # p log p - p log p(y), with 0 log 0 = 0 (also for underflowed softmax entries)
        p_log_p = xlogy(part, part) if logp is None else part * logp[idx]
        kl = p_log_p - xlogy(part, marginal)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    scores = np.asarray(scores)
    return {"is": float(scores.mean()), "is_std": float(scores.std())}

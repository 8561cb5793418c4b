"""Kernel Inception Distance (KID).

Bińkowski, Sutherland, Arbel, Gretton 2018, "Demystifying MMD GANs" (ICLR).
KID is the squared MMD between two feature sets under the cubic polynomial
kernel ``k(x, y) = (x·y / d + 1)^3`` (d = feature dimension).

Protocol choices (as the reference ``polynomial_mmd_averages`` of the paper's
code, also used by torch-fidelity):

* each of ``n_subsets`` rounds draws ``subset_size`` rows from each set,
  without replacement within a subset (independently across rounds), from one
  ``numpy.random.default_rng(seed)`` stream — so results are deterministic for
  a seed (the index stream differs from the reference's legacy RandomState);
* per subset, the *unbiased* estimator (diagonals of K_XX and K_YY dropped)::

      MMD^2_u = sum_{i!=j} k(x_i,x_j) / (m(m-1)) + sum_{i!=j} k(y_i,y_j) / (m(m-1))
                - 2 sum_{i,j} k(x_i,y_j) / m^2

  It can be negative; values are NOT clipped at 0;
* ``kid`` is the mean over subsets, ``kid_std`` the standard deviation over
  subsets (``ddof=0``, as torch-fidelity's ``np.std``); computed in float64.
"""

from __future__ import annotations

import numpy as np

from ganvae.errors import GanvaeError

__all__ = ["kid", "kid_subset_values", "polynomial_kernel", "mmd2_unbiased"]


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x @ y.T / d + 1) ** 3`` for ``x`` ``(n, d)`` and ``y`` ``(m, d)``."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD^2 (cubic polynomial kernel) between two equal-size sets ``(m, d)``."""
    x, y = _f64(x), _f64(y)
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise GanvaeError(f"KID: subsets must have the same size >= 2, got {m} and {y.shape[0]}")
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_subset_values(
    feats_a, feats_b, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> np.ndarray:
    """The ``n_subsets`` per-subset unbiased MMD^2 values that :func:`kid` averages."""
    a, b = _f64(feats_a), _f64(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise GanvaeError(f"KID: need two 2-D feature arrays with the same width, got {a.shape} and {b.shape}")
    if n_subsets < 1 or subset_size < 2:
        raise GanvaeError(f"KID: need n_subsets >= 1 and subset_size >= 2, got {n_subsets} and {subset_size}")
    n_min = min(a.shape[0], b.shape[0])
    if n_min < subset_size:
        raise GanvaeError(
            f"KID: subset size {subset_size} exceeds the samples available "
            f"({a.shape[0]} and {b.shape[0]}); lower the KID subset size to <= {n_min} or raise --n"
        )
    rng = np.random.default_rng(seed)
    mmds = np.empty(n_subsets)
    for i in range(n_subsets):
        xa = a[rng.choice(a.shape[0], subset_size, replace=False)]
        xb = b[rng.choice(b.shape[0], subset_size, replace=False)]
        mmds[i] = mmd2_unbiased(xa, xb)
    return mmds


def kid(feats_a, feats_b, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID between ``feats_a`` ``(n_a, d)`` and ``feats_b`` ``(n_b, d)``: ``{"kid": mean, "kid_std": std}``."""
    mmds = kid_subset_values(feats_a, feats_b, n_subsets=n_subsets, subset_size=subset_size, seed=seed)
    return {"kid": float(mmds.mean()), "kid_std": float(mmds.std())}

"""Fréchet distance between Gaussians fitted to feature sets (FID).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium" (NeurIPS). For N(mu1, S1) and N(mu2, S2)::

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

Protocol choices (kept as in the reference code, pytorch-fid / TTUR):

* statistics are the sample mean and the sample covariance with ``ddof=1``
  (``np.cov(rowvar=False)``), computed in float64;
* the default ``method="sqrtm"`` takes ``scipy.linalg.sqrtm(S1 @ S2)``; when the
  result is not finite, ``eps * I`` is added to both covariances and the root
  retaken; a small imaginary part (numerical noise) is dropped, a large one
  (|imag| on the diagonal > 1e-3, i.e. near-singular covariances, typically
  fewer samples than feature dimensions) raises :class:`GanvaeError`;
* ``method="eigh"`` is an equivalent, symmetric route:
  ``Tr (S1 S2)^{1/2} = sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))`` with negative
  eigenvalues (round-off) clipped at 0. The tests check both agree;
* the result is clipped at 0 (a squared distance; round-off can otherwise give
  e.g. ``-1e-12`` for identical statistics).

Functions accept numpy arrays, torch tensors or nested lists and return plain
Python floats (``gaussian_stats`` returns float64 numpy arrays).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from ganvae.errors import GanvaeError

__all__ = ["gaussian_stats", "frechet_distance", "fid"]


def _f64(x) -> np.ndarray:
    """Any array-like (numpy, torch, list) as a float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _features(feats, name: str = "features") -> np.ndarray:
    a = _f64(feats)
    if a.ndim != 2:
        raise GanvaeError(f"{name} must be a 2-D array (samples, dims), got shape {tuple(a.shape)}")
    if a.shape[0] < 2:
        raise GanvaeError(f"{name} needs at least 2 samples for a covariance, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise GanvaeError(f"{name} contain NaN or inf values")
    return a


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and sample covariance ``(d, d)`` (ddof=1) of ``feats`` ``(n, d)``, float64."""
    a = _features(feats)
    mu = a.mean(axis=0)
    sigma = np.atleast_2d(np.cov(a, rowvar=False, ddof=1))
    return mu, sigma


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    with warnings.catch_warnings():  # singular products are handled below (offset, or a clear error)
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise GanvaeError(
                f"FID: covariances are near-singular (imaginary part {imag:.3g} in sqrt(S1 S2)); "
                "use more samples than feature dimensions (raise --n)"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``method`` is ``"sqrtm"`` (default, as pytorch-fid) or ``"eigh"``; see the
    module docstring. Scalars are accepted for the 1-D case.
    """
    mu1, mu2 = np.atleast_1d(_f64(mu1)), np.atleast_1d(_f64(mu2))
    s1, s2 = np.atleast_2d(_f64(sigma1)), np.atleast_2d(_f64(sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise GanvaeError(
            f"FID: shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}"
        )
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(s1, s2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    else:
        raise GanvaeError(f"FID: unknown method {method!r}; use 'sqrtm' or 'eigh'")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fid(feats_a, feats_b, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """FID between two feature sets ``(n_a, d)`` and ``(n_b, d)`` (e.g. Inception pool3 features)."""
    a = _features(feats_a, "feats_a")
    b = _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise GanvaeError(f"FID: feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    return frechet_distance(mu1, s1, mu2, s2, eps=eps, method=method)

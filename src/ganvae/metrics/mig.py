"""Disentanglement of a VAE's code against ground-truth factors: MIG and DCI.

MIG (Chen et al. 2018): discretise each latent (the posterior mean) into ``n_bins``
equal-width bins over its observed range; discretise each factor the same way when
it is continuous (more than ``n_bins`` distinct values), else take its distinct values
as categories. For factor k, with plug-in mutual informations I(z_d; v_k) (nats) and
entropy H(v_k), MIG_k = (I_top1 - I_top2) / H(v_k); MIG is the mean over the factors
that are not constant. 1 = each factor is captured by exactly one latent; 0 = no
latent stands out. Plug-in MI between independent variables is biased upwards by about
(bins_a - 1)(bins_b - 1) / (2 N) nats, so perfect codes score slightly below 1.

DCI (Eastwood & Williams 2018), random-forest version: one forest per factor predicts
it from the standardised codes (a classifier for categorical factors, a regressor for
continuous ones) on 2/3 of the examples; the impurity importances form R (D x K); every split considers
every code (max_features=None, as gradient boosting does), so an unused code gets no importance.
Disentanglement = sum_d rho_d (1 - H_K(R_d / sum R_d)) with rho_d = sum R_d / sum R,
completeness = mean_k (1 - H_D(R_k / sum R_k)) (entropies in base K and D), and
informativeness = mean over factors of the held-out accuracy (categorical) or R^2
(continuous) on the remaining 1/3.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GanvaeError
from ..util.modes import eval_mode


def _as_2d(a, name: str) -> np.ndarray:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    a = a.astype(np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise GanvaeError(f"{name}: expected a (N, D) matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise GanvaeError(f"{name}: contains NaN or infinite values")
    return a


def histogram_bins(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """(N,) continuous values -> int bin indices 0..n_bins-1, equal-width over [min, max]."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape[0], dtype=np.int64)
    edges = np.linspace(lo, hi, n_bins + 1)
    return np.clip(np.digitize(values, edges[1:-1]), 0, n_bins - 1).astype(np.int64)


def discretize_factor(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """A factor column -> int codes: its distinct values when at most ``n_bins``, else histogram bins."""
    uniq, inverse = np.unique(values, return_inverse=True)
    if uniq.size <= n_bins:
        return inverse.reshape(-1).astype(np.int64)
    return histogram_bins(values, n_bins)


def entropy(a: np.ndarray) -> float:
    """Plug-in entropy (nats) of int codes."""
    p = np.bincount(a) / a.shape[0]
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two int code arrays of the same length."""
    n = a.shape[0]
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    ai, bi = ai.reshape(-1), bi.reshape(-1)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    pxy = joint / n
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float(max(0.0, (pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum()))


def mig(codes, factors, n_bins: int = 20) -> dict:
    """Mutual information gap of ``codes`` (N, D) against ``factors`` (N, K).

    Returns ``mig`` (mean over non-constant factors), ``per_factor`` (K values; NaN for a
    constant factor) and ``mi`` (D x K normalised mutual informations I(z_d; v_k) / H(v_k)).
    """
    z, v = _as_2d(codes, "codes"), _as_2d(factors, "factors")
    if z.shape[0] != v.shape[0]:
        raise GanvaeError(f"mig: {z.shape[0]} codes but {v.shape[0]} factor rows")
    if z.shape[0] < 2:
        raise GanvaeError("mig: needs at least 2 examples")
    if n_bins < 2:
        raise GanvaeError(f"mig: n_bins {n_bins}: expected at least 2")
    zb = [histogram_bins(z[:, d], n_bins) for d in range(z.shape[1])]
    per_factor, norm_mi = [], np.zeros((z.shape[1], v.shape[1]))
    for k in range(v.shape[1]):
        vk = discretize_factor(v[:, k], n_bins)
        h = entropy(vk)
        if h <= 0:
            per_factor.append(float("nan"))
            norm_mi[:, k] = np.nan
            continue
        mi = np.array([mutual_information(zd, vk) for zd in zb]) / h
        norm_mi[:, k] = mi
        top = np.sort(mi)[::-1]
        per_factor.append(float(top[0] - (top[1] if top.size > 1 else 0.0)))
    valid = [p for p in per_factor if not np.isnan(p)]
    if not valid:
        raise GanvaeError("mig: every factor is constant; nothing to measure")
    return {"mig": float(np.mean(valid)), "per_factor": per_factor, "mi": norm_mi.tolist()}


def _entropy_base(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of ``p`` (rows sum to 1) in base ``base``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(1) / np.log(base)


def dci_from_importance(r: np.ndarray) -> dict:
    """Disentanglement and completeness from an importance matrix ``r`` (D codes x K factors)."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    d, k = r.shape
    total = r.sum()
    if total <= 0:
        return {"disentanglement": 0.0, "completeness": 0.0}
    row = r.sum(1)
    keep = row > 0
    dis = 1.0 - _entropy_base(r[keep] / row[keep, None], k) if k > 1 else np.ones(keep.sum())
    col = r.sum(0)
    kc = col > 0
    com = 1.0 - _entropy_base((r[:, kc] / col[None, kc]).T, d) if d > 1 else np.ones(kc.sum())
    com_full = np.zeros(k)
    com_full[kc] = com
    return {"disentanglement": float((dis * row[keep] / total).sum()), "completeness": float(com_full.mean())}


def dci(codes, factors, n_bins: int = 20, seed: int = 0, n_estimators: int = 30, max_depth: int = 8) -> dict:
    """DCI with random-forest importances (see the module docstring); at most 10000 examples are used."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    z, v = _as_2d(codes, "codes"), _as_2d(factors, "factors")
    if z.shape[0] != v.shape[0]:
        raise GanvaeError(f"dci: {z.shape[0]} codes but {v.shape[0]} factor rows")
    if z.shape[0] < 6:
        raise GanvaeError("dci: needs at least 6 examples")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(z.shape[0])[:10000]
    z, v = z[idx], v[idx]
    sd = z.std(0)
    z = (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)
    n_tr = (2 * z.shape[0]) // 3
    r = np.zeros((z.shape[1], v.shape[1]))
    scores = []
    for k in range(v.shape[1]):
        col = v[:, k]
        if np.unique(col).size < 2:
            continue
        categorical = np.unique(col).size <= n_bins
        cls = RandomForestClassifier if categorical else RandomForestRegressor
        target = discretize_factor(col, n_bins) if categorical else col
        model = cls(n_estimators=n_estimators, max_depth=max_depth, max_features=None, random_state=seed, n_jobs=1)
        model.fit(z[:n_tr], target[:n_tr])
        r[:, k] = model.feature_importances_
        scores.append(float(model.score(z[n_tr:], target[n_tr:])))
    if not scores:
        raise GanvaeError("dci: every factor is constant; nothing to measure")
    out = dci_from_importance(r)
    out["informativeness"] = float(np.mean(scores))
    out["importance"] = r.tolist()
    return out


@torch.no_grad()
def encode_means(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means (N, D) of a VAE for images (N, C, H, W) in [0, 1]."""
    if model is None or not model.has_encoder:
        raise GanvaeError("metrics mig/dci need a VAE run (they read the encoder's posterior means)")
    with eval_mode(model):
        out = [model.encode(images[i:i + batch_size].to(model.device)).mean.cpu()
               for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)

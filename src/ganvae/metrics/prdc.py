"""Precision, recall, density and coverage of a generated feature set.

* Precision / recall: Kynkäänniemi, Karras, Laine, Lehtinen, Aila 2019,
  "Improved Precision and Recall Metric for Assessing Generative Models"
  (NeurIPS). Each set's manifold is the union of balls around its samples with
  radius = distance to the sample's k-th nearest neighbour in the same set
  (the sample itself excluded). Precision = share of fake samples inside the
  real manifold; recall = share of real samples inside the fake manifold.
* Density / coverage: Naeem, Oh, Uh, Choi, Yoo 2020, "Reliable Fidelity and
  Diversity Metrics for Generative Models" (ICML)::

      density  = 1/(k M) sum_j sum_i [ d(y_j, x_i) < r_i ]
      coverage = 1/N     sum_i [ min_j d(y_j, x_i) < r_i ]

  with real x_i (N of them), fake y_j (M), real radii r_i.

Protocol choices (as the reference ``prdc`` package of Naeem et al.):

* Euclidean distances, float64, via ``torch.cdist``, in chunks of at most
  ``chunk_size`` (default 2048) real rows against all of the other set, so
  memory is ``O(chunk_size * max(N, M))`` (10k x 10k is fine);
* membership is strict (``d < r``). Hence for identical sets without
  duplicate points, precision = recall = coverage = 1 and density is exactly
  1 (each x_i's ball strictly holds itself and its k-1 nearer neighbours);
  with ``<=`` density would be (k+1)/k. Duplicated points give radius 0
  balls, which hold nothing;
* ``k`` must be smaller than both set sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from ganvae.errors import GanvaeError

__all__ = ["prdc", "knn_radii"]


def _t64(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim == 1:  # 1-D features: one dimension per sample
        t = t[:, None]
    if t.ndim != 2:
        raise GanvaeError(f"PRDC: {name} must be a 2-D array (samples, dims), got shape {tuple(t.shape)}")
    return t.contiguous()


def knn_radii(feats: torch.Tensor, k: int, chunk_size: int = 2048) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (self excluded), shape ``(n,)``."""
    n = feats.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    for s in range(0, n, chunk_size):
        d = torch.cdist(feats[s : s + chunk_size], feats)
        # The k+1 smallest include the point itself (distance 0, the smallest
        # even with round-off), so the (k+1)-th is the k-th neighbour.
        out[s : s + chunk_size] = torch.topk(d, k + 1, dim=1, largest=False).values[:, k]
    return out


def prdc(real, fake, k: int = 5, chunk_size: int = 2048) -> dict[str, float]:
    """``{"precision", "recall", "density", "coverage"}`` of ``fake`` ``(M, d)`` against ``real`` ``(N, d)``."""
    x = _t64(real, "real")
    y = _t64(fake, "fake")
    n, m = x.shape[0], y.shape[0]
    if x.shape[1] != y.shape[1]:
        raise GanvaeError(f"PRDC: feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if k < 1 or k >= min(n, m):
        raise GanvaeError(
            f"PRDC: k={k} needs more than k samples in each set (real {n}, fake {m}); lower k or raise --n"
        )
    real_r = knn_radii(x, k, chunk_size)
    fake_r = knn_radii(y, k, chunk_size)

    fake_in_real = torch.zeros(m, dtype=torch.bool)  # precision
    fake_ball_counts = torch.zeros(m, dtype=torch.float64)  # density
    real_in_fake = torch.empty(n, dtype=torch.bool)  # recall
    real_covered = torch.empty(n, dtype=torch.bool)  # coverage
    # Rows are always real samples, so for identical sets the real-fake block is
    # bit-identical to the real-real block the radii came from.
    for s in range(0, n, chunk_size):
        d = torch.cdist(x[s : s + chunk_size], y)  # (chunk, m)
        inside_real = d < real_r[s : s + chunk_size, None]
        fake_in_real |= inside_real.any(dim=0)
        fake_ball_counts += inside_real.sum(dim=0, dtype=torch.float64)
        real_in_fake[s : s + chunk_size] = (d < fake_r[None, :]).any(dim=1)
        real_covered[s : s + chunk_size] = d.min(dim=1).values < real_r[s : s + chunk_size]

    return {
        "precision": float(fake_in_real.double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(fake_ball_counts.sum() / (k * m)),
        "coverage": float(real_covered.double().mean()),
    }

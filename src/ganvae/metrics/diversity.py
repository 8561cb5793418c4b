"""Sample diversity: how spread out the samples are, as a share of how spread out real images are.

``relative_diversity = D(gen) / D(ref)`` with ``D(x)`` the mean Euclidean distance between two different rows
of ``x`` (features, or flattened pixels), over all N(N-1) ordered pairs of the first ``max_rows`` rows. About 1:
the samples vary as much as the data; near 0: they are near copies of one another (mode collapse). The
periodic evaluation reports it as ``eval/diversity`` beside its metric; the health alarms watch it.
"""

from __future__ import annotations

import torch

MAX_ROWS = 500  # rows used: a 500 x 500 distance matrix is cheap next to the features themselves


def mean_pairwise_distance(x: torch.Tensor, max_rows: int = MAX_ROWS) -> float:
    """Mean distance between different rows of ``x`` (N, ...) flattened; 0.0 with fewer than two rows."""
    x = x[:max_rows].flatten(1).double()
    n = x.shape[0]
    return float(torch.cdist(x, x).sum() / (n * (n - 1))) if n > 1 else 0.0


def relative_diversity(gen: torch.Tensor, ref: torch.Tensor | float, max_rows: int = MAX_ROWS) -> float:
    """``D(gen) / D(ref)``; ``ref`` may be given as its spread already. NaN when the reference has no spread."""
    spread = ref if isinstance(ref, float) else mean_pairwise_distance(ref, max_rows)
    return mean_pairwise_distance(gen, max_rows) / spread if spread > 0 else float("nan")

"""AUROC: the probability that a random anomaly scores higher than a random normal image.

The Mann-Whitney U form, ties counted one half:

    AUROC = (1 / (n_pos * n_neg)) * sum_{i in pos, j in neg} ([s_i > s_j] + 0.5 [s_i = s_j])

computed from mid-ranks: U = R_pos - n_pos (n_pos + 1) / 2, with R_pos the sum of the anomalies' mid-ranks
among all scores (ranks 1..N, tied scores sharing their mean rank). 1 = every anomaly above every normal
image, 0.5 = chance.
"""

from __future__ import annotations

import numpy as np

from ..errors import GanvaeError


def auroc(scores, is_anomaly) -> float:
    """``scores`` (N,), higher = more anomalous; ``is_anomaly`` (N,) booleans. Returns AUROC in [0, 1]."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(is_anomaly, dtype=bool).ravel()
    if s.shape != y.shape:
        raise GanvaeError(f"auroc: {s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise GanvaeError("auroc: some scores are NaN or infinite")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise GanvaeError(f"auroc: needs both normal and anomalous images (got {n_neg} normal, {n_pos} anomalous)")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # mid-ranks: each run of equal scores gets the mean of the ranks it spans
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))

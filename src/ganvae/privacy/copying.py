"""Memorisation measures: nearest-neighbour ratios, near-copies, and the data-copying test Z_U.

``memorisation``: for each generated sample g, d_train(g) = distance to its nearest training
image and d_heldout(g) = distance to its nearest held-out image, the two reference sets of the
*same size* (nearest-neighbour distances shrink as a set grows). A model that generalises puts
its samples as close to unseen data as to its training data (ratio d_train/d_heldout around 1);
a model that copies puts them on training images (ratio near 0). **Near-copy rule**: a sample is
a near-copy when d_train/d_heldout < 1/3, in pixel space (a memorisation-ratio rule: at least
3x closer to some training image than to any unseen image). The 1st percentile of the
held-out-to-train nearest-neighbour distances is reported as a second yardstick
(``n_below_heldout_p1``: samples closer to a training image than 99% of unseen images are).

``data_copying_test``: the three-sample test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020).
T = training sample, P_n = held-out sample, Q_m = generated sample. The instance space is
partitioned into k cells by k-means (fitted on T, as in the authors' reference code; ``fit_on``
may choose the held-out set instead). In each cell pi, with L(x) the distance from x to its
nearest neighbour in T (all of T), the Mann-Whitney U statistic of {L(q): q in Q_m(pi)} against
{L(p): p in P_n(pi)} (pairs with L(q) > L(p), ties 1/2) is z-scored under the null
Z_U(pi) = (U - m n / 2) / sqrt(m n (m + n + 1) / 12) with m, n the cell's counts. Cells where the
generated share Q_m(pi) <= tau (default tau = 20 / m: fewer than 20 samples) or without held-out
or training points are left out (the paper's Pi_tau), and
C_T = sum_pi P_n(pi) Z_U(pi) / sum_pi P_n(pi) over the kept cells, P_n(pi) the cell's held-out
share. C_T (reported as ``z_u``) well below 0 (the paper: << 0, e.g. < -3) means generated samples
sit closer to the training set than fresh data does: data copying; well above 0 means
under-fitting; near 0 is neither.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata

from .mia import nearest

NEAR_COPY_RATIO = 1.0 / 3.0
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


def memorisation(gen: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict:
    """Nearest-neighbour distances of ``gen`` to equally large ``train`` and ``heldout`` sets (rows = points)."""
    if train.shape[0] != heldout.shape[0]:
        raise ValueError(f"train and held-out reference sets must be equally large, got {train.shape[0]} "
                         f"and {heldout.shape[0]}")
    d_tr, i_tr = nearest(gen, train)
    d_ho, i_ho = nearest(gen, heldout)
    ratio = (d_tr / d_ho.clamp(min=1e-12)).numpy()
    base = nearest(heldout, train)[0].numpy()  # held-out images' own nearest training image
    p1 = float(np.quantile(base, 0.01))
    return {
        "d_train": d_tr.numpy(), "d_heldout": d_ho.numpy(), "ratio": ratio,
        "nn_train_index": i_tr.numpy(), "nn_heldout_index": i_ho.numpy(),
        "summary": {
            "n_generated": int(gen.shape[0]), "n_reference_each": int(train.shape[0]),
            "ratio_quantiles": {f"q{int(q * 100):02d}": float(np.quantile(ratio, q)) for q in QUANTILES},
            "median_d_train": float(np.median(d_tr.numpy())), "median_d_heldout": float(np.median(d_ho.numpy())),
            "n_near_copies": int((ratio < NEAR_COPY_RATIO).sum()),
            "heldout_to_train_p01": p1,
            "n_below_heldout_p1": int((d_tr.numpy() < p1).sum()),
        },
    }


def mann_whitney_z(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(U, Z_U): U = #pairs (x_i, y_j) with x_i > y_j (ties 1/2); Z_U = (U - mn/2) / sqrt(mn(m+n+1)/12)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    m, n = x.size, y.size
    r = rankdata(np.r_[x, y])  # average ranks for ties
    u = float(r[:m].sum() - m * (m + 1) / 2)
    z = (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)
    return u, float(z)


def default_cells(n_train: int, n_test: int) -> int:
    """k for the partition: at most 20 cells, and about 20 training and 20 held-out points per cell."""
    return max(1, min(20, n_train // 20, n_test // 20))


def data_copying_test(train: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor,
                      gen: np.ndarray | torch.Tensor, k: int | None = None, tau: float | None = None,
                      seed: int = 0, fit_on: str = "train") -> dict:
    """Meehan et al.'s C_T statistic (``z_u``) and its per-cell parts; rows of the arrays are points."""
    from sklearn.cluster import KMeans

    T = torch.as_tensor(np.asarray(train, dtype=np.float64)).reshape(len(train), -1)
    P = torch.as_tensor(np.asarray(test, dtype=np.float64)).reshape(len(test), -1)
    Q = torch.as_tensor(np.asarray(gen, dtype=np.float64)).reshape(len(gen), -1)
    m, n = Q.shape[0], P.shape[0]
    if min(m, n, T.shape[0]) < 2:
        raise ValueError("the data-copying test needs at least 2 training, 2 held-out and 2 generated points")
    k = default_cells(T.shape[0], n) if k is None else int(k)
    tau = 20.0 / m if tau is None else float(tau)
    if fit_on not in ("train", "test"):
        raise ValueError(f"fit_on: expected 'train' or 'test', got {fit_on!r}")
    from threadpoolctl import threadpool_limits

    # one thread: sklearn's OpenMP k-means beside torch's thread pool can spin for seconds on a busy CPU
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit((T if fit_on == "train" else P).numpy())
    cT, cP, cQ = (km.predict(a.numpy()) for a in (T, P, Q))
    LP = nearest(P, T)[0].numpy()
    LQ = nearest(Q, T)[0].numpy()
    cells = []
    num = den = 0.0
    for c in range(k):
        nP, nQ, nT = int((cP == c).sum()), int((cQ == c).sum()), int((cT == c).sum())
        cell = {"cell": c, "n_train": nT, "n_test": nP, "n_generated": nQ, "test_share": nP / n,
                "generated_share": nQ / m, "z_u": None, "used": False}
        if nP == 0 or nT == 0:
            cell["skipped"] = "no held-out or no training points in the cell"
        elif nQ / m <= tau:
            cell["skipped"] = f"generated share {nQ / m:.4g} <= tau {tau:.4g}"
        else:
            _, z = mann_whitney_z(LQ[cQ == c], LP[cP == c])
            cell.update(z_u=z, used=True)
            num += (nP / n) * z
            den += nP / n
        cells.append(cell)
    z_u = num / den if den > 0 else float("nan")
    return {"z_u": float(z_u), "k": k, "tau": tau, "fit_on": fit_on, "n_train": int(T.shape[0]), "n_test": n,
            "n_generated": m, "cells_used": sum(c["used"] for c in cells), "cells": cells,
            "median_test_to_train": float(np.median(LP)), "median_generated_to_train": float(np.median(LQ))}

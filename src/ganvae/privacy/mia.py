"""Membership inference: ROC AUC, TPR at a fixed FPR, and the attacks the leakage audit runs.

Every attack maps a record x to a score where *higher means "x was a training member"*;
its success is measured on equal numbers of training members and held-out non-members.

* ``roc_auc``: the area under the ROC curve, exactly (``sklearn.metrics.roc_auc_score``):
  the probability that a random member scores above a random non-member, ties counting 1/2.
* ``tpr_at_fpr``: with "member" predicted when score >= t, the largest true-positive rate over
  all thresholds t whose false-positive rate (share of non-members with score >= t) is at
  most ``fpr``. With n non-members, FPR <= 1% allows floor(0.01 n) non-members above the
  threshold; with fewer than 100 non-members that is none (t above every non-member score).

Attacks (Hilprecht et al. 2019, "Monte Carlo and Reconstruction Membership Inference Attacks
against Generative Models", PoPETs):

* ``mc_scores``: the Monte-Carlo attack: the share of generated samples within distance eps
  of the record, eps set by the median heuristic :func:`median_eps` (the median over records of
  the distance to their nearest generated sample, so about half of the records get a non-zero
  count);
* ``nearest_sample_scores``: minus the distance to the nearest generated sample;
* white-box, in :mod:`ganvae.privacy.audit`: a GAN discriminator's logit on the record, a VAE's
  per-example ELBO and importance-weighted bound.
"""

from __future__ import annotations

import numpy as np
import torch


def _arrays(members, nonmembers) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(members, dtype=np.float64).ravel()
    b = np.asarray(nonmembers, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("need at least one member and one non-member score")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("membership scores must be finite")
    return a, b


def roc_auc(members, nonmembers) -> float:
    """ROC AUC of scores (higher = member), computed exactly by ``sklearn.metrics.roc_auc_score``."""
    from sklearn.metrics import roc_auc_score

    a, b = _arrays(members, nonmembers)
    y = np.r_[np.ones(a.size), np.zeros(b.size)]
    return float(roc_auc_score(y, np.r_[a, b]))


def tpr_at_fpr(members, nonmembers, fpr: float = 0.01) -> float:
    """The largest TPR over thresholds t (member iff score >= t) with FPR(t) <= ``fpr``."""
    a, b = _arrays(members, nonmembers)
    # candidate thresholds: every distinct score (a threshold between two scores acts as the upper one);
    # a threshold above every score gives TPR = FPR = 0
    t = np.unique(np.r_[a, b])
    fp = (b.size - np.searchsorted(np.sort(b), t, side="left")) / b.size   # share of b >= t
    tp = (a.size - np.searchsorted(np.sort(a), t, side="left")) / a.size   # share of a >= t
    ok = fp <= fpr + 1e-12
    return float(tp[ok].max()) if ok.any() else 0.0


@torch.no_grad()
def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(x), len(y)) between flattened rows, in float64 (exact enough near 0)."""
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    d2 = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2.0 * (x @ y.T)
    return d2.clamp_(min=0.0).sqrt_()


@torch.no_grad()
def nearest(x: torch.Tensor, ref: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``x``: (distance to its nearest row of ``ref``, that row's index)."""
    ds, idx = [], []
    for i in range(0, x.shape[0], chunk):
        d = pairwise_distances(x[i:i + chunk], ref)
        m = d.min(1)
        ds.append(m.values)
        idx.append(m.indices)
    return torch.cat(ds), torch.cat(idx)


def nearest_sample_scores(records: torch.Tensor, generated: torch.Tensor) -> np.ndarray:
    """Black-box score: minus the distance from each record to its nearest generated sample."""
    return -nearest(records, generated)[0].numpy()


def median_eps(records: torch.Tensor, generated: torch.Tensor) -> float:
    """The median heuristic: the median over records of the distance to the nearest generated sample."""
    return float(nearest(records, generated)[0].median())


@torch.no_grad()
def mc_scores(records: torch.Tensor, generated: torch.Tensor, eps: float, chunk: int = 1024) -> np.ndarray:
    """Monte-Carlo attack score: the share of ``generated`` within distance ``eps`` of each record."""
    out = []
    for i in range(0, records.shape[0], chunk):
        d = pairwise_distances(records[i:i + chunk], generated)
        out.append((d <= eps).double().mean(1))
    return torch.cat(out).numpy()


def attack_result(name: str, members, nonmembers, description: str, fpr: float = 0.01) -> dict:
    """One attack's record: AUC, TPR at ``fpr``, the mean scores and what the score is."""
    a, b = _arrays(members, nonmembers)
    return {"attack": name, "auc": roc_auc(a, b), "tpr_at_1pct_fpr": tpr_at_fpr(a, b, fpr),
            "mean_score_members": float(a.mean()), "mean_score_nonmembers": float(b.mean()),
            "description": description}

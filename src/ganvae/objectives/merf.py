"""Random-feature mean embeddings: the objective of DP-MERF (Harder et al., AISTATS 2021).

A Gaussian kernel k(x, y) = exp(-||x - y||^2 / (2 l^2)) has the random Fourier features (Rahimi & Recht 2007)
phi(x) = sqrt(1/F) [cos(W x), sin(W x)], W (F, d) with rows drawn from N(0, I / l^2), so that
E_W[phi(x) . phi(y)] = k(x, y). DP-MERF compares the class-conditional mean embeddings of the data and of the
generator, sum over classes c of || mean_{x in c} phi(x) p(c) - mean_{G(z, c)} phi(G(z, c)) q(c) ||^2: an
approximation of the maximum mean discrepancy (MMD) of the joint distributions of images and labels.

Our feature vector adds one constant coordinate so that the per-class *counts* are released in the same
Gaussian release as the embedding: f(x) = [sqrt(w / F) cos(W x), sqrt(w / F) sin(W x), sqrt(1 - w)] with
``w`` = ``feature_weight``; ||f(x)|| = 1 exactly for every x, so the class-summed embedding
S = sum_i f(x_i) e_{y_i}^T (a (2F + 1) x K matrix) changes by a matrix of Frobenius norm exactly 1 when one
image is added or removed: sensitivity 1, the Gaussian mechanism's noise std is the noise multiplier itself.
The kernel of f is w k(x, y) + (1 - w) (a test checks this closed form).

DP-MEPF (Harder et al., TMLR 2023) replaces the kernel on pixels by features of a network pretrained on public
data: :func:`perceptual_features` turns the pooled activations of L layers into one vector of the same form,
[sqrt(w / L) a_1 / ||a_1||, ..., sqrt(w / L) a_L / ||a_L||, sqrt(1 - w)] (each layer's activations on the unit
sphere, so every layer counts the same and the whole vector again has norm exactly 1: sensitivity 1).

Everything after the noisy release (the class counts read from the last row, the normalisation, the
generator's training) is post-processing.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def rff_frequencies(n_freq: int, dim: int, length: float, seed: int) -> torch.Tensor:
    """W (n_freq, dim), rows from N(0, I / length^2), drawn on the CPU from ``seed`` (data-independent)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_freq, dim, generator=g) / float(length)


def features(x: torch.Tensor, W: torch.Tensor, feature_weight: float) -> torch.Tensor:
    """f(x) (B, 2F + 1) of images ``x`` (B, ...) flattened to W's width; every row has norm 1.

    Always in W's precision (float32), also inside a bf16 autocast region: cos(W x) of projections of size ~10
    would lose most of its digits in bfloat16."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        proj = x.flatten(1).to(W.dtype) @ W.t()
    scale = math.sqrt(feature_weight / W.shape[0])
    const = torch.full((x.shape[0], 1), math.sqrt(1.0 - feature_weight), dtype=proj.dtype, device=proj.device)
    return torch.cat([torch.cos(proj) * scale, torch.sin(proj) * scale, const], dim=1)


def perceptual_features(layers: list[torch.Tensor], feature_weight: float) -> torch.Tensor:
    """f(x) (B, sum C_l + 1) from L pooled activations (B, C_l); every row has norm 1 (to float rounding).

    In float32, also inside a bf16 autocast region. A layer whose activations are all zero for an image
    contributes zeros there (the row's norm is then below 1, which only lowers the sensitivity)."""
    parts = []
    scale = math.sqrt(feature_weight / len(layers))
    for a in layers:
        a = a.float()
        parts.append(a * (scale / a.norm(dim=1, keepdim=True).clamp(min=1e-12)))
    b = layers[0].shape[0]
    parts.append(torch.full((b, 1), math.sqrt(1.0 - feature_weight), dtype=torch.float32, device=layers[0].device))
    return torch.cat(parts, dim=1)


def class_sum(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """S = sum_i f_i e_{y_i}^T, (2F + 1, K): each image's feature vector in its class's column."""
    return f.t() @ F.one_hot(y.long(), num_classes).to(f.dtype)


def normalise(noisy_sum: torch.Tensor, feature_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(target mean embedding (2F + 1, K), class proportions (K,)) from a (noisy) class sum.

    The last row holds sqrt(1 - w) * n_c (+ noise): the counts. Negative noisy counts become 0; the total is
    at least 1. The target is S / N_hat, the same normalisation the generator's embedding gets (its batch size).
    """
    counts = (noisy_sum[-1] / math.sqrt(1.0 - feature_weight)).clamp(min=0.0)
    total = counts.sum().clamp(min=1.0)
    props = counts / total if counts.sum() > 0 else torch.full_like(counts, 1.0 / counts.numel())
    return noisy_sum / total, props


def embedding_distance(target: torch.Tensor, f_fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """|| target - class_sum(f_fake, y_fake) / B ||_F^2, the DP-MERF loss of one generated batch."""
    fake = class_sum(f_fake, y_fake, target.shape[1]) / f_fake.shape[0]
    return ((target - fake) ** 2).sum()

"""Self-conditioned GAN (``sc-dcgan``): an unconditional GAN conditioned on clusters of its own training data.

Liu et al., "Diverse Image Generation via Self-Conditioned GANs" (CVPR 2020): partition the training images
into k clusters, train a conditional GAN (label embedding in G, projection D) on the cluster index as if it
were a class, and sample the index with the clusters' frequencies. No labels are used; D sees per-cluster
statistics, which keeps G from dropping modes (a conditional GAN's advantage, for unlabelled data).

Our clustering is fixed before the first step (the paper reclusters D's features every few epochs): k-means
(k-means++ seeding, Lloyd iterations, all seeded) on the top principal components of the training images,
average-pooled to at most 32 px so that any image size clusters in seconds. The clusters are model state (in
the checkpoint: a resumed run clusters nothing).

From the outside the model is unconditional: a code is ``z ~ N(0, I)`` of ``latent_dim`` entries and the
cluster is a function of ``z_0``: the inverse CDF of the cluster frequencies applied to ``Phi(z_0)``, i.e.
``k = #{j : z_0 > t_j}`` with thresholds ``t_j = Phi^-1(F_j)``. So ``sample()``, interpolation, exports and
ONNX work as for ``dcgan``, each cluster is drawn with its frequency in the data, and truncation leaves
``z_0`` alone (it would otherwise pull every code toward the middle cluster).

The clustering sees the training images without noise: the model cannot be trained privately.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanvaeError
from ..nets.conditional import ConditionalGenerator, ProjectionDiscriminator
from .. import rng
from .base import Batch
from .conditional import check_embed_dim
from .gan import GAN, DCGANConfig

MAX_SIDE = 32  # images are average-pooled to at most this side before clustering


@dataclass
class SCDCGANConfig(DCGANConfig):
    clusters: int = 50           # k: clusters of the training images, G's and D's condition
    cluster_dims: int = 64       # principal components the k-means runs in
    cluster_images: int = 20000  # images the clusters are fitted on (a seeded subset when the data has more)
    cluster_iters: int = 25      # Lloyd iterations after k-means++ seeding
    embed_dim: int = 32          # size of the cluster embedding concatenated to z in G
    d_mbstd: int = 4             # minibatch std in D
    ms_weight: float = 1.0       # mode seeking (Mao et al. 2019): weight of 1 / (|G(z1) - G(z2)| / |z1 - z2|) in G's
                                 # loss, z1, z2 of one cluster; without it G learns one image per cluster
    lr_g: float = 1e-3           # 5x dcgan's 2e-4: on MNIST, 10 one-core minutes, FID 1.97 against 4.77 at 2e-4
    lr_d: float = 1e-3           # (benchmarks/results/quality-sc-lr.md)

    def validate(self) -> None:
        super().validate()
        check_embed_dim(self)
        if self.ms_weight < 0:
            raise GanvaeError(f"model.ms_weight: expected >= 0 (0: off), got {self.ms_weight}")
        for name, low in (("clusters", 2), ("cluster_dims", 1), ("cluster_images", 2), ("cluster_iters", 1)):
            if getattr(self, name) < low:
                raise GanvaeError(f"model.{name}: expected >= {low}, got {getattr(self, name)}")
        if self.latent_dim < 2:
            raise GanvaeError(f"model.latent_dim: sc-dcgan draws the cluster from z_0 and needs >= 2, "
                              f"got {self.latent_dim}")

    def build(self) -> tuple[nn.Module, nn.Module]:
        k = self.clusters
        G = self.build_g(self.latent_dim + self.embed_dim)
        D, width = self.build_d()
        return (ClusterGenerator(ConditionalGenerator(G, k, self.embed_dim), k),
                ProjectionDiscriminator(D, k, width, spectral_norm=self.d_spectral_norm))


class ClusterGenerator(nn.Module):
    """z (B, latent_dim) -> image: the conditional generator at cluster ``k(z_0)`` (see the module doc)."""

    def __init__(self, net: ConditionalGenerator, clusters: int):
        super().__init__()
        self.net = net
        # Phi^-1 of the cumulative frequencies F_1..F_{k-1}; uniform until the clusters are fitted
        self.register_buffer("thresholds", _thresholds(torch.full((clusters,), 1.0 / clusters)))

    def cluster(self, z: torch.Tensor) -> torch.Tensor:
        return (z[:, :1] > self.thresholds[None, :]).sum(dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z, self.cluster(z))

    def code_for(self, y: torch.Tensor, z: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Codes ``z`` with ``z_0`` redrawn from the normal restricted to cluster ``y``'s interval."""
        inf = self.thresholds.new_full((1,), math.inf)
        cdf = torch.special.ndtr(torch.cat([-inf, self.thresholds, inf]).double())
        lo, hi = cdf[y], cdf[y + 1]
        r = rng.rand((len(y),), gen, device=z.device).double()
        z0 = torch.special.ndtri((lo + r * (hi - lo)).clamp(1e-12, 1 - 1e-12))
        return torch.cat([z0.to(z.dtype)[:, None], z[:, 1:]], dim=1)


def _thresholds(freq: torch.Tensor) -> torch.Tensor:
    """The k-1 standard-normal quantiles of the cumulative frequencies (clusters of frequency 0 never drawn)."""
    cdf = torch.cumsum(freq.double() / freq.double().sum(), 0)[:-1].clamp(0, 1)
    return (math.sqrt(2) * torch.special.erfinv(2 * cdf - 1)).float()  # +-inf at 0 and 1: never / always past


class Clusters(nn.Module):
    """k-means clusters of images in a PCA space; ``assign(x)`` gives each image its nearest centroid."""

    def __init__(self, k: int, dims: int, channels: int, image_size: int):
        super().__init__()
        self.factor = max(1, math.ceil(image_size / MAX_SIDE))
        side = image_size // self.factor
        pixels = channels * side * side
        dims = min(dims, pixels)
        self.register_buffer("mean", torch.zeros(pixels))
        self.register_buffer("basis", torch.zeros(pixels, dims))
        self.register_buffer("centroids", torch.zeros(k, dims))
        self.register_buffer("counts", torch.zeros(k))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if self.factor > 1:
            x = F.avg_pool2d(x, self.factor)
        return x.flatten(1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W), uint8 or float in [0, 1] -> their principal-component coordinates (B, dims)."""
        return (self._flat(x) - self.mean) @ self.basis

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.project(x), self.centroids).argmin(dim=1)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, n: int, iters: int, seed: int, chunk: int = 2048) -> None:
        """PCA and k-means on ``n`` images (a seeded subset of ``images`` when it has more), then every image's
        cluster counted. Deterministic for a seed."""
        dev = self.mean.device
        g = torch.Generator().manual_seed(seed * 1_000_003 + 0x5C)
        idx = torch.randperm(len(images), generator=g)[:n] if len(images) > n else torch.arange(len(images))
        x = torch.cat([self._flat(images[idx[i:i + chunk]].to(dev)) for i in range(0, len(idx), chunk)]).double()
        mean = x.mean(0)
        x -= mean
        _, vecs = torch.linalg.eigh(x.T @ x)                  # ascending eigenvalues
        basis = vecs[:, -self.basis.shape[1]:].flip(1)
        basis *= torch.where(basis.sum(0) < 0, -1.0, 1.0)       # a fixed sign per component
        p = (x @ basis).float()
        centroids = _kmeans(p, self.centroids.shape[0], iters, g)
        self.mean.copy_(mean.float())
        self.basis.copy_(basis.float())
        self.centroids.copy_(centroids)
        counts = torch.zeros_like(self.counts)
        for i in range(0, len(images), chunk):
            counts += torch.bincount(self.assign(images[i:i + chunk].to(dev)), minlength=len(counts)).float()
        self.counts.copy_(counts)
        self.fitted.fill_(1)


def _kmeans(p: torch.Tensor, k: int, iters: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007), then Lloyd; an emptied cluster keeps its centroid."""
    n = len(p)
    if n < k:
        raise GanvaeError(f"model.clusters={k}: the data has only {n} images; use fewer clusters")
    c = [p[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((p - c[0]) ** 2).sum(1)
    for _ in range(1, k):
        i = int(torch.multinomial(d2.double() + 1e-12, 1, generator=g)) if d2.sum() > 0 else \
            int(torch.randint(n, (1,), generator=g))
        c.append(p[i])
        d2 = torch.minimum(d2, ((p - p[i]) ** 2).sum(1))
    c = torch.stack(c)
    for _ in range(iters):
        a = torch.cdist(p, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, a, p)
        cnt = torch.bincount(a, minlength=k).float()
        c = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], c)
    return c


def mode_seeking(x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 eps: float = 1e-5) -> torch.Tensor:
    """Mode seeking term (Mao et al., CVPR 2019, their eq. 3 as their code computes it): 1 / (mean |x1 - x2| /
    mean |z1 - z2| + eps). Small when two codes of one condition give images as far apart as the codes are."""
    lz = (x1 - x2).abs().mean() / (z1 - z2).abs().mean()
    return 1 / (lz + eps)


class SelfConditionedGAN(GAN):
    """A DCGAN conditioned on k-means clusters of its training data (see the module doc)."""

    needs_fit = True  # the trainer calls fit_data(images, seed) before the first step (training/datafit.py)

    def __init__(self, config: SCDCGANConfig):
        super().__init__(config)
        self.clusters = Clusters(config.clusters, config.cluster_dims, config.channels, config.image_size)

    @classmethod
    def private_config(cls, config, name: str = ""):
        raise GanvaeError(f"privacy: model {name or 'sc-dcgan'!r} clusters the training images without noise, "
                          "which no privacy accountant covers; use dcgan or cdcgan")

    @property
    def fitted(self) -> bool:
        return bool(self.clusters.fitted.item())

    def fit_data(self, images: torch.Tensor, seed: int) -> None:
        """Cluster ``images`` (N, C, H, W) and set G's cluster frequencies."""
        c = self.config
        self.clusters.fit(images, c.cluster_images, c.cluster_iters, seed)
        self.G.thresholds.copy_(_thresholds(self.clusters.counts))

    def fit_summary(self) -> dict:
        counts = self.clusters.counts
        return {"what": "k-means clusters of the training images (the condition of G and D)",
                "clusters": len(counts), "empty": int((counts == 0).sum()),
                "largest_share": round(float(counts.max() / counts.sum()), 6),
                "smallest_share": round(float(counts[counts > 0].min() / counts.sum()), 6),
                "pca_dims": self.clusters.basis.shape[1], "pooled_by": self.clusters.factor}

    def inference_modules(self) -> list[str]:
        return ["G"]  # the clusters serve training (D's condition) only; G holds the frequencies

    def truncate(self, code: torch.Tensor, psi: float) -> torch.Tensor:
        """The noise toward 0, ``z_0`` (the cluster) kept."""
        return torch.cat([code[:, :1], code[:, 1:] * psi], dim=1)

    def _D(self, x01: torch.Tensor):
        return functools.partial(self.D, y=self.clusters.assign(x01))

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if not self.fitted:
            raise GanvaeError("sc-dcgan: the clusters are not fitted (train through ganvae.train or the CLI)")
        real, y = batch.x * 2 - 1, self.clusters.assign(batch.x)
        with torch.no_grad():  # fakes of the real batch's clusters, as cdcgan does with classes
            fake = self.G.net(self.G.code_for(y, self.latent(real.shape[0], gen), gen), y)
        return self.d_terms(functools.partial(self.D, y=y), real, fake, gen)

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        code = self.latent(batch.n, gen)
        h = batch.n // 2 if self.config.ms_weight > 0 else 0
        if h:  # the second half in the first half's clusters, pair by pair (same distribution of codes)
            code = torch.cat([code[:h], self.G.code_for(self.G.cluster(code[:h]), code[h:2 * h], gen), code[2 * h:]])
        fake = self.G(code)
        terms = self.g_terms(functools.partial(self.D, y=self.G.cluster(code)), fake, gen)
        if h:
            ms = self.config.ms_weight * mode_seeking(fake[:h], fake[h:2 * h], code[:h, 1:], code[h:2 * h, 1:])
            terms["loss"] = terms["loss"] + ms
            terms["loss/G/ms"] = ms
        return terms

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x * 2 - 1, self.clusters.assign(x)).flatten()

"""``dp-merf``: a class-conditional generator trained to match one released mean embedding of the data.

DP-MERF (Harder et al., AISTATS 2021): the data are touched exactly once, to compute the class-summed
random-feature embedding S (:mod:`ganvae.objectives.merf`; sensitivity 1), released with Gaussian noise by
the privacy layer (:mod:`ganvae.privacy.merf`; noise 0 for a non-private run). The generator then minimises
|| S / N_hat - mean embedding of its own batch ||^2 without ever seeing an image: a private generator in
minutes on a CPU, whatever the number of training steps, because the privacy cost is that of one release.

``model.features`` chooses the feature map: ``rff`` (DP-MERF: random Fourier features of a Gaussian kernel
on pixels) or ``effnet`` (DP-MEPF, Harder et al., TMLR 2023: the activations of every stage of an
EfficientNet-Lite0 pretrained on ImageNet, public weights shipped in a pip package, frozen; the generator is
trained through it), each map average-pooled to ``model.feature_grid`` cells a side. Perceptual features compare
what an image looks like rather than its pixels one by one; the grid keeps where it is (a layer's global mean,
``feature_grid=1``, loses the layout, and with it the digit: 30% CAS on MNIST against 80% for the whole maps).
``dp-mepf`` is this model with ``features=effnet`` and the whole maps (``feature_grid=16``).
Either way, each image's feature vector has norm 1, so the sensitivity and the privacy cost are the same.

The released target (embedding and class proportions) is model state (``target``): it is in the checkpoint,
so a resumed run continues from the same release and never releases twice; it is not in the inference
export (sampling does not need it). The random frequencies W are drawn from ``model.rff_seed`` when the
model is built (data-independent, as the guarantee requires), not stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import GanvaeError
from ..nets import DCGANGenerator
from ..nets.conditional import ConditionalGenerator
from ..nets.pretrained import PerceptualFeatures, frozen_on, perceptual_net_size, perceptual_sizes
from ..objectives.merf import class_sum, embedding_distance, features, normalise, perceptual_features, rff_frequencies
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, check_base, check_betas
from .conditional import _Conditional, _need_classes, check_embed_dim

MAX_W_ENTRIES = 2**23  # the frequencies' size cap (32 MB of float32): fewer frequencies for large images
FEATURE_MAPS = ("rff", "effnet")


@dataclass
class DPMERFConfig(ModelConfigBase):
    name: ClassVar[str] = "dp-merf"  # for messages (the registered name of models built from this config)
    latent_dim: int = 16          # noise size (DP-MERF uses a small code)
    embed_dim: int = 16           # label embedding concatenated to z
    g_width: int = 64             # G channels at its highest resolution; doubled per halving, up to max_width
    max_width: int = 256
    g_norm: str = "batch"
    lr: float = 1e-3              # Adam
    betas: tuple[float, float] = (0.5, 0.999)
    rff_freqs: int | None = None  # F random frequencies (2F + 1 features); null: min(5000, 2^23 / pixels)
    rff_length: float | None = None  # Gaussian kernel length scale l in pixel units of [0, 1] images;
                                     # null: sqrt(0.134 * pixels) (= sqrt(105) at 28x28x1, DP-MERF's MNIST value)
    rff_seed: int = 0             # seed of the frequencies (public, data-independent)
    feature_weight: float = 0.9   # share of the unit feature norm on the kernel features; the rest carries counts
    features: str = "rff"         # rff: random Fourier features on pixels (DP-MERF); effnet: pooled activations
                                  # of a frozen ImageNet EfficientNet-Lite0 (DP-MEPF, perceptual features)
    feature_size: int | None = None  # effnet: images are resized to this many pixels square (a multiple of 32);
                                     # null: the image size rounded up to one (28 -> 32, 64 -> 64)
    feature_grid: int = 1         # effnet: each layer's map average-pooled to this grid (1: global mean, what
                                  # an image holds; larger: where, too, as DP-MEPF's whole maps)

    def pixels(self) -> int:
        return int(self.channels) * int(self.image_size) ** 2

    def freqs(self) -> int:
        return self.rff_freqs if self.rff_freqs is not None else max(64, min(5000, MAX_W_ENTRIES // self.pixels()))

    def length(self) -> float:
        return self.rff_length if self.rff_length is not None else math.sqrt(0.134 * self.pixels())

    def net_size(self) -> int:
        """The pixels a side the perceptual net sees: ``feature_size``, or the image size rounded up to 32k."""
        return self.feature_size if self.feature_size is not None else perceptual_net_size(self.image_size)

    def validate(self) -> None:
        check_base(self)
        check_embed_dim(self)
        check_betas(self.betas, "model.betas")
        if self.rff_freqs is not None and not 1 <= self.rff_freqs <= 1_000_000:
            raise GanvaeError(f"model.rff_freqs: expected 1 to 1000000 random frequencies, got {self.rff_freqs}")
        if self.rff_length is not None and not self.rff_length > 0:
            raise GanvaeError(f"model.rff_length: expected a kernel length scale > 0, got {self.rff_length}")
        if not 0 < self.feature_weight < 1:
            raise GanvaeError(f"model.feature_weight: expected a number in (0, 1), got {self.feature_weight}")
        if not self.lr > 0:
            raise GanvaeError(f"model.lr: expected > 0, got {self.lr}")
        if self.features not in FEATURE_MAPS:
            raise GanvaeError(f"model.features: expected one of {', '.join(FEATURE_MAPS)}, got {self.features!r}")
        if self.feature_size is not None and (not 32 <= self.feature_size <= 512 or self.feature_size % 32):
            raise GanvaeError(f"model.feature_size: expected a multiple of 32 from 32 to 512 pixels, "
                              f"got {self.feature_size}")
        if not 1 <= self.feature_grid <= 64:
            raise GanvaeError(f"model.feature_grid: expected a pooling grid of 1 to 64 cells a side, "
                              f"got {self.feature_grid}")
        if self.g_norm not in ("batch", "group", "none"):
            raise GanvaeError(f"model.g_norm: expected batch, group or none, got {self.g_norm!r}")


@dataclass
class DPMEPFConfig(DPMERFConfig):
    """``dp-mepf``: ``dp-merf`` on perceptual features (Harder et al., TMLR 2023), the whole maps kept."""

    name: ClassVar[str] = "dp-mepf"
    features: str = "effnet"
    feature_grid: int = 16


class MERFTarget(nn.Module):
    """The released target: mean embedding (2F + 1, K), class proportions (K,), and whether it was released."""

    def __init__(self, n_features: int, num_classes: int):
        super().__init__()
        self.register_buffer("embedding", torch.zeros(n_features, num_classes))
        self.register_buffer("props", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("released", torch.zeros((), dtype=torch.uint8))


class DPMERF(_Conditional, GenerativeModel):
    """A conditional DCGAN-style generator trained on a released class-conditional mean embedding."""

    family = "gan"              # an implicit generator (no encoder, no likelihood)
    generator_name = "G"
    ema_default = True
    needs_release: ClassVar[bool] = True  # the trainer must release its target (ganvae.privacy.merf) first
    init_skip: ClassVar[tuple[str, ...]] = ("target",)  # --init RUN takes G only: the release is this run's own

    def __init__(self, config: DPMERFConfig):
        super().__init__(config)
        c = config
        k = _need_classes(c, c.name)
        self.G = ConditionalGenerator(DCGANGenerator(c.latent_dim + c.embed_dim, c.channels, c.image_size,
                                                     c.g_width, c.max_width, c.g_norm), k, c.embed_dim)
        if c.features == "rff":
            self.register_buffer("W", rff_frequencies(c.freqs(), c.pixels(), c.length(), c.rff_seed),
                                 persistent=False)
            n_features = 2 * c.freqs() + 1
        else:
            # Frozen public weights: not model state (not in checkpoints or exports), so kept out of the
            # module tree (a list) and loaded when first used, on the data's device; a model that only samples
            # (or is built on the meta device to check shapes) never loads them.
            self._perceptual: list[PerceptualFeatures] = []
            n_features = sum(perceptual_sizes(c.net_size(), c.feature_grid)) + 1
        self.target = MERFTarget(n_features, k)

    def featurize(self, x: torch.Tensor) -> torch.Tensor:
        """The unit-norm feature vectors f(x) (B, n_features) of images ``x`` (B, C, H, W) in [0, 1], float32."""
        w = self.config.feature_weight
        if self.config.features == "rff":
            return features(x, self.W, w)
        net = frozen_on(self._perceptual, x.device, self.config.net_size(), self.config.feature_grid)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return perceptual_features(net(x.float()), w)

    @classmethod
    def private_config(cls, config, name: str = ""):
        return config  # nothing to change: privacy comes from the one noisy release, not from DP-SGD

    def inference_modules(self) -> list[str]:
        return ["G"]

    def decode_latent(self, z, net=None):
        return ((net if net is not None else self.G)(z) + 1) / 2

    # -- the release (called by ganvae.privacy.merf, once, before training)
    @property
    def released(self) -> bool:
        return bool(self.target.released.item())

    @torch.no_grad()
    def embed_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The class sum S of images ``x`` (B, C, H, W) in [0, 1] with labels ``y``, float64 (2F + 1, K)."""
        if y is None:
            raise GanvaeError("dp-merf needs labelled data (one integer class per image)")
        device = self.target.embedding.device
        f = self.featurize(x.to(device, torch.float32)).double()
        f = f / f.norm(dim=1, keepdim=True)  # norm 1 to float64 precision (float32 rounding could exceed it)
        return class_sum(f, y.to(device), self.config.num_classes)

    @torch.no_grad()
    def set_target(self, noisy_sum: torch.Tensor) -> None:
        emb, props = normalise(noisy_sum.double(), self.config.feature_weight)
        self.target.embedding.copy_(emb.float())
        self.target.props.copy_(props.float())
        self.target.released.fill_(1)

    # -- training
    def phases(self) -> list[Phase]:
        return [Phase("G", [self.G], self.config.lr, self.config.betas, self.g_phase, real_data=False)]

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if not self.released:
            raise GanvaeError("dp-merf: no embedding has been released to train on (train it with `ganvae train "
                              "--model dp-merf`, which releases it once from the training data)")
        y = torch.multinomial(self.target.props, batch.n, replacement=True, generator=gen)
        x = self.decode_latent(self.latent(batch.n, gen, labels=y))
        loss = embedding_distance(self.target.embedding, self.featurize(x), y)
        return {"loss": loss, "mmd2": loss.detach()}

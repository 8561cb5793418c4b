"""A modern GAN baseline: residual G and D without normalisation, trained with RpGAN + R1 + R2 (R3GAN).

Huang, Gokaslan, Kuleshov & Tompkin, "The GAN is dead; long live the GAN! A Modern GAN Baseline"
(NeurIPS 2024): a well-behaved loss (the relativistic pairing loss with zero-centred gradient
penalties on real *and* generated data) lets a plain modern ResNet train without the usual tricks
(no normalisation, no spectral norm, no minibatch statistics). The networks are in
:mod:`ganvae.nets.resnet`, the loss is the ``rpgan`` objective of :mod:`ganvae.objectives.gan`.

``resgan`` is :class:`~ganvae.models.gan.GAN` with those pieces; its G phase sees the real batch that
the D phase of the same step drew (the pairing needs it; it is not counted again in images seen).
``cresgan`` is its class-conditional version: G(z, y) with a label embedding, a projection D, and each
real image paired with a generated one of the same class, as in the paper's conditional models.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import GanvaeError
from ..nets import ResNetDiscriminator, ResNetGenerator
from ..nets.conditional import ConditionalGenerator, ProjectionDiscriminator
from ..objectives import GAN_OBJECTIVES
from ..objectives.gan import r1_penalty
from .base import Batch, Phase
from .conditional import ConditionalGAN, _need_classes, check_embed_dim
from .gan import GAN, GANConfig


@dataclass
class ResGANConfig(GANConfig):
    latent_dim: int = 64                          # size of z ~ N(0, I) (the paper: 64 at 32 px)
    objective: str = "rpgan"                      # relativistic pairing; another GAN objective also works
    gamma: float = 0.5                            # R1 and R2 weight: gamma/2 * E||grad_x D||^2 on real and fake
    r1_every: int = 4                             # lazy R1 + R2: every this many D steps, weighted by it (1: the paper)
    betas_g: tuple[float, float] = (0.0, 0.99)    # Adam betas of G (the paper: beta1 = 0, beta2 = 0.99)
    betas_d: tuple[float, float] = (0.0, 0.99)    # Adam betas of D
    g_width: int = 32         # G channels at the image size; doubled per halving of the resolution, up to max_width
    d_width: int = 32         # D channels at the image size; doubled per halving, up to max_width
    max_width: int = 128      # cap on the channels of a stage in G and D
    blocks_per_stage: int = 1  # residual blocks per resolution (the paper: 2 at 32 px and more above)
    expansion: int = 2        # inverted bottleneck: a block's 3x3 conv is expansion times as wide as the block
    group_size: int = 16      # channels per group of the grouped 3x3 conv (the paper: 16; cardinality = width / 16)

    def validate(self) -> None:
        super().validate()
        for name in ("g_width", "d_width", "max_width", "blocks_per_stage", "expansion", "group_size"):
            if getattr(self, name) < 1:
                raise GanvaeError(f"model.{name}: expected >= 1, got {getattr(self, name)}")
        if self.gamma < 0:
            raise GanvaeError(f"model.gamma: expected >= 0, got {self.gamma}")
        if self.r1_gamma > 0:
            raise GanvaeError("model.r1_gamma: resgan's R1 (and R2) weight is model.gamma; leave model.r1_gamma at 0")
        if self.d_spectral_norm:
            raise GanvaeError("model.d_spectral_norm: resgan's residual branches start at zero, which spectral "
                              "normalisation cannot divide by; R1 and R2 (model.gamma) already keep D smooth")

    def nets(self, latent_dim: int) -> tuple[ResNetGenerator, ResNetDiscriminator]:
        """G (taking ``latent_dim`` inputs) and D from this config's widths."""
        shape = dict(blocks_per_stage=self.blocks_per_stage, expansion=self.expansion, group_size=self.group_size)
        G = ResNetGenerator(latent_dim, self.channels, self.image_size, self.g_width, self.max_width, **shape)
        D = ResNetDiscriminator(self.channels, self.image_size, self.d_width, self.max_width, **shape)
        return G, D

    def build(self) -> tuple[nn.Module, nn.Module]:
        return self.nets(self.latent_dim)


@dataclass
class CondResGANConfig(ResGANConfig):
    embed_dim: int = 32        # size of the label embedding concatenated to z in G

    def validate(self) -> None:
        super().validate()
        check_embed_dim(self)

    def build(self) -> tuple[nn.Module, nn.Module]:
        c = _need_classes(self, "cresgan")
        G, D = self.nets(self.latent_dim + self.embed_dim)
        return ConditionalGenerator(G, c, self.embed_dim), ProjectionDiscriminator(D, c, D.head.in_features)


class ResGAN(GAN):
    """R3GAN on the GAN phases: D's terms carry gamma/2 (R1 + R2) (lazily, every ``r1_every`` D steps), and
    G's phase is given the real batch of the step's D phase when the objective pairs real with fake (rpgan)."""

    @classmethod
    def private_config(cls, config: ResGANConfig, name: str = "") -> ResGANConfig:
        if getattr(GAN_OBJECTIVES.get(config.objective), "pairs_real", False):
            raise GanvaeError(f"privacy: model {name or 'resgan'!r} with model.objective={config.objective} cannot "
                              "be trained privately (the relativistic loss pairs real with generated images, in G's "
                              "loss too); use model.objective=nonsaturating with model.gamma=0, or dcgan")
        if config.gamma > 0:
            raise GanvaeError("privacy: model.gamma > 0 cannot be trained privately (R1 and R2 need a double "
                              "backward through D); set model.gamma=0")
        return super().private_config(config, name)

    def __init__(self, config: ResGANConfig):
        super().__init__(config)
        if config.gamma > 0 and config.r1_every > 1:  # D steps taken, for lazy R1 + R2 (a buffer: exact resume)
            self.register_buffer("d_steps_done", torch.zeros((), dtype=torch.long))

    @property
    def pairs_real(self) -> bool:
        """Whether the objective's G loss takes the real batch (rpgan)."""
        return getattr(self.objective, "pairs_real", False)

    def d_terms(self, D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The objective's terms plus gamma/2 (R1 + R2), every ``r1_every`` D steps weighted by it (lazy)."""
        c, Dx = self.config, self.critic(D, gen, real)
        gamma = c.gamma
        if gamma > 0 and c.r1_every > 1:
            step = int(self.d_steps_done)
            self.d_steps_done.add_(1)
            gamma = gamma * c.r1_every if step % c.r1_every == 0 else 0.0
        if self.pairs_real:  # rpgan: the penalties reuse the loss's forward passes
            terms = self.objective.d_loss(Dx, real, fake, gen=gen, gamma=gamma)
        else:
            terms = self.objective.d_loss(Dx, real, fake, gen=gen)
            if gamma > 0:
                r1, r2 = gamma / 2 * r1_penalty(Dx, real), gamma / 2 * r1_penalty(Dx, fake)
                terms.update({"loss": terms["loss"] + r1 + r2, "loss/D/r1": r1, "loss/D/r2": r2})
        if c.gamma > 0:  # the same logged terms on the steps lazy regularisation skips
            zero = terms["loss"].new_zeros(())
            terms.setdefault("loss/D/r1", zero)
            terms.setdefault("loss/D/r2", zero)
        return terms

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if not self.pairs_real:
            return super().g_phase(batch, gen)
        real = batch.x * 2 - 1
        return self.objective.g_loss(self.critic(self.D, gen), self._fake(real.shape[0], gen), real=real)

    def phases(self) -> list[Phase]:
        d, g = super().phases()
        if self.pairs_real:  # the real batch the D phase drew this step (counted once)
            g = dataclasses.replace(g, real_data=True, reuse_batch=True)
        return [d, g]


class ConditionalResGAN(ConditionalGAN, ResGAN):
    """Class-conditional R3GAN: each real image paired with a generated one of its class in both phases."""

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if not self.pairs_real:
            return super().g_phase(batch, gen)  # ConditionalGAN's: fresh labels, no real images
        real, y = batch.x * 2 - 1, self._labels(batch)
        fake = self.G(self.latent(real.shape[0], gen, labels=y))  # fakes of the real batch's classes
        return self.objective.g_loss(self.critic(functools.partial(self.D, y=y), gen), fake, real=real)

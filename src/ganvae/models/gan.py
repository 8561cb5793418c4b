"""GANs: a generator G and a discriminator D trained against each other.

Two phases per training step: D (``d_steps`` times: a fresh real batch and fresh
noise each time; G is not differentiated), then G (fresh noise; D frozen). Images
enter D in [-1, 1]; ``sample()`` returns them in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import GanvaeError
from ..nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ..objectives import GAN_OBJECTIVES
from .base import Batch, GenerativeModel, ModelConfigBase, Phase


@dataclass
class GANConfig(ModelConfigBase):
    latent_dim: int = 100                    # size of z ~ N(0, I)
    objective: str = "nonsaturating"         # a registered GAN objective: minimax, nonsaturating
    lr_g: float = 2e-4                       # Adam learning rate of G
    lr_d: float = 2e-4                       # Adam learning rate of D
    betas_g: tuple[float, float] = (0.5, 0.999)  # Adam betas of G (DCGAN paper: beta1 = 0.5)
    betas_d: tuple[float, float] = (0.5, 0.999)  # Adam betas of D
    d_steps: int = 1                         # D updates per G update

    def validate(self) -> None:
        GAN_OBJECTIVES.get(self.objective)  # unknown name -> error listing the valid ones
        if self.d_steps < 1:
            raise GanvaeError(f"model.d_steps: expected >= 1, got {self.d_steps}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise GanvaeError(f"model.{name}: expected > 0, got {getattr(self, name)}")
        if self.latent_dim < 1:
            raise GanvaeError(f"model.latent_dim: expected >= 1, got {self.latent_dim}")


@dataclass
class DCGANConfig(GANConfig):
    g_width: int = 64         # G channels at its highest resolution; doubled per halving, up to max_width
    d_width: int = 64         # D channels at its highest resolution; doubled per halving, up to max_width
    max_width: int = 512      # cap on channels in G and D
    g_norm: str = "batch"     # normalisation in G: batch, group, none
    d_norm: str = "batch"     # normalisation in D (not on its first layer): batch, group, none

    def build(self) -> tuple[nn.Module, nn.Module]:
        G = DCGANGenerator(self.latent_dim, self.channels, self.image_size, self.g_width, self.max_width, self.g_norm)
        D = DCGANDiscriminator(self.channels, self.image_size, self.d_width, self.max_width, self.d_norm)
        return G, D


@dataclass
class MLPGANConfig(GANConfig):
    g_hidden: tuple[int, ...] = (256, 512, 1024)  # G hidden layer sizes (the founding document's dense G)
    d_hidden: tuple[int, ...] = (1024, 512, 256)  # D hidden layer sizes
    g_norm: bool = True                            # BatchNorm1d in G's hidden layers
    d_dropout: float = 0.0                         # dropout in D's hidden layers

    def build(self) -> tuple[nn.Module, nn.Module]:
        G = MLPGenerator(self.latent_dim, self.channels, self.image_size, self.g_hidden, self.g_norm)
        D = MLPDiscriminator(self.channels, self.image_size, self.d_hidden, self.d_dropout)
        return G, D


class GAN(GenerativeModel):
    family = "gan"
    generator_name = "G"
    ema_default = True

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.G, self.D = config.build()
        self.objective = GAN_OBJECTIVES.get(config.objective)()

    def decode_latent(self, z, net=None):
        return ((net if net is not None else self.G)(z) + 1) / 2

    def _fake(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.G(self.latent(n, gen))  # (B, C, H, W) in [-1, 1]

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        real = batch.x * 2 - 1
        with torch.no_grad():
            fake = self._fake(real.shape[0], gen)
        return self.objective.d_loss(self.D, real, fake)

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return self.objective.g_loss(self.D, self._fake(batch.n, gen))

    def phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("D", [self.D], c.lr_d, c.betas_d, self.d_phase, repeats=c.d_steps),
            Phase("G", [self.G], c.lr_g, c.betas_g, self.g_phase, real_data=False),
        ]

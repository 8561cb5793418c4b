"""The founding document's dense (MLP) generator and discriminator, done right.

The generator ends in tanh (images in [-1, 1]); the discriminator ends in one
logit, never a sigmoid: the objectives work on logits with softplus.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dcgan import apply_spectral_norm


class MLPGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, latent_dim: int, channels: int, image_size: int,
                 hidden: tuple[int, ...] = (256, 512, 1024), norm: bool = True):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        layers: list[nn.Module] = []
        d = latent_dim
        for h in hidden:
            layers += [nn.Linear(d, h)]
            if norm:
                layers += [nn.BatchNorm1d(h)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            d = h
        layers += [nn.Linear(d, math.prod(self.shape)), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """image (B, C, H, W) -> logit (B,)."""

    def __init__(self, channels: int, image_size: int, hidden: tuple[int, ...] = (1024, 512, 256),
                 dropout: float = 0.0, spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers += [nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)
        if spectral_norm:  # on every linear layer (Miyato et al. 2018)
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).flatten()

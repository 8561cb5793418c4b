"""VAE encoders and decoders (convolutional and MLP).

An encoder maps an image in [0, 1] to ``2 * latent_dim`` numbers: the mean and the
log-variance of a diagonal Gaussian (the model wraps them in
:class:`ganvae.objectives.vae.DiagonalGaussian`). A decoder maps a latent code to
the parameters of the pixel likelihood, shape ``(B, out_channels, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dcgan import conv_plan, upsample_conv


def _act() -> nn.Module:
    return nn.SiLU(inplace=True)


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (B, 2 * latent_dim)."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, width: int = 32,
                 max_width: int = 256):
        super().__init__()
        base, n_down = conv_plan(image_size)
        layers: list[nn.Module] = []
        c = channels
        for i in range(n_down):
            w = min(width * 2 ** i, max_width)
            layers += [nn.Conv2d(c, w, 4, 2, 1), _act()]
            c = w
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(c * base * base, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> likelihood parameters (B, out_channels, H, W)."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, width: int = 32,
                 max_width: int = 256, upsample: str = "transposed"):
        super().__init__()
        base, n_up = conv_plan(image_size)
        widths = [min(width * 2 ** (n_up - 1 - i), max_width) for i in range(n_up)]
        self.base, self._c0 = base, widths[0]
        self.fc = nn.Sequential(nn.Linear(latent_dim, widths[0] * base * base), _act())
        layers: list[nn.Module] = []
        for i in range(n_up - 1):
            layers += [upsample_conv(widths[i], widths[i + 1], upsample, bias=True), _act()]
        layers += [upsample_conv(widths[-1], out_channels, upsample, bias=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self._c0, self.base, self.base)
        return self.body(h)


class MLPEncoder(nn.Module):
    """x (B, C, H, W) -> (B, 2 * latent_dim)."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(d, h), _act()]
            d = h
        layers += [nn.Linear(d, 2 * latent_dim)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> likelihood parameters (B, out_channels, H, W)."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, hidden: tuple[int, ...] = (256, 512)):
        super().__init__()
        self.shape = (out_channels, image_size, image_size)
        layers: list[nn.Module] = []
        d = latent_dim
        for h in hidden:
            layers += [nn.Linear(d, h), _act()]
            d = h
        layers += [nn.Linear(d, math.prod(self.shape))]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)

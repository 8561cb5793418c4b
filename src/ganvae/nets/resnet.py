"""Residual generator and discriminator without normalisation layers (the R3GAN recipe, Huang et al. 2024).

Any square size ``base * 2**k`` that :func:`~ganvae.nets.dcgan.conv_plan` accepts (8, 16, 28, 32, 64, ...).
Both networks are a stack of stages, one per resolution from ``base x base`` up to the image size, each
stage ``blocks_per_stage`` residual blocks deep:

* a residual block is ``x + W3 act(W2 act(W1 x))``: a 1x1 conv widening ``C`` channels to
  ``expansion * C``, a grouped 3x3 conv (about ``group_size`` channels per group), a 1x1 conv back to
  ``C``, leaky ReLU (slope 0.2), no normalisation. Fix-up initialisation keeps training stable without
  normalisation: the last conv of every branch starts at zero (every block is the identity at
  initialisation) and the other two at He's scale times ``L**(-1/4)`` (``L`` blocks in the network,
  ``L**(-1/(2m-2))`` with ``m = 3`` layers per branch);
* resolution changes are bilinear (antialiased when halving) with a 1x1 conv where the width changes:
  no transposed or strided convolutions, so no checkerboard artefacts;
* G starts from a learned ``base x base`` basis, one map per channel, scaled channel-wise by a linear
  function of z, and ends with a 1x1 conv to the image channels and no tanh (sample() clamps);
* D starts with a 1x1 conv from the image channels and ends with a depthwise ``base x base`` conv to
  one value per channel (its :meth:`~ResNetDiscriminator.features`) and a linear head to one logit.

Widths double per halving of the resolution, from ``width`` at the image size up to ``max_width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dcgan import conv_plan

SLOPE = 0.2                                  # leaky ReLU negative slope
ACT_GAIN = math.sqrt(2 / (1 + SLOPE ** 2))   # He's gain for that leaky ReLU


def stage_widths(width: int, n: int, cap: int) -> list[int]:
    """Channel widths of ``n`` stages from the lowest resolution (index 0) to the highest (``width``)."""
    return [min(width * 2 ** (n - 1 - i), cap) for i in range(n)]


def groups_for(channels: int, group_size: int) -> int:
    """Groups of the 3x3 conv: about ``group_size`` channels each, and dividing ``channels`` exactly."""
    return math.gcd(channels, max(1, channels // group_size))


def he_init(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """Weights N(0, (gain / sqrt(fan_in))^2), biases 0; ``gain=0`` zeroes the weights."""
    if gain == 0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(layer.weight[0].numel()))  # fan_in: weight[0]
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class ResidualBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): ``x + project(act(mix(act(expand(x)))))``; the identity at initialisation."""

    def __init__(self, channels: int, expansion: int, group_size: int, n_blocks: int):
        super().__init__()
        hidden = channels * expansion
        gain = ACT_GAIN * n_blocks ** (-1 / 4)  # fix-up: L^(-1/(2m-2)), m = 3 layers per branch
        self.expand = he_init(nn.Conv2d(channels, hidden, 1), gain)
        self.mix = he_init(nn.Conv2d(hidden, hidden, 3, padding=1, groups=groups_for(hidden, group_size)), gain)
        self.project = he_init(nn.Conv2d(hidden, channels, 1, bias=False), 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.expand(x), SLOPE)
        y = F.leaky_relu(self.mix(y), SLOPE)
        return x + self.project(y)


class Upsample(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, 2H, 2W): 1x1 conv where the width changes, then bilinear doubling."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = he_init(nn.Conv2d(c_in, c_out, 1, bias=False)) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False)


class Downsample(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): antialiased bilinear halving, then a 1x1 conv where the width changes."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = he_init(nn.Conv2d(c_in, c_out, 1, bias=False)) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the antialiased kernel has no bfloat16 version on the CPU: under bf16 autocast it runs in fp32
        y = F.interpolate(x.float(), scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
        return self.conv(y.to(x.dtype))


class ResNetGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W), about [-1, 1] (a linear output: no tanh)."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64, max_width: int = 128,
                 blocks_per_stage: int = 1, expansion: int = 2, group_size: int = 16):
        super().__init__()
        base, n_up = conv_plan(image_size)
        widths = stage_widths(width, n_up + 1, max_width)  # widths[0] at base x base
        n_blocks = blocks_per_stage * len(widths)
        self.latent_dim, self.base = latent_dim, base
        self.basis = nn.Parameter(torch.randn(widths[0], base, base))  # (C0, base, base)
        self.scale = he_init(nn.Linear(latent_dim, widths[0], bias=False))
        stages = []
        for i, ch in enumerate(widths):  # lowest resolution first; each stage after the first doubles it
            layers: list[nn.Module] = [Upsample(widths[i - 1], ch)] if i else []
            layers += [ResidualBlock(ch, expansion, group_size, n_blocks) for _ in range(blocks_per_stage)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.to_image = he_init(nn.Conv2d(widths[-1], channels, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.basis[None] * self.scale(z)[:, :, None, None]  # (B, C0, base, base)
        return self.to_image(self.stages(h))


class ResNetDiscriminator(nn.Module):
    """image (B, C, H, W) in [-1, 1] -> logit (B,)."""

    def __init__(self, channels: int, image_size: int, width: int = 64, max_width: int = 128,
                 blocks_per_stage: int = 1, expansion: int = 2, group_size: int = 16):
        super().__init__()
        base, n_down = conv_plan(image_size)
        widths = stage_widths(width, n_down + 1, max_width)[::-1]  # highest resolution first
        n_blocks = blocks_per_stage * len(widths)
        self.from_image = he_init(nn.Conv2d(channels, widths[0], 1))
        stages = []
        for i, ch in enumerate(widths):  # highest resolution first; each stage but the last halves it
            layers: list[nn.Module] = [ResidualBlock(ch, expansion, group_size, n_blocks)
                                       for _ in range(blocks_per_stage)]
            if i + 1 < len(widths):
                layers.append(Downsample(ch, widths[i + 1]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        c = widths[-1]
        self.basis = he_init(nn.Conv2d(c, c, base, groups=c, bias=False))  # (B, C, base, base) -> (B, C, 1, 1)
        self.head = he_init(nn.Linear(c, 1, bias=False))  # no bias: the relativistic loss ignores an offset

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The vector before the logit, (B, C) (what a projection discriminator pairs with a label embedding)."""
        return self.basis(self.stages(self.from_image(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()

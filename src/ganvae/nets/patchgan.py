"""PatchGAN discriminator (pix2pix, Isola et al. 2017): one logit per overlapping patch.

The paper's 70x70 PatchGAN is C64-C128-C256-C512 (4x4 convolutions, three of stride 2, then one of
stride 1) and a last 4x4 convolution to one channel: receptive field 70 px, a 30x30 logit map on
256 px images. Scaled down for small images, the number of stride-2 layers ``n_down`` defaults to
``floor(log2(size)) - 4`` clamped to 1..3, so the receptive field is 16 px at 28-32 px, 34 px at 64 px,
70 px from 128 px. Output (B, 1, h, w) with h = floor(S / 2**n_down) - 2 (objectives average it).
No normalisation on the first layer; no sigmoid (logits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .unet import make_norm


def patch_layers(image_size: int, n_down: int = 0) -> int:
    """Stride-2 layers of the PatchGAN: ``n_down`` if given (> 0), else floor(log2(size)) - 4 in 1..3."""
    return n_down if n_down > 0 else max(1, min(3, int(math.floor(math.log2(image_size))) - 4))


def patch_output_size(image_size: int, n_down: int) -> int:
    """Side of the logit map: each stride-2 conv halves (floor), each of the two stride-1 convs takes 1 off."""
    return image_size // 2 ** n_down - 2


def receptive_field(n_down: int) -> int:
    """Pixels one logit sees: 4 (last conv), +3 (stride-1 conv), then r -> 2r + 2 per stride-2 conv."""
    r = 7
    for _ in range(n_down):
        r = 2 * r + 2
    return r


class PatchGANDiscriminator(nn.Module):
    def __init__(self, in_channels: int, image_size: int, width: int = 64, max_width: int = 512,
                 n_down: int = 0, norm: str = "batch"):
        super().__init__()
        n = self.n_down = patch_layers(image_size, n_down)
        ch = [min(width * 2 ** i, max_width) for i in range(n + 1)]
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, n):
            layers += [nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=bias), make_norm(norm, ch[i]), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ch[n - 1], ch[n], 4, 1, 1, bias=bias), make_norm(norm, ch[n]), nn.LeakyReLU(0.2),
                   nn.Conv2d(ch[n], 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, S, S) in [-1, 1] -> logits (B, 1, h, w), one per patch."""
        return self.net(x)

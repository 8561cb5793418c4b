"""U-Net generator for image-to-image translation (pix2pix, Isola et al. 2017; CycleGAN's G here too).

An encoder of stride-2 4x4 convolutions (LeakyReLU 0.2) down to a small bottleneck, a decoder of
stride-2 transposed convolutions (ReLU) back up, each decoder level concatenated with the encoder
level of the same resolution (the skips). No normalisation on the first and innermost layers (as in
the paper's code; the innermost map may be 1x1). Output: tanh, images in [-1, 1].

Any square size from 8 px works: ``depth`` (halvings) defaults to ``floor(log2(size))`` capped at 8
(256 px: the paper's 8), and the input is padded (replicate) up to a multiple of ``2**depth`` and the
output cropped back, so 28 px runs as 32 inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def unet_depth(image_size: int, depth: int = 0) -> int:
    """Halvings of the U-Net: ``depth`` if given (> 0), else floor(log2(image_size)) capped at 8."""
    return depth if depth > 0 else max(1, min(8, int(math.floor(math.log2(image_size)))))


def make_norm(kind: str, channels: int) -> nn.Module:
    """``batch``, ``instance`` (affine, no running stats: CycleGAN's) or ``none``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, image_size: int, width: int = 64,
                 max_width: int = 512, depth: int = 0, norm: str = "batch", dropout: float = 0.0):
        super().__init__()
        d = self.depth = unet_depth(image_size, depth)
        self.image_size = image_size
        ch = [min(width * 2 ** i, max_width) for i in range(d)]  # encoder level i: ch[i] channels
        self.down = nn.ModuleList()
        for i in range(d):
            inner = i == d - 1
            self.down.append(nn.Sequential(
                nn.Conv2d(in_channels if i == 0 else ch[i - 1], ch[i], 4, 2, 1,
                          bias=i == 0 or inner or norm != "batch"),
                make_norm("none" if i == 0 or inner else norm, ch[i])))
        self.up = nn.ModuleList()
        for j in range(d):  # j = 0 is the innermost decoder level
            level = d - 1 - j                    # the resolution level it produces (level 0: the output)
            c_in = ch[d - 1] if j == 0 else 2 * ch[level]
            last = level == 0
            c_out = out_channels if last else ch[level - 1]
            layers = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=last or norm != "batch")]
            if not last:
                layers.append(make_norm(norm, c_out))
                if dropout > 0 and j < 3:  # the paper's noise: dropout on the three innermost decoder levels
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, S, S) in [-1, 1] -> (B, out_channels, S, S) in [-1, 1]."""
        size = x.shape[-1]
        m = 2 ** self.depth
        pad = -size % m
        lo = pad // 2
        if pad:
            x = F.pad(x, (lo, pad - lo, lo, pad - lo), mode="replicate")
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.leaky_relu(h, 0.2))
            skips.append(h)
        h = skips.pop()  # the bottleneck
        for block in self.up:
            h = block(F.relu(h))
            if skips:
                h = torch.cat([h, skips.pop()], 1)
        h = torch.tanh(h)
        return h[..., lo:lo + size, lo:lo + size] if pad else h

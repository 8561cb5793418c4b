"""Learned pseudo-inputs: the K images whose posteriors make the VampPrior (Tomczak & Welling 2018).

A plain parameter holder: ``forward()`` gives the pseudo-inputs as images in [0, 1], the range of the data
the encoder sees. The model passes them through its encoder to get the prior's mixture components.
"""

from __future__ import annotations

import torch
from torch import nn


class PseudoInputs(nn.Module):
    """() -> (K, C, H, W) in (0, 1): sigmoid of learned logits.

    A sigmoid, not the paper's hardtanh: hardtanh's gradient is zero outside [0, 1], so a pseudo-pixel pushed
    past a bound stops learning. The logits start N(0, init_std^2): distinct grey noise images (about
    0.5 +- 0.2 for init_std 1), so the K components start apart; training moves them towards the data.
    """

    def __init__(self, components: int, channels: int, image_size: int, init_std: float = 1.0):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(components, channels, image_size, image_size) * init_std)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

"""Exponential moving average of the generator's weights, with the half-life in images.

beta = 0.5 ** (batch_size / half_life_images) per step (stylegan2-ada); with a
ramp-up the half-life is at most ``rampup * images_seen``, so short runs are not
dominated by the random initial weights. Buffers (BatchNorm statistics) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, net: nn.Module, half_life_kimg: float = 10.0, rampup: float | None = 0.05):
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup

    def beta(self, batch_size: int, images_seen: int) -> float:
        half_life = self.half_life_kimg * 1000
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, net: nn.Module, batch_size: int, images_seen: int) -> None:
        b = self.beta(batch_size, images_seen)
        ema_p, live_p = list(self.module.parameters()), [p.detach() for p in net.parameters()]
        torch._foreach_lerp_(ema_p, live_p, 1.0 - b)  # one multi-tensor kernel, same arithmetic as lerp_
        ema_b, live_b = list(self.module.buffers()), list(net.buffers())
        if ema_b:
            torch._foreach_copy_(ema_b, live_b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)

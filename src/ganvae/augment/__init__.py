"""Augmentation before D: DiffAugment (here) and adaptive discriminator augmentation (:mod:`.ada`).

``model.augment``: a DiffAugment policy (below), or ``ada`` for ADA (Karras et al. 2020; its options are
``model.ada_*``, see :mod:`ganvae.augment.ada`). :func:`build_augment` makes either from a GAN config.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same kinds of random, differentiable transformations are applied to real and
generated images every time D sees them, in both phases, so D cannot overfit a
small data set while G still gets gradients through the augmentation. Each call
draws fresh parameters per image from the ``torch.Generator`` it is given (the
training noise generator), so runs stay deterministic and resumable.

Policies (``model.augment``, a comma list, applied in the order given):

- ``color``: brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the
  channel mean by U(0, 2); a no-op on one-channel images), contrast (scale the
  deviation from the image mean by U(0.5, 1.5)), as in the reference code.
- ``translation``: shift by up to 1/8 of the image side in each direction (an integer
  number of pixels, uniform), filling with zeros (mid-grey in [-1, 1]).
- ``cutout``: zero one square of half the image side at a uniform random centre
  (clipped at the border).

Images are (B, C, H, W), normally in [-1, 1] (D's input range).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .. import rng
from ..errors import GanvaeError
from ..registry import Registry
from .ada import AdaAugment, check_options

AugmentFn = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]
AUGMENTATIONS: Registry[AugmentFn] = Registry("augmentation")


def _uniform(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """(B, 1, 1, 1) uniform [0, 1) draws, one per image."""
    return rng.rand((x.shape[0], 1, 1, 1), gen, device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, n: int, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """(n,) integers in [low, high], inclusive."""
    return rng.randint(low, high + 1, (n,), gen, device=x.device)


@AUGMENTATIONS.register("color")
def rand_color(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    x = x + (_uniform(x, gen) - 0.5)                                     # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, gen) * 2) + mean                       # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (_uniform(x, gen) + 0.5) + mean                     # contrast
    return x


def translate(x: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels, filling with zeros: ``out[b, :, i, j] = x[b, :, i - sy, j - sx]``.

    ``shift_y``, ``shift_x``: (B,) integers (positive moves the content down / right).
    Differentiable in ``x`` (a gather from the zero-padded image).
    """
    B, _, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1))                                      # (B, C, H + 2, W + 2), zero border
    # source pixel in padded coordinates; anything shifted in from outside reads the zero border
    rows = (torch.arange(H, device=x.device).view(1, H, 1) - shift_y.view(B, 1, 1) + 1).clamp(0, H + 1)
    cols = (torch.arange(W, device=x.device).view(1, 1, W) - shift_x.view(B, 1, 1) + 1).clamp(0, W + 1)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    return padded.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


@AUGMENTATIONS.register("translation")
def rand_translation(x: torch.Tensor, gen: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    sy, sx = int(x.shape[2] * ratio + 0.5), int(x.shape[3] * ratio + 0.5)
    shift_y = _randint(-sy, sy, x.shape[0], x, gen)
    shift_x = _randint(-sx, sx, x.shape[0], x, gen)
    return translate(x, shift_y, shift_x)


def cutout_mask(shape: tuple[int, ...], centre_y: torch.Tensor, centre_x: torch.Tensor, size_y: int, size_x: int,
                device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, 1, H, W) mask: 0 inside the ``size_y x size_x`` square around each centre (clipped), 1 elsewhere."""
    B, _, H, W = shape
    i = torch.arange(H, device=device).view(1, H, 1)
    j = torch.arange(W, device=device).view(1, 1, W)
    top = centre_y.view(B, 1, 1) - size_y // 2
    left = centre_x.view(B, 1, 1) - size_x // 2
    inside = (i >= top) & (i < top + size_y) & (j >= left) & (j < left + size_x)  # (B, H, W)
    return (~inside).to(dtype).unsqueeze(1)


@AUGMENTATIONS.register("cutout")
def rand_cutout(x: torch.Tensor, gen: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    H, W = x.shape[2], x.shape[3]
    size_y, size_x = int(H * ratio + 0.5), int(W * ratio + 0.5)
    # the reference code's offsets: centres in [0, H + (1 - size % 2)), so the square may be clipped
    cy = _randint(0, H - size_y % 2, x.shape[0], x, gen)
    cx = _randint(0, W - size_x % 2, x.shape[0], x, gen)
    return x * cutout_mask(x.shape, cy, cx, size_y, size_x, device=x.device, dtype=x.dtype)


def parse_policy(policy: str, where: str = "model.augment") -> list[str]:
    """``"translation,cutout,color"`` -> names, checked; an unknown one is an error listing the valid ones."""
    names = [p.strip() for p in (policy or "").split(",") if p.strip()]
    for n in names:
        if n == ADA:
            raise GanvaeError(f"{where}: ada is adaptive augmentation on its own; it does not combine with "
                              f"DiffAugment's {', '.join(AUGMENTATIONS.names())} (give one or the other)")
        if n not in AUGMENTATIONS:
            raise GanvaeError(f"{where}: unknown augmentation {n!r}; valid: {', '.join(AUGMENTATIONS.names())} "
                              f"(a comma list, e.g. translation,cutout,color; empty for none), or ada (adaptive)")
    return names


ADA = "ada"  # model.augment=ada: adaptive discriminator augmentation


def check_augment(config) -> None:
    """A GAN config's ``augment`` and, for ``ada``, its ``ada_*`` options (one clear line per mistake)."""
    if (config.augment or "").strip() == ADA:
        check_options(config.ada_pipe, config.ada_p, config.ada_target, config.ada_kimg, config.ada_interval)
    else:
        parse_policy(config.augment, "model.augment")


def behind(augment: "DiffAugment | AdaAugment", D: Callable[[torch.Tensor], torch.Tensor],
           gen: torch.Generator | None, real: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``D`` behind ``augment`` (fresh draws from ``gen`` per call; ``D`` itself when there is none).

    ``real``: the D phase's real batch; ADA records D's logits on it (its r_t) from the loss's own pass.
    """
    if isinstance(augment, AdaAugment) and real is not None:
        return augment.watch(D, gen, real)
    if not augment:
        return D
    return lambda x: D(augment(x, gen))


def build_augment(config) -> "DiffAugment | AdaAugment":
    """The augmentation a GAN config asks for: :class:`AdaAugment` (a module with state) or :class:`DiffAugment`."""
    if (config.augment or "").strip() == ADA:
        return AdaAugment.from_config(config)
    return DiffAugment(config.augment)


class DiffAugment:
    """``DiffAugment("translation,cutout")(x, gen)``: the policy's augmentations, in order."""

    def __init__(self, policy: str = ""):
        self.names = parse_policy(policy)
        self.fns = [AUGMENTATIONS.get(n) for n in self.names]

    def __bool__(self) -> bool:
        return bool(self.fns)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        for fn in self.fns:
            x = fn(x, gen)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.names)!r})"

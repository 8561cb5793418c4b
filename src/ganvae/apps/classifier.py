"""The one small fixed classifier of every downstream measurement, and its training recipe.

Every arm of ``ganvae augment`` (real, real + synthetic, synthetic only) and both sides of ``ganvae cas``
(generated training set, real training set) train :func:`fit_classifier` with the *same*
:class:`ClassifierConfig`: only the training images differ, so differences in test accuracy come from the data.

The recipe counts optimiser **steps**, not epochs: arms with 100 real images and with 100 + 1000 synthetic
ones get the same optimisation budget, so the larger set is not also trained longer.

Classic augmentation (the baseline synthetic data must beat): a random shift of up to ``max_shift`` pixels
(zero padding, then a crop back to size) and, only when ``flip`` is on, a horizontal flip with probability 1/2.
``flip`` is off by default because a mirrored digit or letter is another symbol; turn it on for photographs.

The network (any image size >= 4, any channel and class count): stages of two 3x3 convolutions + BatchNorm + ReLU,
each stage but the last followed by 2x2 max-pooling, widths ``width * 2**i``; global average pooling; one linear layer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import GanvaeError


@dataclass(frozen=True)
class ClassifierConfig:
    """The training recipe; frozen, so one object can be shared by every arm without being changed."""

    width: int = 16          # channels of the first stage; stage i has width * 2**i
    steps: int = 600         # optimiser steps (whatever the training set's size)
    batch_size: int = 64     # images per step (the whole set when it is smaller)
    lr: float = 1e-3         # learning rate (the peak one under a schedule)
    schedule: str = "cosine"  # cosine: lr * (1 + cos(pi t / steps)) / 2, to 0 at the end (a stable last
                              # iterate: with a constant lr, CAS moved by 9 points between classifier seeds);
                              # constant: the recipe of results made before 2026-11-30
    optimizer: str = "adam"  # adam or sgd (momentum 0.9)
    weight_decay: float = 5e-4  # L2 penalty (decoupled for adam: AdamW)
    seed: int = 0            # weights' initialisation, batch order and augmentation draws
    augment: bool = True     # classic augmentation on the training images (random shifts, optional flips)
    max_shift: int | None = None  # pixels; None: image_size // 8, at least 1
    flip: bool = False       # random horizontal flips (off: digits and text change meaning when mirrored)

    def validate(self) -> None:
        for name in ("width", "steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GanvaeError(f"classifier {name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise GanvaeError(f"classifier lr must be positive, got {self.lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise GanvaeError(f"classifier optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise GanvaeError(f"classifier schedule must be cosine or constant, got {self.schedule!r}")
        if self.max_shift is not None and (not isinstance(self.max_shift, int) or self.max_shift < 0):
            raise GanvaeError(f"classifier max_shift must be a non-negative integer, got {self.max_shift!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SmallCNN(nn.Module):
    """(B, C, S, S) in [0, 1] -> (B, num_classes) logits."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 16):
        super().__init__()
        stages = max(1, min(3, (image_size // 4).bit_length()))  # 8 -> 2 stages, 28/32 -> 3, 4 -> 1
        layers, c_in = [], channels
        for i in range(stages):
            c = width * 2 ** i
            for a, b in ((c_in, c), (c, c)):
                layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
            if i < stages - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x * 2 - 1).mean(dim=(2, 3))  # (B, C') global average pool
        return self.head(h)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1]; float images are returned as float32."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def classic_augment(x: torch.Tensor, max_shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to ``max_shift`` pixels (zero padding) and, with ``flip``, random horizontal flips.

    ``x``: (B, C, H, W). The draws come from ``gen`` only (the same generator state -> the same batch).
    """
    b, _, h, w = x.shape
    if max_shift > 0:
        p = max_shift
        padded = F.pad(x, (p, p, p, p))
        off = torch.randint(0, 2 * p + 1, (b, 2), generator=gen)
        x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(off.tolist())])
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(3), x)
    return x


def lr_at(cfg: ClassifierConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``cfg.steps``."""
    if cfg.schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))


def _optimizer(cfg: ClassifierConfig, params):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _check(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if images.ndim != 4 or images.shape[0] != labels.shape[0] or images.shape[0] < 1:
        raise GanvaeError(f"classifier: expected (N, C, H, W) images with N labels, got images "
                          f"{tuple(images.shape)} and {tuple(labels.shape)} labels")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise GanvaeError(f"classifier: labels must be 0..{num_classes - 1}, got {int(labels.min())}.."
                          f"{int(labels.max())}")


def fit_classifier(cfg: ClassifierConfig, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   device: str | torch.device = "cpu") -> SmallCNN:
    """Train :class:`SmallCNN` on ``images`` (uint8 or [0, 1] float, (N, C, H, W)) and ``labels`` (N,).

    Deterministic for ``cfg.seed`` on CPU (initialisation, batches and augmentation draw from seeded
    generators; the global RNG is left as it was).
    """
    cfg.validate()
    _check(images, labels, num_classes)
    x, y = as_float(images), labels.long()
    n, c, s = x.shape[0], x.shape[1], x.shape[2]
    shift = (cfg.max_shift if cfg.max_shift is not None else max(1, s // 8)) if cfg.augment else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = SmallCNN(c, s, num_classes, cfg.width)
    net = net.to(device).train()
    opt = _optimizer(cfg, net.parameters())
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    bs, order, pos = min(cfg.batch_size, n), torch.randperm(n, generator=gen), 0
    for step in range(cfg.steps):
        if pos + bs > n:  # a fresh permutation each pass: every image once per epoch
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + bs]
        pos += bs
        xb = x[idx]
        if cfg.augment:
            xb = classic_augment(xb, shift, cfg.flip, gen)
        loss = F.cross_entropy(net(xb.to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """The share of ``images`` whose arg-max class is their label, in [0, 1]."""
    device = next(net.parameters()).device
    was = net.training
    net.eval()
    right = 0
    for i in range(0, images.shape[0], batch_size):
        pred = net(as_float(images[i:i + batch_size]).to(device)).argmax(1).cpu()
        right += int((pred == labels[i:i + batch_size].long()).sum())
    net.train(was)
    return right / max(1, images.shape[0])


def train_and_test(cfg: ClassifierConfig, train_images: torch.Tensor, train_labels: torch.Tensor,
                   test_images: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                   device: str | torch.device = "cpu") -> float:
    """Test accuracy of the fixed classifier trained with ``cfg`` on the training images."""
    net = fit_classifier(cfg, train_images, train_labels, num_classes, device)
    return accuracy(net, test_images, test_labels)

"""Batches sliced from the uint8 training images and scaled on the fly.

No Dataset, no DataLoader, no per-image Python work: each epoch is one seeded
permutation; a batch is an index slice, a ``float()`` and a division. The images are an
in-memory tensor (moved to the device once) or a view of an on-disk cache
(:class:`ganvae.data.cache_view.CachedImages`): then each batch's rows are read from the
cache file (sorted, through the OS page cache) and moved to the device, so memory holds a
batch, not the data set; the permutation and the batches are the same either way. The order
is a pure function of (seed, epoch, position), so resuming restores it exactly.
Incomplete last batches are dropped (every step sees ``batch_size`` images).
Under data-parallel training ``batch_size`` is the global batch: each of the
``world`` processes walks the same permutation and keeps its ``rank``-th slice (from a
cache, each process reads only the rows of its slice).
"""

from __future__ import annotations

import torch

from ..data.cache_view import is_cached
from ..errors import GanvaeError
from ..models import Batch
from .. import rng


class BatchStream:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int,
                 device: torch.device | str = "cpu", binarize: torch.Generator | None = None,
                 rank: int = 0, world: int = 1):
        n = images.shape[0]
        if batch_size < 1:
            raise GanvaeError(f"train.batch_size: expected >= 1, got {batch_size}")
        if n < batch_size:
            raise GanvaeError(
                f"train.batch_size {batch_size} is larger than the {n} training images; lower --batch-size"
            )
        self.device = torch.device(device)
        self.cached = is_cached(images)  # a cache view stays on disk; a batch at a time goes to the device
        self.images = images if self.cached else images.to(device)  # (N, C, H, W) uint8
        self.labels = labels if labels is None or self.cached else labels.to(device)
        self.batch_size, self.seed, self.n = batch_size, seed, n
        self.rank, self.world = rank, world
        self.local = batch_size // world  # images per process per batch
        self.binarize = binarize  # a generator: each batch becomes a Bernoulli(x) sample (dynamic binarisation)
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).to("cpu" if self.cached else self.images.device)

    def next(self) -> Batch:
        if self.pos + self.batch_size > self.n:
            self.epoch += 1
            self.pos = 0
            self._perm = self._permutation(self.epoch)
        start = self.pos + self.rank * self.local
        idx = self._perm[start:start + self.local]
        self.pos += self.batch_size
        if self.cached:
            x = torch.from_numpy(self.images.read(idx.numpy())).to(self.device)  # (B, C, H, W) uint8
            y = self.labels[idx].to(self.device) if self.labels is not None else None
        else:
            x = self.images[idx]
            y = self.labels[idx] if self.labels is not None else None
        x = x.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if self.binarize is not None:
            x = rng.bernoulli(x, self.binarize)
        return Batch(x, y)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)

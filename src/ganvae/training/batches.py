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
Translation data adds a second domain, ``images_b`` (``Batch.b``): paired, its rows go with the
images' rows (the same permutation); unpaired, it is walked by a permutation and epoch of its own
(another seed), kept in the stream's state for exact resume.
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
                 rank: int = 0, world: int = 1, images_b: torch.Tensor | None = None, paired: bool = True):
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
        self.images_b, self.paired = images_b, paired  # (N or N_b, C_b, H, W) uint8, or None
        if images_b is not None and not is_cached(images_b):
            self.images_b = images_b.to(device)
        self.n_b = 0 if images_b is None else images_b.shape[0]
        if images_b is not None and not paired and self.n_b < batch_size:
            raise GanvaeError(f"train.batch_size {batch_size} is larger than the {self.n_b} training images of "
                              "domain B (data.source_b); lower --batch-size")
        self.epoch_b, self.pos_b = 0, 0
        self._perm_b = self._permutation_b(0) if images_b is not None and not paired else None

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).to("cpu" if self.cached else self.images.device)

    def _permutation_b(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 0xB0B0B0B)
        return torch.randperm(self.n_b, generator=g).to("cpu" if is_cached(self.images_b) else self.images_b.device)

    def _rows(self, images, idx: torch.Tensor) -> torch.Tensor:
        """``images[idx]`` on the device, (B, C, H, W) float in [0, 1] (a cache view: read from disk)."""
        if is_cached(images):
            x = torch.from_numpy(images.read(idx.cpu().numpy())).to(self.device)
        else:
            x = images[idx.to(images.device)]
        return x.float().div_(255.0)

    def _next_b(self, idx: torch.Tensor) -> torch.Tensor | None:
        """Domain B's batch: the partners of rows ``idx`` (paired) or the next slice of its own walk."""
        if self.images_b is None:
            return None
        if self.paired:
            return self._rows(self.images_b, idx)
        if self.pos_b + self.batch_size > self.n_b:
            self.epoch_b += 1
            self.pos_b = 0
            self._perm_b = self._permutation_b(self.epoch_b)
        start = self.pos_b + self.rank * self.local
        self.pos_b += self.batch_size
        return self._rows(self.images_b, self._perm_b[start:start + self.local])

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
        return Batch(x, y, b=self._next_b(idx))

    def fixed(self, k: int) -> Batch:
        """The first ``k`` training images (and their B rows) in stored order: the same every call, no draw."""
        idx = torch.arange(min(k, self.n, self.n_b or self.n))
        y = None if self.labels is None else self.labels[idx.to(self.labels.device)].to(self.device)
        b = None if self.images_b is None else self._rows(self.images_b, idx)
        return Batch(self._rows(self.images, idx), y, b=b)

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "pos": self.pos}
        if self._perm_b is not None:
            state.update(epoch_b=self.epoch_b, pos_b=self.pos_b)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
        if self._perm_b is not None:
            self.epoch_b, self.pos_b = int(state["epoch_b"]), int(state["pos_b"])
            self._perm_b = self._permutation_b(self.epoch_b)

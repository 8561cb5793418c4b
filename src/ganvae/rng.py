"""Per-sample random draws that do not depend on how many processes train.

Every random draw made for the samples of a training batch (latent codes, random
labels, the VAE's reparameterisation noise, DiffAugment's offsets, interpolation
weights, dynamic binarisation) goes through these functions. In a single process
they are ``torch.randn`` & co. Under data-parallel training (see
:mod:`ganvae.training.distributed`) each of the ``world`` processes holds ``1/world``
of the global batch: inside :func:`shard`, each process draws the *global* batch's
numbers from the shared generator and keeps its own slice of rows. Every process
then advances its generator exactly as one process training on the whole batch
would, so a run's numbers do not depend on the number of processes, and the
noise generator's state in a checkpoint is the same on every rank.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_SHARD: tuple[int, int] = (0, 1)  # (rank, world) of the draws being made now


@contextlib.contextmanager
def shard(rank: int, world: int) -> Iterator[None]:
    """Within this block, batch draws of ``n`` rows are this rank's slice of ``n * world`` rows."""
    global _SHARD
    old, _SHARD = _SHARD, (rank, world)
    try:
        yield
    finally:
        _SHARD = old


def _draw(fn, shape: tuple[int, ...]) -> torch.Tensor:
    rank, world = _SHARD
    if world == 1:
        return fn(shape)
    n = shape[0]
    return fn((n * world,) + tuple(shape[1:]))[rank * n:(rank + 1) * n]


def _on(generator: torch.Generator | None, device):
    """Where to draw: the generator's own device; the result moves to ``device`` when that differs
    (a CPU generator gives the same numbers to a CPU and a GPU run)."""
    if generator is None or device is None or generator.device.type == torch.device(device).type:
        return device, None
    return generator.device, device


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None, *, device=None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal draws, one row per sample (``shape[0]`` = samples in this process)."""
    at, to = _on(generator, device)
    x = _draw(lambda s: torch.randn(s, generator=generator, device=at, dtype=dtype), tuple(shape))
    return x if to is None else x.to(to)


def rand(shape: tuple[int, ...], generator: torch.Generator | None = None, *, device=None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) draws, one row per sample."""
    at, to = _on(generator, device)
    x = _draw(lambda s: torch.rand(s, generator=generator, device=at, dtype=dtype), tuple(shape))
    return x if to is None else x.to(to)


def randint(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None = None, *,
            device=None) -> torch.Tensor:
    """Integers in [low, high), one row per sample."""
    at, to = _on(generator, device)
    x = _draw(lambda s: torch.randint(low, high, s, generator=generator, device=at), tuple(shape))
    return x if to is None else x.to(to)


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 sample of ``p`` (same shape and dtype): ``u < p`` with ``u`` uniform, one row per sample."""
    u = rand(tuple(p.shape), generator, device=p.device, dtype=p.dtype)
    return (u < p).to(p.dtype)

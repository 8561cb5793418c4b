"""Data-parallel training over several processes (``torchrun``), one or more machines.

    torchrun --nproc_per_node 4 -m ganvae train --model dcgan --data mnist --batch-size 256
    torchrun --nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
             --nproc_per_node 8 -m ganvae train ...

What each process does:

- **Data**: every rank walks the same seeded permutation of the training set and
  takes its own ``batch_size / world`` slice of each global batch
  (:class:`ganvae.training.batches.BatchStream`); ``train.batch_size`` is the global batch.
- **Noise**: latent codes, labels, reparameterisation noise and augmentation draws are
  drawn for the global batch from the shared run-seeded generator and sliced per rank
  (:mod:`ganvae.rng`). Other randomness (dropout) uses a per-rank seed derived from the
  run seed.
- **Gradients**: after each phase's backward pass the gradients of the parameters that
  phase trains are averaged over the ranks in one flat all-reduce (what
  ``DistributedDataParallel`` does); the loss rides along in the same buffer, so a
  non-finite loss on any rank stops every rank at the same step. A phase-wise
  reduction, rather than wrapping G and D in ``DistributedDataParallel``, because the
  loop freezes the other network's parameters in each phase, which DDP's hooks do not
  allow. Every rank then takes the same optimizer step, so weights stay identical.
- **Files**: only rank 0 writes (metrics, samples, checkpoints, the export, the report).

Because of the two rules above, a run's loss per step equals a one-process run with
the same global batch up to float summation order, for models without BatchNorm
(BatchNorm statistics are per rank, as in DDP's default) and whose loss is a mean over
samples (beta-TCVAE's minibatch estimator is not), and the checkpoint does not depend
on the number of processes: it resumes under any world size that divides the batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import GanvaeError
from ..util.device import resolve_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The process's place in a ``torchrun`` launch (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def setup(world: World, device_name: str) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on the CPU); return this rank's device."""
    device = resolve_device(device_name, "train.device")
    if not world.active:
        return device
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size, device_id=device if device.type == "cuda" else None)
    return device


def check_batch(world: World, batch_size: int) -> None:
    if batch_size % world.size:
        raise GanvaeError(f"train.batch_size {batch_size}: with {world.size} processes it must be a multiple of "
                          f"{world.size} (it is the global batch, split evenly over the processes)")


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank ``rank``'s own randomness (dropout), derived from the run seed."""
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2**63)


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (as DDP does at construction)."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], loss: torch.Tensor, world: World) -> torch.Tensor:
    """Average the ``.grad`` of ``params`` over the ranks in one all-reduce; return the mean loss.

    Parameters without a gradient on this step (unused) count as zero.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1).to(grads[0].dtype)])
    dist.all_reduce(flat)
    flat.div_(world.size)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = g
        p.grad.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return flat[-1]


def average_scalars(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """The mean over ranks of logged loss terms (same keys on every rank)."""
    if not world.active or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a stop decision all ranks must share)."""
    if not world.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def teardown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()

"""``resolve_device``: a device name from a user (config, CLI, API) -> a ``torch.device``, or a clear error.

``bf16_native`` / ``bf16_pays``: whether a device computes bfloat16 in hardware, and whether that is measured to
pay off enough for ``train.precision=auto`` to pick it."""

from __future__ import annotations

import torch

from ..errors import GanvaeError
from .cpu import cpu_bf16


def resolve_device(name: str | torch.device, what: str = "device") -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``.

    ``what`` names the option in the error (``train.device``, ``--device``).
    """
    if isinstance(name, torch.device):
        dev = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError, ValueError):
            raise GanvaeError(f"{what} {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GanvaeError(f"{what} {str(name)!r}: CUDA is not available on this machine; use cpu")
    return dev


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: CUDA compute capability 8.0+ (Ampere on) or ROCm; a CPU
    with AVX512-BF16 or AMX (:func:`ganvae.util.cpu.cpu_bf16`). Elsewhere bf16 is emulated and slow."""
    if device.type == "cuda":
        if getattr(torch.version, "hip", None):
            return True
        return torch.cuda.is_available() and torch.cuda.get_device_properties(device).major >= 8
    return device.type == "cpu" and cpu_bf16() is not None


def bf16_pays(device: torch.device) -> bool:
    """Whether ``train.precision=auto`` picks bf16 on ``device``: GPUs with native bf16 (tensor cores at twice the
    TF32 rate; ``benchmarks/gpu_check.sh`` measures the gain) and CPUs with AVX512-BF16 or AMX. Measured on a
    2-core AMD EPYC with AVX512-BF16 (``benchmarks/results/speed.md``): bf16 trains dcgan-28/32/64 1.65x/1.50x/1.59x
    faster than fp32 channels-last, the same training curve and FID within noise."""
    if device.type == "cuda":
        return bf16_native(device)
    return device.type == "cpu" and cpu_bf16() is not None

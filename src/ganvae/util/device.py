"""``resolve_device``: a device name from a user (config, CLI, API) -> a ``torch.device``, or a clear error."""

from __future__ import annotations

import torch

from ..errors import GanvaeError


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

"""What this machine's CPU does fast: bfloat16 matmuls and convolutions (AVX512-BF16, AMX) for ``train.precision``.

:func:`cpu_bf16` answers ``"amx"`` (Intel AMX tiles: Sapphire Rapids and newer), ``"avx512_bf16"`` (AVX512-BF16
dot products: Cooper Lake, AMD Zen 4 and newer) or None (bf16 is emulated in fp32 arithmetic, far slower than
fp32: about 100x on a 2-core EPYC without it, ``benchmarks/results/speed.md``). It reads the Linux
``/proc/cpuinfo`` flags, and asks torch's own CPU probe (``torch.cpu``, CPUID through cpuinfo) where those say
nothing (other systems, hidden flags). The better answer of the two wins.

``GANVAE_CPU_BF16`` forces the answer (tests; a machine whose probe is wrong): ``0`` (none), ``1`` or
``avx512_bf16``, ``amx``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..errors import GanvaeError

ENV = "GANVAE_CPU_BF16"
CPUINFO = Path("/proc/cpuinfo")


def model_name(path: str | Path = CPUINFO) -> str:
    """The CPU's model name (``/proc/cpuinfo``), for benchmark results; the platform's word where there is none."""
    import platform

    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
RANK = {None: 0, "avx512_bf16": 1, "amx": 2}  # better answers rank higher
_FORCED = {"0": None, "none": None, "no": None, "false": None, "off": None,
           "1": "avx512_bf16", "avx512_bf16": "avx512_bf16", "yes": "avx512_bf16", "true": "avx512_bf16",
           "on": "avx512_bf16", "amx": "amx"}


def cpu_flags(path: str | Path = CPUINFO) -> set[str]:
    """The CPU feature flags of the first processor in ``path`` (Linux ``/proc/cpuinfo``); empty where unreadable."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86; ARM says Features
            return set(value.split())
    return set()


def from_flags(flags: set[str]) -> str | None:
    """``"amx"``, ``"avx512_bf16"`` or None from CPU flags (``amx_bf16`` needs the kernel's AMX tile support too)."""
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def from_torch() -> str | None:
    """torch's own answer (CPUID through cpuinfo; AMX also asks the OS for the tile state); None if it has none."""
    cpu = getattr(torch, "cpu", None)
    try:
        if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
            return "amx"
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
            return "avx512_bf16"
    except (RuntimeError, AttributeError):
        pass
    return None


@functools.lru_cache(maxsize=1)
def detected() -> str | None:
    """What this CPU has, probed once per process (``GANVAE_CPU_BF16`` aside)."""
    return max(from_flags(cpu_flags()), from_torch(), key=RANK.__getitem__)


def cpu_bf16() -> str | None:
    """``"amx"``, ``"avx512_bf16"`` or None: the bf16 instructions of this CPU, or what ``GANVAE_CPU_BF16`` forces."""
    forced = os.environ.get(ENV, "").strip().lower()
    if not forced:
        return detected()
    if forced not in _FORCED:
        raise GanvaeError(f"{ENV}={os.environ[ENV]!r}: expected 0 (no bf16 instructions), 1 or avx512_bf16, or amx")
    return _FORCED[forced]

"""Small helpers every layer may use: atomic file writes, device resolution, train/eval mode."""

from .device import physical_memory, resolve_device
from .files import atomic_write, atomic_write_bytes, atomic_write_text
from .modes import eval_mode

__all__ = ["resolve_device", "physical_memory", "atomic_write", "atomic_write_bytes", "atomic_write_text", "eval_mode"]

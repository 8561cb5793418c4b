"""``eval_mode``: modules in eval mode for a block, each restored to its own mode after."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """``with eval_mode(model, net): ...`` puts every given module (None skipped) in eval mode and
    restores each one's training flag afterwards, also when the block raises."""
    mods = [m for m in modules if m is not None]
    was = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(mods, was):
            m.train(w)

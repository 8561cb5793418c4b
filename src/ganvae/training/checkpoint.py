"""Training states: atomic saves (:mod:`ganvae.util.files`) and safe loads.

Training states load with ``torch.load(weights_only=True)`` only: a checkpoint whose pickle would run code is refused without running it.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import GanvaeError
from ..util.files import atomic_write


def save_state(state: dict, path: str | Path) -> None:
    """torch.save ``state`` (tensors and plain containers only) atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a training state with ``weights_only=True``; refuse anything else."""
    path = Path(path)
    if not path.is_file():
        raise GanvaeError(f"checkpoint {path}: not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise GanvaeError(
            f"checkpoint {path}: refused, it holds objects that would run code when unpickled ({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise GanvaeError(f"checkpoint {path}: unreadable or truncated ({str(e).splitlines()[0][:160]})") from None


# ----------------------------------------------------------------------------- RNG states as tensors

def rng_state() -> dict:
    """Global RNG states of torch, numpy and python, as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gauss": float(np_state[4])},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])

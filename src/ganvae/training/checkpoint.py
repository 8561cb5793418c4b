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
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise GanvaeError(f"checkpoint {path}: unreadable or truncated ({detail})") from None


REQUIRED = {"step": int, "images_seen": int, "model": dict, "optimizers": dict, "noise": torch.Tensor,
            "data": dict, "rng": dict}


def check_state(state, path: str | Path, phases: list[str]) -> dict:
    """Refuse a loaded checkpoint that is not a ganvae training state for these phases, in one line."""
    where = f"checkpoint {path}"
    if not isinstance(state, dict):
        raise GanvaeError(f"{where}: not a ganvae training state (it holds a {type(state).__name__})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise GanvaeError(f"{where}: not a ganvae training state (no {', '.join(missing)})")
    for k, t in REQUIRED.items():
        if not isinstance(state[k], t) or (t is int and isinstance(state[k], bool)):
            raise GanvaeError(f"{where}: {k} is a {type(state[k]).__name__}, expected {t.__name__}")
    if state["step"] < 0 or state["images_seen"] < 0:
        raise GanvaeError(f"{where}: step {state['step']} / images seen {state['images_seen']}: expected >= 0")
    if sorted(state["optimizers"]) != sorted(phases):
        raise GanvaeError(f"{where}: its optimizers are for phases {sorted(state['optimizers'])}, this run's model "
                          f"has {sorted(phases)} (a checkpoint of another model?)")
    return state


def nonfinite(named: dict) -> list[str]:
    """The names of the tensors (in a nested dict/list of tensors) that hold NaN or infinity."""
    bad: list[str] = []

    def walk(x, name):
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                bad.append(name)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{name}[{i}]")

    walk(named, "")
    return bad


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

"""The inference export: ``model/config.json`` + ``model/model.safetensors``.

Loading needs no pickle: the JSON names the registered model and its config; the
safetensors file holds every tensor (G and D, or encoder and decoder). Where the
run kept an EMA of the generator, the export holds the EMA weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import from_dict, to_dict
from .errors import GanvaeError
from .models import MODELS, GenerativeModel, build
from .util.files import atomic_write_bytes
from .version import __version__

FORMAT = "ganvae-model"
FORMAT_VERSION = 1


def save_model(model: GenerativeModel, folder: str | Path, generator_net: torch.nn.Module | None = None,
               extra: dict | None = None) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (atomically, weights first)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if generator_net is not None:
        prefix = model.generator_name + "."
        for k, v in generator_net.state_dict().items():
            state[prefix + k] = v.detach().cpu().contiguous().clone()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ganvae_version": __version__,
        "model": model.registered_name,
        "family": model.family,
        "config": to_dict(model.config),
        **(extra or {}),
    }
    atomic_write_bytes(folder / "model.safetensors", st_save(state, metadata={"format": FORMAT}))
    atomic_write_bytes(folder / "config.json", (json.dumps(meta, indent=2) + "\n").encode())
    return folder


def model_folder(path: str | Path) -> Path:
    """A run folder or a model folder -> the model folder; a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise GanvaeError(f"{p}: no such run or model folder")
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return p
    if (p / "model" / "config.json").is_file():
        return p / "model"
    raise GanvaeError(f"{p}: no exported model here (expected {p}/model/config.json; has training finished?)")


def read_model_meta(path: str | Path) -> dict:
    folder = model_folder(path)
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanvaeError(f"{folder / 'config.json'}: not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise GanvaeError(f"{folder / 'config.json'}: not a ganvae model export")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a model from a run or model folder; eval mode, on ``device``.

    The weights' shapes are checked against the config (on the meta device, nothing allocated) before
    the model is built, so a damaged or edited export is one clear error, not a traceback or a huge
    allocation.
    """
    folder = model_folder(path)
    meta = read_model_meta(folder)
    weights = folder / "model.safetensors"
    try:
        spec = MODELS.get(meta["model"])
        cfg = from_dict(spec.config_class, meta["config"], "model")
    except (KeyError, TypeError) as e:
        raise GanvaeError(f"{folder / 'config.json'}: not a complete ganvae model export ({e})") from None
    except GanvaeError as e:
        raise GanvaeError(f"{folder / 'config.json'}: {e}") from None
    if not weights.is_file():
        raise GanvaeError(f"{weights}: missing")
    try:
        state = st_load(weights.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise GanvaeError(f"{weights}: unreadable safetensors file ({str(e)[:120]})") from None
    _check_shapes(meta["model"], cfg, state, weights)
    model = build(meta["model"], cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GanvaeError(f"{weights}: does not match the config (missing {list(missing)[:3]}, "
                          f"unexpected {list(unexpected)[:3]})")
    model.meta = meta
    return model.to(device).eval()


def _check_shapes(name: str, cfg, state: dict, weights: Path) -> None:
    """The config's model, built on the meta device, must have exactly the weights' names and shapes."""
    try:
        with torch.device("meta"):
            expected = build(name, cfg).state_dict()
    except GanvaeError as e:
        raise GanvaeError(f"{weights.parent / 'config.json'}: {e}") from None
    except (RuntimeError, ValueError, TypeError) as e:
        raise GanvaeError(f"{weights.parent / 'config.json'}: cannot build {name} from it "
                          f"({str(e).splitlines()[0][:160]})") from None
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GanvaeError(f"{weights}: does not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, t in expected.items():
        if tuple(t.shape) != tuple(state[k].shape):
            raise GanvaeError(f"{weights}: {k} has shape {tuple(state[k].shape)} but the config "
                              f"(config.json) makes {tuple(t.shape)}; the export is damaged or was edited")

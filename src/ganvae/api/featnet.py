"""Domain feature nets: ``train_feature_net`` (``ganvae featnet train``) and ``feature_net_info``.

A feature net trained on the user's own labelled data gives FIDs in that domain's features, where the
generic ImageNet features (``effnet``) see little (medical, industrial images). The file it writes is
accepted wherever a feature-net name is: ``evaluate(feature_net=PATH)``, ``audit(features=PATH)``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..data import DataConfig, load_data
from ..errors import GanvaeError
from ..metrics.featnet_file import read_featnet, save_featnet
from ..metrics.featnet_train import train_classifier
from ..util.device import resolve_device
from .runs import check_seed

__all__ = ["train_feature_net", "feature_net_info"]


def default_out(source: str) -> Path:
    """``featnet-<source's last name part>.safetensors`` in the working folder."""
    stem = Path(source.split(":", 1)[-1].rstrip("/\\")).name or source
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(stem).stem if "." in stem else stem).strip("-.") or "data"
    return Path(f"featnet-{stem}.safetensors")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix != ".safetensors":
        raise GanvaeError(f"--out {out}: expected a file name ending in .safetensors")
    if out.is_dir():
        raise GanvaeError(f"--out {out}: is a folder; give a file name ending in .safetensors")
    if out.exists() and not overwrite:
        raise GanvaeError(f"--out {out}: already exists; pass --overwrite to replace it")


def train_feature_net(data: str, *, image_size: int | None = None, channels: int | None = None,
                      limit: int | None = None, epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
                      seed: int = 0, device: str = "auto", out: str | Path | None = None, overwrite: bool = False,
                      log=print, progress: bool = True) -> dict:
    """Train a domain feature net on the labelled source ``data`` and write it to ``out`` (safetensors).

    The recipe: :mod:`ganvae.metrics.featnet_train`; the file: :mod:`ganvae.metrics.featnet_file`. The data is
    loaded as training loads it (``image_size``, ``channels``, ``limit``; the source's test split, else a seeded
    10% hold-out, on which the accuracy is measured). Returns the file's metadata and ``path``.
    """
    check_seed(seed)
    out = Path(out).expanduser() if out is not None else default_out(data)
    _check_out(out, overwrite)
    dev = resolve_device(device, "--device")
    log = log or (lambda *a: None)
    splits = load_data(DataConfig(source=data, image_size=image_size, channels=channels, limit=limit),
                       progress=progress and log is not None)
    m = splits.meta
    log(f"featnet: {m['source']}, {m['channels']}x{m['image_size']}x{m['image_size']}, "
        f"{m.get('num_classes')} classes; train {m['n_train']}, held out {m['n_test']}; {epochs} epochs on {dev}")
    model, provenance = train_classifier(splits, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                         device=dev, log=lambda s: log(f"featnet: {s}"))
    save_featnet(model, out, provenance, provenance["heldout_accuracy"])
    log(f"featnet: held-out accuracy {provenance['heldout_accuracy']:.2%} "
        f"({provenance['heldout_errors']} of {provenance['n_heldout']} wrong); wrote {out}")
    log(f"use it with: ganvae eval RUN --feature-net {out}")
    return read_featnet(out)


def feature_net_info(path: str | Path) -> dict:
    """The metadata of a file written by :func:`train_feature_net` (config, provenance, held-out accuracy)."""
    return read_featnet(path)

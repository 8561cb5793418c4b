"""Domain feature nets in a file: what ``ganvae featnet train`` writes and ``--feature-net PATH`` reads.

One ``.safetensors`` file holds a :class:`~ganvae.metrics.feature_nets.ConvClassifier`'s state dict (its
input ``mean``/``std`` included) and, as safetensors metadata (strings), everything needed to rebuild and
judge it:

* ``format``: ``ganvae-featnet``; ``format_version``: ``1``; ``architecture``: ``ConvClassifier``;
* ``config``: JSON ``{"channels", "image_size", "num_classes", "feature_dim"}``;
* ``heldout_accuracy``: the accuracy on the held-out split, as a decimal string;
* ``provenance``: JSON: the data source, image size, channels, classes and class names, the split, the
  recipe, epochs, batch size, learning rate, seed, date, ganvae and torch versions, device, seconds.

No pickle anywhere: loading reads tensors and strings only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import GanvaeError
from ..util.files import atomic_write_bytes
from .features import FeatureNet

FORMAT = "ganvae-featnet"
FORMAT_VERSION = "1"
CONFIG_KEYS = ("channels", "image_size", "num_classes", "feature_dim")

__all__ = ["FORMAT", "FileFeatureNet", "save_featnet", "read_featnet", "load_featnet", "looks_like_path"]


def looks_like_path(spec: str) -> bool:
    """Whether a ``--feature-net`` value names a file rather than a registered net."""
    return spec.endswith(".safetensors") or "/" in spec or "\\" in spec or Path(spec).expanduser().is_file()


def save_featnet(model: torch.nn.Module, path: str | Path, provenance: dict, accuracy: float) -> Path:
    """Write ``model`` (a ConvClassifier) with its metadata to ``path`` atomically; returns the path."""
    from safetensors.torch import save

    config = {"channels": model.input_channels, "image_size": model.input_size,
              "num_classes": model.num_classes, "feature_dim": model.feature_dim}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": "ConvClassifier",
            "config": json.dumps(config), "heldout_accuracy": f"{accuracy:.6f}",
            "provenance": json.dumps(provenance, sort_keys=True)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    atomic_write_bytes(path, save(state, metadata=meta))
    return path


def read_featnet(path: str | Path) -> dict:
    """The metadata of a featnet file: ``{"config", "provenance", "heldout_accuracy", "path"}``.

    One-line :class:`GanvaeError` for a missing file, a file that is not safetensors, or a safetensors file
    that ``ganvae featnet train`` did not write.
    """
    p = Path(path).expanduser()
    where = f"--feature-net {path}"
    if not p.exists():
        raise GanvaeError(f"{where}: no such file (give a registered net or a file from `ganvae featnet train`)")
    if not p.is_file():
        raise GanvaeError(f"{where}: not a file; expected a .safetensors file from `ganvae featnet train`")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - not safetensors at all: one clear line
        raise GanvaeError(f"{where}: not a safetensors file ({' '.join(str(e).split())[:120]}); "
                          "expected a file from `ganvae featnet train`") from None
    if meta.get("format") != FORMAT:
        raise GanvaeError(f"{where}: a safetensors file but not a feature net from `ganvae featnet train` "
                          f"(no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise GanvaeError(f"{where}: featnet format version {meta.get('format_version')!r}; this ganvae reads "
                          f"version {FORMAT_VERSION}")
    try:
        config = json.loads(meta["config"])
        out = {"config": {k: int(config[k]) for k in CONFIG_KEYS},
               "provenance": json.loads(meta.get("provenance") or "{}"),
               "heldout_accuracy": float(meta["heldout_accuracy"]), "path": str(p)}
    except (KeyError, ValueError, TypeError) as e:
        raise GanvaeError(f"{where}: damaged featnet metadata ({type(e).__name__}: {e})") from None
    return out


class FileFeatureNet(FeatureNet):
    """A :class:`~ganvae.metrics.feature_nets.ConvClassifier` trained by ``ganvae featnet train``, from its file."""

    def __init__(self, path: str | Path, device="cpu", batch_size: int = 500):
        super().__init__(device, batch_size)
        from safetensors.torch import load_file

        from .feature_nets import ConvClassifier

        info = read_featnet(path)
        cfg = info["config"]
        self.info, self.path = info, Path(info["path"]).resolve()
        self.name = str(self.path)
        self.input_channels, self.input_size = cfg["channels"], cfg["image_size"]
        self.num_classes, self.dim = cfg["num_classes"], cfg["feature_dim"]
        prov = info["provenance"]
        self.description = (f"{self.path.name}: ConvClassifier trained by `ganvae featnet train` on "
                            f"{prov.get('source')} ({cfg['channels']}x{cfg['image_size']}x{cfg['image_size']}, "
                            f"{cfg['num_classes']} classes), held-out accuracy {info['heldout_accuracy']:.2%}; "
                            f"features: {self.dim}-d penultimate layer")
        try:
            self.net = ConvClassifier(cfg["channels"], cfg["image_size"], cfg["num_classes"], cfg["feature_dim"])
            self.net.load_state_dict(load_file(str(self.path), device="cpu"), strict=True)
        except Exception as e:  # noqa: BLE001 - weights that do not fit their own metadata
            msg = " ".join(str(e).split())
            raise GanvaeError(f"--feature-net {path}: the weights do not match the file's metadata "
                              f"({type(e).__name__}: {msg[:160]})") from None
        self.net.to(self.device, memory_format=torch.channels_last).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def check_data(self, meta: dict) -> None:
        """Refuse data of another image size or channel count than the net was trained on (one line)."""
        have = (meta.get("channels"), meta.get("image_size"))
        want = (self.input_channels, self.input_size)
        if None not in have and have != want:
            raise GanvaeError(
                f"--feature-net {self.path}: the net takes {want[0]}x{want[1]}x{want[1]} images but the data is "
                f"{have[0]}x{have[1]}x{have[1]}; train one for this data with `ganvae featnet train`")

    def _features(self, x):
        return self.net.features(x)

    def _logits(self, x):
        return self.net(x)


_CACHE: dict[tuple, FileFeatureNet] = {}


def load_featnet(path: str | Path, device="cpu", batch_size: int = 500) -> FileFeatureNet:
    """The net in ``path``, built once per (file, its size and mtime, device, batch size)."""
    p = Path(path).expanduser()
    st = p.stat() if p.is_file() else None
    key = (str(p.resolve()), st and (st.st_size, st.st_mtime_ns), str(device), batch_size)
    net = _CACHE.get(key) if st is not None else None
    if net is None:
        net = FileFeatureNet(path, device=device, batch_size=batch_size)
        _CACHE[key] = net
    return net

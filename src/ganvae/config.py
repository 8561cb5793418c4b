"""Typed configs: dataclasses, YAML in and out, ``--set key=value`` overrides, validation.

A run is described by one :class:`RunConfig`::

    model: {name: dcgan, latent_dim: 100, ...}   # fields of the model's own config dataclass
    data:  {source: mnist, image_size: null, ...} # ganvae.data.DataConfig
    train: {steps: 2000, batch_size: 64, ...}     # ganvae.training.TrainConfig

Every field has a default and a comment where it is defined; the resolved config
(every field filled in) is written to ``RUN/config.yaml`` and is enough, with the
data, to repeat the run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import GanvaeError


# ----------------------------------------------------------------------------- coercion

def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type ``tp`` or raise a GanvaeError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except GanvaeError as e:
                errors.append(str(e))
        raise GanvaeError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise GanvaeError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            value = [yaml.safe_load(v) for v in value]
        if not isinstance(value, (list, tuple)):
            raise GanvaeError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        out = [_coerce(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise GanvaeError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise GanvaeError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise GanvaeError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise GanvaeError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise GanvaeError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise GanvaeError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise GanvaeError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict | None, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad types raise a GanvaeError."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise GanvaeError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (or nested containers) -> plain YAML/JSON-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- overrides

def parse_set(items: list[str] | None) -> dict:
    """``["model.latent_dim=64", "train.lr=1e-3"]`` -> nested dict. Values are parsed as YAML."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise GanvaeError(f"--set {item!r}: expected KEY=VALUE, e.g. model.latent_dim=64")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if len(parts) < 2 or parts[0] not in ("model", "data", "train", "privacy"):
            raise GanvaeError(
                f"--set {item!r}: the key must start with model., data., train. or privacy. "
                "(e.g. train.batch_size=32)"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge, ``over`` wins."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise GanvaeError(f"config file {p}: not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise GanvaeError(f"config file {p}: not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GanvaeError(f"config file {p}: expected a mapping with model:, data:, train: sections")
    unknown = sorted(set(data) - {"model", "data", "train", "privacy"})
    if unknown:
        raise GanvaeError(f"config file {p}: unknown section {', '.join(unknown)}; expected model, data, train, privacy")
    return data


def write_yaml(data: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


# ----------------------------------------------------------------------------- the run config

@dataclass
class RunConfig:
    """Everything that defines a run. ``model`` is the model's own config dataclass."""

    model_name: str
    model: Any        # a model config dataclass (see ganvae.models)
    data: Any         # ganvae.data.DataConfig
    train: Any        # ganvae.training.TrainConfig
    extra: dict = field(default_factory=dict)  # filled in by training (data summary, version)
    privacy: Any = None  # ganvae.privacy.dp.PrivacyConfig (the section is written only when DP is on)

    def to_dict(self) -> dict:
        return {
            "model": {"name": self.model_name, **to_dict(self.model)},
            "data": to_dict(self.data),
            "train": to_dict(self.train),
            **({"privacy": to_dict(self.privacy)} if getattr(self.privacy, "enabled", False) else {}),
        }


def resolve(raw: dict) -> RunConfig:
    """Raw nested dict (from YAML, CLI and --set) -> validated :class:`RunConfig`.

    ``model.image_size``/``channels``/``num_classes`` may be left out: training fills
    them in from the data.
    """
    from .data import DataConfig
    from .models import MODELS
    from .training.loop import TrainConfig

    model_raw = dict(raw.get("model") or {})
    name = model_raw.pop("name", None) or "dcgan"
    spec = MODELS.get(str(name))
    model_cfg = from_dict(spec.config_class, model_raw, "model")
    data_cfg = from_dict(DataConfig, raw.get("data"), "data")
    train_cfg = from_dict(TrainConfig, raw.get("train"), "train")
    from .privacy.dp import PrivacyConfig
    privacy_cfg = from_dict(PrivacyConfig, raw.get("privacy"), "privacy")
    return RunConfig(model_name=str(name), model=model_cfg, data=data_cfg, train=train_cfg, privacy=privacy_cfg)

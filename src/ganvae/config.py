"""The generic config machinery: dataclass from/to dict, ``--set key=value`` overrides, YAML.

Each package owns its config dataclass (``ganvae.data.DataConfig``,
``ganvae.training.TrainConfig``, ``ganvae.privacy.PrivacyConfig``, each model's config
beside the model); :mod:`ganvae.runfolder` puts them together into a ``RunConfig``.
Nothing here knows what the sections are: callers pass their names.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
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
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise GanvaeError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(out):  # NaN and infinity pass every comparison check below them: refuse here
            raise GanvaeError(f"{where}: expected a finite number, got {value!r}")
        return out
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

def parse_set(items: list[str] | None, sections: tuple[str, ...]) -> dict:
    """``["model.latent_dim=64", "train.lr=1e-3"]`` -> nested dict. Values are parsed as YAML.

    ``sections``: the valid first parts of a key (``("model", "data", "train", "privacy")``).
    """
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise GanvaeError(f"--set {item!r}: expected KEY=VALUE, e.g. model.latent_dim=64")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if len(parts) < 2 or parts[0] not in sections:
            starts = ", ".join(f"{s}." for s in sections[:-1]) + f" or {sections[-1]}."
            raise GanvaeError(f"--set {item!r}: the key must start with {starts} (SECTION.FIELD=VALUE, "
                              f"e.g. {sections[0]}.<field>=...)")
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


def read_yaml(path: str | Path, sections: tuple[str, ...] | None = None) -> dict:
    """A YAML mapping from ``path``; with ``sections``, its top-level keys must be among them."""
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
        raise GanvaeError(f"config file {p}: expected a mapping"
                          + (f" with {', '.join(s + ':' for s in sections)} sections" if sections else ""))
    unknown = sorted(set(data) - set(sections)) if sections else []
    if unknown:
        raise GanvaeError(f"config file {p}: unknown section {', '.join(unknown)}; expected {', '.join(sections)}")
    return data


def write_yaml(data: dict, path: str | Path) -> None:
    from .util.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))

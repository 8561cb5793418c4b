"""A run folder's config and summary: ``RunConfig`` (typed), composing it from its sources, ``info``.

A run is described by one :class:`RunConfig`, written to ``RUN/config.yaml``::

    model:   {name: dcgan, latent_dim: 100, ...}    # the model's own config dataclass (ganvae.models)
    data:    {source: mnist, image_size: null, ...}  # ganvae.data.DataConfig
    train:   {steps: 2000, batch_size: 64, ...}      # ganvae.training.TrainConfig
             health: {enabled: true, ...}            #   train.health: ganvae.training.health.HealthConfig
    privacy: {epsilon: 10, ...}                      # ganvae.privacy.PrivacyConfig (only when DP is on)

Every field has a default and a comment where it is defined; the resolved config (every
field filled in) is enough, with the data, to repeat the run. Precedence: built-in defaults
< a config file < options (typed values, :data:`OPTIONS`) < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import from_dict, merge, parse_set, read_yaml, to_dict
from .data import DataConfig
from .errors import GanvaeError
from .metrics import METRICS
from .models import MODELS
from .models.translation import check_domains
from .privacy import PrivacyConfig
from .training import TrainConfig
from .training.health import HealthConfig, health_config
from .util.lock import LOCK_NAME
from .util.lock import holder as lock_holder

SECTIONS = ("model", "data", "train", "privacy")

# A flat option (a keyword of ganvae.train, a CLI flag) -> the config field it sets.
OPTIONS: dict[str, tuple[str, str]] = {
    "model": ("model", "name"), "objective": ("model", "objective"),
    "data": ("data", "source"), "image_size": ("data", "image_size"), "channels": ("data", "channels"),
    "skip_bad_images": ("data", "skip_bad_images"), "data_b": ("data", "source_b"),
    "steps": ("train", "steps"), "batch_size": ("train", "batch_size"), "seed": ("train", "seed"),
    "device": ("train", "device"), "max_minutes": ("train", "max_minutes"), "precision": ("train", "precision"),
    "compile": ("train", "compile"), "channels_last": ("train", "channels_last"),
    "eval_every": ("train", "eval_every_kimg"), "eval_metric": ("train", "eval_metric"),
    "keep_best": ("train", "keep_best"), "init": ("train", "init"),
    "dp_epsilon": ("privacy", "epsilon"), "dp_delta": ("privacy", "delta"),
    "dp_max_grad_norm": ("privacy", "max_grad_norm"), "dp_noise_multiplier": ("privacy", "noise_multiplier"),
}


@dataclass
class RunConfig:
    """Everything that defines a run."""

    model_name: str            # a name in ganvae.models.MODELS
    model: Any                 # that model's config dataclass (MODELS.get(model_name).config_class)
    data: DataConfig
    train: TrainConfig
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    health: HealthConfig = dataclasses.field(default_factory=HealthConfig)  # train.health: the health alarms
    notes: list[str] = dataclasses.field(default_factory=list)  # defaults chosen for the user (printed, not saved)

    def to_dict(self) -> dict:
        return {
            "model": {"name": self.model_name, **to_dict(self.model)},
            "data": to_dict(self.data),
            "train": {**to_dict(self.train), "health": to_dict(self.health)},
            **({"privacy": to_dict(self.privacy)} if self.privacy.enabled else {}),
        }


def compose(config: str | Path | dict | None = None, options: dict | None = None,
            overrides: list[str] | dict | None = None) -> dict:
    """Defaults <- ``config`` (a YAML path or a dict) <- ``options`` (:data:`OPTIONS`; None: not given)
    <- ``overrides`` (``["model.latent_dim=32"]`` or a nested dict), as one nested dict."""
    raw: dict[str, Any] = {"model": {}, "data": {}, "train": {}}
    if config is not None:
        raw = merge(raw, config if isinstance(config, dict) else read_yaml(config, SECTIONS))
    raw = merge(raw, option_dict(options or {}))
    if overrides:
        raw = merge(raw, overrides if isinstance(overrides, dict) else parse_set(overrides, SECTIONS))
    return raw


def option_dict(options: dict) -> dict:
    """``{"steps": 100, "dp_epsilon": 1.0}`` -> ``{"train": {"steps": 100}, "privacy": {"epsilon": 1.0}}``."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GanvaeError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(OPTIONS))}, or config=/set= for any config field")
    out: dict[str, dict] = {}
    for key, value in options.items():
        if value is not None:
            section, name = OPTIONS[key]
            out.setdefault(section, {})[name] = value
    return out


def resolve(raw: dict) -> RunConfig:
    """Raw nested dict (from YAML, options and --set) -> validated :class:`RunConfig`.

    ``model.image_size``/``channels``/``num_classes`` may be left out: training fills them in from the data.
    """
    model_raw = dict(raw.get("model") or {})
    name = str(model_raw.pop("name", None) or "dcgan")
    spec = MODELS.get(name)
    fields = {f.name for f in dataclasses.fields(spec.config_class)}
    if "objective" in model_raw and "objective" not in fields:
        raise GanvaeError(f"--objective applies to GAN models; model {name!r} is not one")
    private_raw = raw.get("privacy") or {}
    private = any(private_raw.get(k) is not None for k in ("epsilon", "noise_multiplier"))
    notes = spec.config_class.fill_defaults(model_raw, private)  # e.g. wgan-gp: D without BatchNorm, unless set
    train_raw = dict(raw.get("train") or {})
    health = health_config(train_raw.pop("health", None))  # a section of its own, kept under train:
    if train_raw.get("keep_best") and train_raw.get("eval_every_kimg") is None:  # --keep-best alone: 10 scores
        images = int(train_raw.get("steps", TrainConfig.steps)) * int(train_raw.get("batch_size", TrainConfig.batch_size))
        train_raw["eval_every_kimg"] = max(0.1, round(images / 10 / 1000, 3))
        notes.append(f"train.keep_best: scoring every {train_raw['eval_every_kimg']:g} kimg (about 10 times; "
                     "--eval-every KIMG to choose)")
    cfg = RunConfig(model_name=name, model=from_dict(spec.config_class, model_raw, "model"),
                    data=from_dict(DataConfig, raw.get("data"), "data"),
                    train=from_dict(TrainConfig, train_raw, "train"),
                    privacy=from_dict(PrivacyConfig, raw.get("privacy"), "privacy"), health=health, notes=notes)
    if cfg.train.eval_every_kimg is not None:
        METRICS.get(cfg.train.eval_metric)  # unknown name -> error listing the valid ones
    return cfg


def read_config(run: str | Path) -> RunConfig:
    """The resolved config of run folder ``run``."""
    p = Path(run)
    if not (p / "config.yaml").is_file():
        raise GanvaeError(f"{p}: not a run folder (no config.yaml)")
    return resolve(read_yaml(p / "config.yaml", SECTIONS))


def fill_from_data(cfg: RunConfig, meta: dict) -> RunConfig:
    """The model's image_size/channels/num_classes come from the data; a conflicting explicit value is an error."""
    fill = {"image_size": meta["image_size"], "channels": meta["channels"], "num_classes": meta.get("num_classes")}
    if getattr(cfg.model, "dataset_size", 0) is None:  # beta-TCVAE's N: the train set size, unless given
        fill["dataset_size"] = meta["n_train"]
    fill.update(check_domains(MODELS.get(cfg.model_name).model_class, cfg.model_name, meta))  # translation: B
    for k, v in fill.items():
        given = getattr(cfg.model, k)
        if given is not None and given != v and k != "num_classes":
            raise GanvaeError(f"model.{k} is {given} but the data gives {v}; set data.{k} (--{k.replace('_', '-')})"
                              " to resize the data instead")
    cfg.model = dataclasses.replace(cfg.model, **fill)
    validate = getattr(cfg.model, "validate", None)
    if validate:
        validate()
    return cfg


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create the run folder ``out``; refuse a non-empty one unless ``overwrite`` (and it is a run)."""
    try:
        _prepare_out(out, overwrite)
    except OSError as e:  # a symlink loop, a path through a file, a read-only or full disk
        raise GanvaeError(f"--out {out}: cannot create the run folder ({e.strerror or e})") from None


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GanvaeError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        if not overwrite:
            raise GanvaeError(f"--out {out}: folder exists and is not empty; pass --resume {out} to continue it, "
                              "--overwrite to replace it, or choose another --out")
        if not (out / "config.yaml").is_file():
            raise GanvaeError(f"--out {out}: refusing to overwrite a folder that is not a ganvae run")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def source_slug(source: str) -> str:
    """A flat, safe name for a data source: ``mnist``; ``folder:~/photos/`` and ``./photos`` -> ``photos``."""
    prefix, sep, rest = source.partition(":")
    path = rest if sep and prefix in ("folder", "idx", "npz") else source
    if any(c in source for c in "/\\~.") or sep:
        name = Path(os.path.expanduser(path.rstrip("/\\"))).resolve().name or "data"
        name = Path(name).stem if name.lower().endswith(".npz") else name
    else:
        name = source
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"


def default_out(cfg: RunConfig) -> Path:
    """``runs/<model>-<data>``, with ``-2``, ``-3`` ... when taken; always one folder under ``runs/``."""
    base = Path("runs") / f"{cfg.model_name}-{source_slug(cfg.data.source)}"
    path, i = base, 1
    while path.exists() and any(path.iterdir()):
        i += 1
        path = Path(f"{base}-{i}")
    return path


def info(path: str | Path) -> dict:
    """What a run folder holds: model, data, steps, images seen, final losses, plugin summaries, where things are."""
    p = Path(path)
    if not (p / "config.yaml").is_file():
        raise GanvaeError(f"{p}: not a run folder (no config.yaml)")
    cfg = read_yaml(p / "config.yaml")
    out: dict[str, Any] = {"run": str(p), "model": cfg.get("model", {}).get("name"),
                           "data": cfg.get("data", {}).get("source"),
                           "steps_target": cfg.get("train", {}).get("steps")}
    metrics = p / "metrics.jsonl"
    records, damaged = read_jsonl(metrics)
    train = [r for r in records if "img_per_s" in r]
    if train:
        last = train[-1]
        out["step"] = last.get("step")
        out["images_seen"] = last.get("images_seen")
        out["train_time_s"] = last.get("time_s")
        out["final"] = {k: v for k, v in last.items() if k.startswith(("loss/", "elbo", "D/"))
                        and isinstance(v, (int, float))}
    periodic = [r for r in records if any(k.startswith("eval/") for k in r)]
    evals, damaged_eval = read_jsonl(p / "eval.jsonl")
    scores = {}  # the latest value of each metric; `ganvae eval`'s full protocol wins over the periodic one
    if periodic:
        scores.update({k.removeprefix("eval/"): {"value": v, "step": periodic[-1].get("step"),
                                                 "source": "periodic (train.eval_n samples)"}
                       for k, v in periodic[-1].items() if k.startswith("eval/")})
    scores.update({r["metric"]: {"value": r.get("value"), "step": r.get("step"), "source": "ganvae eval"}
                   for r in evals if "metric" in r})
    if scores:
        out["scores"] = scores
    alarms = [{k: r.get(k) for k in ("alarm", "began", "step", "message")} for r in records if "alarm" in r]
    if alarms:  # health alarms (ganvae.training.health): kind, the step it began, the step it was found, why
        out["alarms"] = alarms
    if damaged or damaged_eval:
        out["damaged_lines"] = {str(path): n for path, n in ((metrics, damaged), (p / "eval.jsonl", damaged_eval)) if n}
    running = lock_holder(p)
    out["running"] = f"process {running}" if running else None
    rj = read_run_json(p)
    if rj:
        d = rj.get("data", {}) if isinstance(rj.get("data"), dict) else {}
        out["data_detail"] = {k: d.get(k) for k in ("n_train", "n_test", "split", "channels", "image_size")}
        if rj.get("privacy"):
            out["privacy"] = rj["privacy"]
    samples = sorted((p / "samples").glob("step_*.png"))
    out["paths"] = {
        "config": str(p / "config.yaml"),
        "metrics": str(metrics) if metrics.is_file() else None,
        "latest_samples": str(samples[-1]) if samples else None,
        "checkpoint": str(p / "checkpoints" / "latest.pt") if (p / "checkpoints" / "latest.pt").is_file() else None,
        "model": str(p / "model") if (p / "model" / "config.json").is_file() else None,
    }
    return out


def read_jsonl(path: Path, warn: bool = False) -> tuple[list[dict], int]:
    """The JSON records of a log, line by line; damaged lines (not UTF-8, not JSON, a kill mid-write) are
    skipped and counted (``warn``: and a warning says so). A missing file is no records."""
    if not path.is_file():
        return [], 0
    records, damaged = [], 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                damaged += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                damaged += 1
    if damaged and warn:
        import warnings
        warnings.warn(f"{path}: skipped {damaged} damaged line{'s' if damaged > 1 else ''}", stacklevel=2)
    return records, damaged


def read_run_json(run: Path) -> dict:
    """``RUN/run.json`` (versions, device, data summary, plugin summaries); {} when absent; one-line error
    when damaged."""
    path = Path(run) / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise GanvaeError(f"{path}: damaged (not JSON); it is rewritten by `ganvae train --resume {run}`") from None
    if not isinstance(data, dict):
        raise GanvaeError(f"{path}: damaged (not a JSON object)")
    return data

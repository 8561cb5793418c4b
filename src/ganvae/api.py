"""The library entry points the CLI wraps: ``train``, ``load``, ``info``."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig, merge, parse_set, read_yaml, resolve, write_yaml
from .errors import GanvaeError

# train.* keys a resume may change; anything else would break the exact continuation
RESUMABLE_KEYS = {"steps", "max_minutes", "device", "threads", "log_every", "sample_every", "checkpoint_every",
                  "eval_every_kimg", "eval_n", "report", "tensorboard", "precision", "channels_last", "compile",
                  "tf32"}


@dataclass
class Run:
    """What a finished (or stopped) training run left behind."""

    path: Path
    config: RunConfig
    step: int
    images_seen: int
    seconds: float
    stopped: str | None = None                       # why it stopped before its steps, if it did
    last: dict[str, float] = field(default_factory=dict)  # the last logged loss terms

    @property
    def model_path(self) -> Path:
        return self.path / "model"

    @property
    def samples(self) -> list[Path]:
        return sorted((self.path / "samples").glob("step_*.png"))

    def load(self, device: str = "cpu"):
        return load(self.path, device)


def build_raw(model: str | None = None, data: str | None = None, *, objective: str | None = None,
              steps: int | None = None, batch_size: int | None = None, seed: int | None = None,
              image_size: int | None = None, channels: int | None = None, max_minutes: float | None = None,
              skip_bad_images: bool | None = None, device: str | None = None,
              config: str | Path | dict | None = None, set: list[str] | dict | None = None) -> dict:
    """Defaults <- config file/dict <- explicit arguments <- ``set`` overrides, as one nested dict."""
    raw: dict[str, Any] = {"model": {}, "data": {}, "train": {}}
    if config is not None:
        raw = merge(raw, config if isinstance(config, dict) else read_yaml(config))
    explicit = {
        "model": {"name": model, "objective": objective},
        "data": {"source": data, "image_size": image_size, "channels": channels,
                 "skip_bad_images": skip_bad_images},
        "train": {"steps": steps, "batch_size": batch_size, "seed": seed, "max_minutes": max_minutes,
                  "device": device},
    }
    raw = merge(raw, {s: {k: v for k, v in d.items() if v is not None} for s, d in explicit.items()})
    if set:
        raw = merge(raw, set if isinstance(set, dict) else parse_set(set))
    if "objective" in raw["model"] and not str(raw["model"].get("name", "dcgan")).endswith("gan"):
        raise GanvaeError(f"--objective applies to GAN models; model {raw['model'].get('name')!r} is not one")
    return raw


def _fill_from_data(cfg: RunConfig, meta: dict) -> RunConfig:
    """The model's image_size/channels/num_classes come from the data; a conflicting explicit value is an error."""
    fill = {"image_size": meta["image_size"], "channels": meta["channels"], "num_classes": meta.get("num_classes")}
    if getattr(cfg.model, "dataset_size", 0) is None:  # beta-TCVAE's N: the train set size, unless given
        fill["dataset_size"] = meta["n_train"]
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


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GanvaeError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise GanvaeError(f"--out {out}: folder exists and is not empty; pass --resume {out} to continue it, "
                              "--overwrite to replace it, or choose another --out")
        if not (out / "config.yaml").is_file():
            raise GanvaeError(f"--out {out}: refusing to overwrite a folder that is not a ganvae run")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def default_out(cfg: RunConfig) -> Path:
    src = cfg.data.source.split(":", 1)
    name = src[0] if len(src) == 1 else f"{src[0]}-{Path(src[1]).name or 'data'}"
    base = Path("runs") / f"{cfg.model_name}-{name}"
    path, i = base, 1
    while path.exists() and any(path.iterdir()):
        i += 1
        path = Path(f"{base}-{i}")
    return path


def use_deterministic_kernels() -> None:
    """Deterministic cuDNN/cuBLAS kernels: GPU runs (and resumes) repeat bit for bit, at some cost in speed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(model: str | None = None, data: str | None = None, *, out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, progress: bool = True, dry_run: bool = False,
          log=print, **kwargs) -> Run | RunConfig:
    """Train a registered model on a data source; return the :class:`Run`.

    ``kwargs``: objective, steps, batch_size, seed, image_size, channels, max_minutes,
    skip_bad_images, device, config (YAML path or dict), set (``["model.latent_dim=32"]`` or a dict).
    ``resume=True`` continues the run in ``out`` from its latest checkpoint up to ``steps`` in total.
    ``dry_run=True`` resolves the config, loads the data, prints both and returns the config.
    """
    from .data import describe, load_data
    from .training import distributed

    if resume:
        if out is None:
            raise GanvaeError("--resume needs the run folder")
        out = Path(out)
        if not (out / "config.yaml").is_file():
            raise GanvaeError(f"--resume {out}: not a run folder (no config.yaml)")
        changed = {k for k, v in kwargs.items() if v is not None and k not in ("steps", "max_minutes", "device", "set")}
        if model is not None or data is not None or changed:
            raise GanvaeError(f"--resume continues {out} with its own config; only --steps, --max-minutes, "
                              f"--device and --set train.{{{','.join(sorted(RESUMABLE_KEYS))}}} may be given")
        over = build_raw(steps=kwargs.get("steps"), max_minutes=kwargs.get("max_minutes"),
                         device=kwargs.get("device"), set=kwargs.get("set"))
        bad = [f"{s}.{k}" for s in ("model", "data", "privacy") for k in over.get(s, {})] + \
              [f"train.{k}" for k in over["train"] if k not in RESUMABLE_KEYS]
        if bad:
            raise GanvaeError(f"--resume cannot change {', '.join(bad)}")
        raw = merge(read_yaml(out / "config.yaml"), over)
    else:
        raw = build_raw(model, data, **kwargs)
    cfg = resolve(raw)
    splits = load_data(cfg.data, progress=progress)
    cfg = _fill_from_data(cfg, splits.meta)
    if getattr(cfg.privacy, "enabled", False):  # refuse what cannot be private; D's BatchNorm -> GroupNorm
        from .privacy.dp import prepare_config
        cfg = prepare_config(cfg, splits.meta)
    if dry_run:
        import yaml
        log(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
        log(describe(splits))
        return cfg

    tc = cfg.train
    world = distributed.from_env()  # several processes under torchrun; rank 0 writes the files
    distributed.check_batch(world, tc.batch_size)
    if not resume:
        out = Path(out) if out is not None else default_out(cfg)
        if world.is_main:
            _prepare_out(out, overwrite)
    assert out is not None
    out = Path(out)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = distributed.setup(world, tc.device)
    try:
        return _train(cfg, splits, out, resume, progress and world.is_main, log, device, world)
    finally:
        distributed.teardown(world)


def _train(cfg: RunConfig, splits, out: Path, resume: bool, progress: bool, log, device: torch.device,
           world) -> Run:
    from .export import save_model
    from .models import build
    from .training import Trainer, distributed

    tc = cfg.train
    distributed.barrier(world)  # the run folder exists before any rank goes on
    if tc.deterministic:
        use_deterministic_kernels()
    seed_everything(tc.seed)
    net = build(cfg.model_name, cfg.model).to(device)
    if world.active:
        distributed.broadcast_module(net)
        torch.manual_seed(distributed.rank_seed(tc.seed, world.rank))  # per-rank dropout
    evaluator = on_best = None
    if tc.eval_every_kimg:
        from .metrics.evaluate import TrainingEvaluator
        evaluator = TrainingEvaluator(tc.eval_metric, splits, cfg.data.source, tc.eval_n, seed=tc.seed,
                                      device=str(device))
        if tc.keep_best:
            def on_best(tr, value):
                save_model(net, out / "best", tr.sampling_net() if tr.ema is not None else None,
                           {"step": tr.step, "images_seen": tr.images_seen, "data": splits.meta, "best": tr.best})
    trainer_cls, dp = Trainer, {}
    if getattr(cfg.privacy, "enabled", False):
        from .privacy.dp import DPTrainer
        trainer_cls, dp = DPTrainer, {"privacy": cfg.privacy}
    trainer = trainer_cls(net, tc, splits.train.images, splits.train.labels, out, device,
                          binarize=cfg.data.binarize, evaluator=evaluator, on_best=on_best, world=world, **dp)
    if resume:
        trainer.resume()
        if trainer.step >= tc.steps:
            raise GanvaeError(f"--resume {out}: already at step {trainer.step}; ask for more with --steps N (N > {trainer.step})")
    if not world.is_main:  # the other ranks train and leave the files to rank 0
        result = trainer.run(tc.steps, progress=False)
        return Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"],
                   result["last"])
    write_yaml(cfg.to_dict(), out / "config.yaml")
    from . import __version__
    run_info = {"ganvae_version": __version__, "torch_version": torch.__version__, "device": str(device),
                "processes": world.size, "data": splits.meta}
    if dp:
        run_info["privacy"] = trainer.summary()
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    if progress:
        what = "resuming" if resume else "training"
        log(f"{what} {cfg.model_name} on {cfg.data.source} ({splits.meta['n_train']} train images, "
            f"{splits.meta['channels']}x{splits.meta['image_size']}x{splits.meta['image_size']}) "
            f"from step {trainer.step} to {tc.steps} on {device}"
            + (f" x {world.size} processes" if world.active else "") + f" -> {out}")
    t0 = time.perf_counter()
    result = trainer.run(tc.steps, progress=progress)
    extra = {"step": trainer.step, "images_seen": trainer.images_seen, "data": splits.meta,
             "ema": trainer.ema is not None}
    if dp:  # the guarantee travels with the weights
        extra["privacy"] = run_info["privacy"] = trainer.summary()
        (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    save_model(net, out / "model", trainer.sampling_net() if trainer.ema is not None else None, extra)
    run = Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"], result["last"])
    report = None
    if tc.report:
        from .report import write_report
        try:
            report = write_report(out)
        except Exception as e:  # the run itself is saved; a report that fails must not lose it
            log(f"warning: report not written ({type(e).__name__}: {e}); retry with `ganvae report {out}`")
    if progress:
        grid = run.samples[-1] if run.samples else None
        why = f" (stopped: {run.stopped})" if run.stopped else ""
        log(f"done{why}: step {run.step}, {run.images_seen / 1000:.1f}k images in "
            f"{time.perf_counter() - t0:.0f}s; samples {grid}; model {run.model_path}; "
            f"checkpoint {out / 'checkpoints' / 'latest.pt'}" + (f"; report {report}" if report else ""))
    return run


def load(path: str | Path, device: str = "cpu"):
    """Load the exported model of a run (or a model folder) for generation."""
    from .export import load_model

    return load_model(path, device)


def info(path: str | Path) -> dict:
    """What a run folder holds: model, data, steps, images seen, final losses, where things are."""
    p = Path(path)
    if not (p / "config.yaml").is_file():
        raise GanvaeError(f"{p}: not a run folder (no config.yaml)")
    cfg = read_yaml(p / "config.yaml")
    out: dict[str, Any] = {"run": str(p), "model": cfg.get("model", {}).get("name"),
                           "data": cfg.get("data", {}).get("source"),
                           "steps_target": cfg.get("train", {}).get("steps")}
    metrics = p / "metrics.jsonl"
    if metrics.is_file():
        lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
        if lines:
            try:
                last = json.loads(lines[-1])
            except json.JSONDecodeError:
                raise GanvaeError(f"{metrics}:{len(lines)}: not a JSON line; the file is damaged") from None
            out["step"] = last.get("step")
            out["images_seen"] = last.get("images_seen")
            out["train_time_s"] = last.get("time_s")
            out["final"] = {k: v for k, v in last.items() if k.startswith(("loss/", "elbo", "D/"))}
    if (p / "run.json").is_file():
        rj = json.loads((p / "run.json").read_text())
        d = rj.get("data", {})
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

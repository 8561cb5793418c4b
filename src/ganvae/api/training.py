"""Training a run: ``train`` (fresh or ``--resume``), ``export`` (rebuild model/ from the latest checkpoint)."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import merge, read_yaml, write_yaml
from ..data import describe, load_data
from ..errors import GanvaeError
from ..export import check_graph_format, export_graph, load_model, save_model
from ..metrics import TrainingEvaluator
from ..models import MODELS, build, footprint
from ..privacy import plugins as privacy_plugins
from .init import load_init
from ..privacy import prepare as prepare_privacy
from ..report import write_report as report
from ..runfolder import (SECTIONS, RunConfig, compose, default_out, fill_from_data, prepare_out, read_config, resolve)
from ..training import DivergenceError, Trainer, distributed
from ..training.ada import ada_plugins
from ..training.datafit import fit_plugins
from ..training.checkpoint import nonfinite
from ..training.health_plugin import health_plugins
from ..util.device import physical_memory
from ..util.files import atomic_write_text
from ..util.lock import RunLock
from ..version import __version__

from .runs import load
from .translate import periodic_evaluator

# train.* keys a resume may change; anything else would break the exact continuation
RESUMABLE_KEYS = {"steps", "max_minutes", "device", "threads", "log_every", "sample_every", "checkpoint_every",
                  "eval_every_kimg", "eval_n", "eval_feature_net", "report", "tensorboard", "precision",
                  "channels_last", "compile", "tf32", "health", "cuda_graphs"}  # health: watches, never changes the run


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
    signal: int | None = None                        # the signal that interrupted it (SIGINT 2, SIGTERM 15, ...)

    @property
    def exit_code(self) -> int:
        """0: done or stopped by plan (time or privacy budget); 128 + signal: interrupted, state saved."""
        return 128 + self.signal if self.signal else 0

    @property
    def model_path(self) -> Path:
        return self.path / "model"

    @property
    def samples(self) -> list[Path]:
        return sorted((self.path / "samples").glob("step_*.png"))

    def load(self, device: str = "cpu"):
        return load(self.path, device)


# ------------------------------------------------------------------------------------------ training
def train(model: str | None = None, data: str | None = None, *, out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, progress: bool = True, dry_run: bool = False,
          log=print, config: str | Path | dict | None = None, set: list[str] | dict | None = None,
          **options) -> Run | RunConfig:
    """Train a registered model on a data source; return the :class:`Run`.

    ``options``: any of :data:`ganvae.runfolder.OPTIONS` (objective, steps, batch_size, seed, image_size,
    channels, max_minutes, device, dp_epsilon, ...), typed; ``config``: a YAML path or dict;
    ``set``: ``["model.latent_dim=32"]`` or a nested dict. ``resume=True`` continues the run in ``out``
    from its latest checkpoint up to ``steps`` in total. ``dry_run=True`` resolves the config, loads
    the data, prints both and returns the config.
    """
    if resume:
        raw = _resume_raw(out, model, data, options, set)
    else:
        raw = compose(_config_for(config, model, log), {"model": model, "data": data, **options}, set)
    cfg = resolve(raw)
    for note in cfg.notes:  # choices made for the user: stderr (stdout may be a --dry-run YAML)
        warnings.warn(note, stacklevel=2)
    splits = load_data(cfg.data, progress=progress)
    cfg = fill_from_data(cfg, splits.meta)
    cfg.privacy, cfg.model = prepare_privacy(cfg.privacy, MODELS.get(cfg.model_name).model_class, cfg.model,
                                             cfg.train, int(splits.meta["n_train"]), cfg.model_name)
    check_model_size(cfg.model_name, cfg.model, cfg.train.batch_size)  # what the real run refuses, dry or not
    check_batch_fits(cfg.train.batch_size, int(splits.meta["n_train"]))
    if dry_run:  # the config as YAML on stdout (`--dry-run > my.yaml` is a valid --config); the summary on stderr
        import yaml
        log(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
        print(describe(splits), file=sys.stderr)
        return cfg
    world = distributed.from_env()  # several processes under torchrun; rank 0 writes the files
    distributed.check_batch(world, cfg.train.batch_size)
    out = Path(out) if out is not None else default_out(cfg)
    fresh = not resume and not out.exists()
    lock = None
    if world.is_main:  # one writer per run folder: a second train/resume/overwrite of it is refused
        lock = RunLock(out, "--resume" if resume else "--out").acquire() if out.is_dir() else None
        if not resume:
            prepare_out(out, overwrite)  # may replace the folder: lock the new one
            if lock is not None:
                lock.release()
            lock = RunLock(out).acquire()
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        device = distributed.setup(world, cfg.train.device)
        try:
            return _train(cfg, splits, out, resume, progress and world.is_main, log, device, world)
        finally:
            distributed.teardown(world)
    except (GanvaeError, KeyboardInterrupt):
        if fresh and world.is_main and out.is_dir() and {p.name for p in out.iterdir()} <= {".lock"}:
            shutil.rmtree(out, ignore_errors=True)  # refused or stopped before anything was written: no empty folder
        raise
    finally:
        if lock is not None:
            lock.release()


def _config_for(config, model: str | None, log):
    """The ``--config`` to start from; when ``--model`` names another model than the config's, the config's
    ``model:`` section (that model's options) is left out, and a note says so."""
    if config is None or model is None:
        return config
    raw = dict(config) if isinstance(config, dict) else read_yaml(config, SECTIONS)
    theirs = (raw.get("model") or {}).get("name")
    if theirs is not None and theirs != model:
        warnings.warn(f"--model {model}: the config's model: section (options of {theirs}) is not used", stacklevel=3)
        raw["model"] = {}
    return raw


def check_batch_fits(batch_size: int, n_train: int) -> None:
    if n_train < batch_size:
        raise GanvaeError(f"train.batch_size {batch_size} is larger than the {n_train} training images; "
                          f"lower --batch-size (at most {n_train})")


def check_model_size(name: str, model_cfg, batch_size: int) -> None:
    """Refuse, in one line, a model this machine cannot hold or that cannot train at this batch size."""
    params, batchnorm = footprint(name, model_cfg)
    if batchnorm and batch_size < 2:
        raise GanvaeError(f"train.batch_size {batch_size}: model {name} uses BatchNorm, which needs at least 2 "
                          "images per batch; raise --batch-size")
    need, have = 4 * params, physical_memory()  # weights, gradients and Adam's two moments
    if have and need > have:
        raise GanvaeError(f"model {name} has {params / 2**30:.1f} GiB of parameters and needs about "
                          f"{need / 2**30:.0f} GiB to train; this machine has {have / 2**30:.0f} GiB. Lower "
                          "model.latent_dim, the widths or the image size")


def _resume_raw(out, model, data, options: dict, overrides) -> dict:
    """The raw config of a resumed run: its own, with the few train.* keys a resume may change."""
    if out is None:
        raise GanvaeError("--resume needs the run folder")
    out = Path(out)
    if not (out / "config.yaml").is_file():
        raise GanvaeError(f"--resume {out}: not a run folder (no config.yaml)")
    changed = {k for k, v in options.items() if v is not None and k not in ("steps", "max_minutes", "device")}
    if model is not None or data is not None or changed:
        raise GanvaeError(f"--resume continues {out} with its own config; only --steps, --max-minutes, "
                          f"--device and --set train.{{{','.join(sorted(RESUMABLE_KEYS))}}} may be given")
    over = compose(None, {k: options.get(k) for k in ("steps", "max_minutes", "device")}, overrides)
    bad = [f"{s}.{k}" for s in ("model", "data", "privacy") for k in over.get(s, {})] + \
          [f"train.{k}" for k in over["train"] if k not in RESUMABLE_KEYS]
    if bad:
        raise GanvaeError(f"--resume cannot change {', '.join(bad)}")
    own = read_yaml(out / "config.yaml", SECTIONS)
    lacking = [k for k in ("model", "data", "train") if not isinstance(own.get(k), dict)]
    if lacking:  # resuming on defaults would silently change the run (another batch size, ...)
        raise GanvaeError(f"--resume {out}: {out / 'config.yaml'} has no {', '.join(s + ':' for s in lacking)} "
                          "section; it is not the config this run was trained with")
    return merge(own, over)


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


def _trainer(cfg: RunConfig, splits, out: Path, device: torch.device, world, resume: bool = False) -> Trainer:
    """The model, its periodic evaluator, its plugins and the loop, wired. A fresh run with ``train.init``
    starts from that run's networks (a resume starts from its own checkpoint instead)."""
    tc = cfg.train
    distributed.barrier(world)  # the run folder exists before any rank goes on
    if tc.deterministic:
        use_deterministic_kernels()
    seed_everything(tc.seed)
    net = build(cfg.model_name, cfg.model).to(device)
    if tc.init is not None and not resume:
        net.init_record = load_init(net, tc.init, cfg.model_name, cfg.model,
                                    private_data=cfg.data.source if cfg.privacy.enabled else None)
    if world.active:
        distributed.broadcast_module(net)
        torch.manual_seed(distributed.rank_seed(tc.seed, world.rank))  # per-rank dropout
    evaluator = on_best = None
    if tc.eval_every_kimg:
        evaluator = periodic_evaluator(TrainingEvaluator, tc, net, splits, str(device), cfg.data.binarize)
        if tc.keep_best:
            def on_best(tr, value):
                save_model(net, out / "best", tr.sampling_net() if tr.ema is not None else None,
                           {"step": tr.step, "images_seen": tr.images_seen, "data": splits.meta, "best": tr.best})
    return Trainer(net, tc, splits.train.images, splits.train.labels, out, device, binarize=cfg.data.binarize,
                   evaluator=evaluator, on_best=on_best, world=world,
                   plugins=[*privacy_plugins(cfg.privacy, net, splits.train.images, splits.train.labels),
                            *fit_plugins(net, splits.train.images),
                            *ada_plugins(net),
                            *(health_plugins(cfg.health, splits.train.images, splits.train.labels, splits.test.images,
                                             splits.test.labels, private=cfg.privacy.enabled)
                              if not net.translation else [])],  # its probes sample from noise
                   images_b=splits.train.b if splits.b is None else splits.b.train.images,  # translation: domain B
                   paired=splits.b is None)


def _train(cfg: RunConfig, splits, out: Path, resume: bool, progress: bool, log, device: torch.device,
           world) -> Run:
    trainer = _trainer(cfg, splits, out, device, world, resume)
    tc = cfg.train
    if resume:
        trainer.resume()
        if trainer.step >= tc.steps:
            if world.is_main and _exported_step(out) != trainer.step:  # killed between checkpoint and export
                _finish(trainer, cfg, splits, out, log, {})
                log(f"{out}: already at step {trainer.step}; exported the model and the report it was missing")
                return Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds)
            raise GanvaeError(f"--resume {out}: already at step {trainer.step}; ask for more with --steps N "
                              f"(N > {trainer.step})")
    if not world.is_main:  # the other ranks train and leave the files to rank 0
        result = trainer.run(tc.steps, progress=False)
        return Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"],
                   result["last"])
    write_yaml(cfg.to_dict(), out / "config.yaml")
    run_info = {"ganvae_version": __version__, "torch_version": torch.__version__, "device": str(device),
                "processes": world.size, "precision": trainer.precision, "cuda_graphs": trainer.cuda_graphs,
                "data": splits.meta, **{pl.name: pl.summary() for pl in trainer.plugins}}
    init = getattr(trainer.model, "init_record", None) or (_previous_run_info(out).get("init") if resume else None)
    if init:  # the starting weights' run: public pretraining, outside a private run's guarantee
        run_info["init"] = init
    choice = getattr(trainer.evaluator, "feature_choice", None)
    if choice is not None:  # which features the periodic scores use, and why (featnet_auto)
        run_info["eval_features"] = {"net": choice.name, "reason": choice.reason}
    atomic_write_text(out / "run.json", json.dumps(run_info, indent=2) + "\n")
    if progress:
        if choice is not None:
            log(f"periodic evaluation {choice.line()}")
        log(f"{'resuming' if resume else 'training'} {cfg.model_name} on {cfg.data.source} "
            f"({splits.meta['n_train']} train images, {splits.meta['channels']}x{splits.meta['image_size']}x"
            f"{splits.meta['image_size']}" + (", the folder default size: --image-size S to choose"
                                               if splits.meta.get("default_size") else "")
            + f") from step {trainer.step} to {tc.steps} on {device}"
            + (f" x {world.size} processes" if world.active else "") + f" -> {out}"
            + (f"; time budget {tc.max_minutes:g} min" + (" (--max-minutes M to change it)" if resume else "")
               if tc.max_minutes else ""))
    t0, images0 = time.perf_counter(), trainer.images_seen
    result = trainer.run(tc.steps, progress=progress)
    if trainer.cuda_graphs != run_info["cuda_graphs"]:  # a capture refused at the first step: run.json says so
        run_info["cuda_graphs"] = trainer.cuda_graphs
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2) + "\n")
    path = _finish(trainer, cfg, splits, out, log, run_info)
    run = Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"], result["last"],
              trainer.interrupted_by)
    if progress:
        why = f" (stopped: {run.stopped})" if run.stopped else ""
        total = f" ({run.images_seen / 1000:.1f}k in all)" if images0 else ""
        log(f"done{why}: step {run.step}, {(run.images_seen - images0) / 1000:.1f}k images in "
            f"{time.perf_counter() - t0:.0f}s{total}; samples {run.samples[-1] if run.samples else None}; model "
            f"{run.model_path}; checkpoint {out / 'checkpoints' / 'latest.pt'}" + (f"; report {path}" if path else ""))
    return run


def _previous_run_info(out: Path) -> dict:
    try:
        return json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _finish(trainer: Trainer, cfg: RunConfig, splits, out: Path, log, run_info: dict) -> Path | None:
    """After training: plugin summaries into run.json, the export (model/), the report. Returns the report."""
    summaries = {pl.name: pl.summary() for pl in trainer.plugins}  # e.g. the privacy guarantee: with the weights
    if summaries and run_info:
        atomic_write_text(out / "run.json", json.dumps({**run_info, **summaries}, indent=2) + "\n")
    net = trainer.sampling_net() if trainer.ema is not None else None
    bad = nonfinite({"model": trainer.model.state_dict(), "ema": net.state_dict() if net is not None else {}})
    if bad:
        raise DivergenceError(f"{bad[0]} holds NaN or infinite values; the model is not exported")
    save_model(trainer.model, out / "model", net, {"step": trainer.step, "images_seen": trainer.images_seen,
                                                  "data": splits.meta, "ema": trainer.ema is not None, **summaries,
                                                  **({"init": run_info["init"]} if run_info.get("init") else {})})
    if not cfg.train.report:
        return None
    try:
        return report(out)
    except Exception as e:  # the run itself is saved; a report that fails must not lose it
        log(f"warning: report not written ({type(e).__name__}: {e}); retry with `ganvae report {out}`")
        return None


def _exported_step(out: Path) -> int | None:
    """The step of the run's export (model/config.json), or None when there is none."""
    try:
        return int(json.loads((out / "model" / "config.json").read_text()).get("step"))
    except (OSError, ValueError, TypeError):
        return None


def export(run: str | Path, log=print, format: str | None = None) -> Path:
    """Rebuild ``RUN/model/`` (the inference export, its card, and the report) from the run's latest checkpoint,
    e.g. after a crash between the last checkpoint and the export. ``format`` "onnx" or "torchscript": also
    write the generator as ``model/generator.onnx`` or ``model/generator.pt`` (latent codes -> images in
    [0, 1]), checked against the model after loading it back."""
    if format is not None:
        check_graph_format(format)  # before the rebuild: a missing package is one line, not a late traceback
    run = Path(run)
    cfg = read_config(run)
    splits = load_data(cfg.data, progress=False)
    cfg = fill_from_data(cfg, splits.meta)
    cfg.privacy, cfg.model = prepare_privacy(cfg.privacy, MODELS.get(cfg.model_name).model_class, cfg.model,
                                             cfg.train, int(splits.meta["n_train"]), cfg.model_name)
    with RunLock(run, "export"):
        trainer = _trainer(cfg, splits, run, torch.device("cpu"), distributed.SINGLE)
        trainer.resume()
        _finish(trainer, cfg, splits, run, log, {})
        log(f"exported step {trainer.step} of {run} to {run / 'model'}")
        if format is not None:
            export_graph(load_model(run / "model"), run / "model", format, log=log)
    return run / "model"

"""The library surface: the one module that wires the packages together and reads and writes run folders.

``train``, ``load``, ``info``, ``evaluate``, ``audit``, ``report``, ``sample``, ``traverse``,
``interpolate``; the CLI and the explorer call only these (and the registries re-exported here).
Below this module every package takes objects: models, tensors, data splits, configs.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import merge, read_yaml, write_yaml
from .data import SOURCES, config_from_meta, describe, load_data, members_and_heldout
from .errors import GanvaeError
from .export import load_model, save_model
from .images import make_grid, save_each, save_grid, save_npz
from .latent import decode, interpolate as _interpolate, load_image, prior_code, save_gif, slerp
from .latent import traverse as _traverse
from .metrics import METRICS, TrainingEvaluator
from .metrics import evaluate as _evaluate
from .models import MODELS, GenerativeModel, build
from .objectives import GAN_OBJECTIVES
from .privacy import plugins as privacy_plugins
from .privacy import prepare as prepare_privacy
from .privacy.audit import audit as _audit
from .privacy.dp import summary_text as privacy_lines
from .report import write_report as report
from .runfolder import (OPTIONS, SECTIONS, RunConfig, compose, default_out, fill_from_data, info, prepare_out,
                        read_config, resolve)
from .training import TrainConfig, Trainer, distributed
from .util.device import resolve_device
from .util.files import atomic_write_text
from .version import __version__

__all__ = ["train", "load", "info", "evaluate", "audit", "report", "sample", "traverse", "interpolate", "Run",
           "RunConfig", "MODELS", "SOURCES", "GAN_OBJECTIVES", "METRICS", "OPTIONS", "TrainConfig",
           "resolve_device", "privacy_lines", "prior_code", "decode", "slerp", "load_image", "make_grid",
           "sample_labels"]

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
        raw = compose(config, {"model": model, "data": data, **options}, set)
    cfg = resolve(raw)
    splits = load_data(cfg.data, progress=progress)
    cfg = fill_from_data(cfg, splits.meta)
    cfg.privacy, cfg.model = prepare_privacy(cfg.privacy, MODELS.get(cfg.model_name).model_class, cfg.model,
                                             cfg.train, int(splits.meta["n_train"]), cfg.model_name)
    if dry_run:
        import yaml
        log(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
        log(describe(splits))
        return cfg
    world = distributed.from_env()  # several processes under torchrun; rank 0 writes the files
    distributed.check_batch(world, cfg.train.batch_size)
    out = Path(out) if out is not None else default_out(cfg)
    if not resume and world.is_main:
        prepare_out(out, overwrite)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = distributed.setup(world, cfg.train.device)
    try:
        return _train(cfg, splits, out, resume, progress and world.is_main, log, device, world)
    finally:
        distributed.teardown(world)


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
    return merge(read_yaml(out / "config.yaml", SECTIONS), over)


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


def _trainer(cfg: RunConfig, splits, out: Path, device: torch.device, world) -> Trainer:
    """The model, its periodic evaluator, its plugins and the loop, wired."""
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
        evaluator = TrainingEvaluator(tc.eval_metric, net, splits, tc.eval_n, seed=tc.seed, device=str(device),
                                      binarize=cfg.data.binarize)
        if tc.keep_best:
            def on_best(tr, value):
                save_model(net, out / "best", tr.sampling_net() if tr.ema is not None else None,
                           {"step": tr.step, "images_seen": tr.images_seen, "data": splits.meta, "best": tr.best})
    return Trainer(net, tc, splits.train.images, splits.train.labels, out, device, binarize=cfg.data.binarize,
                   evaluator=evaluator, on_best=on_best, world=world, plugins=privacy_plugins(cfg.privacy))


def _train(cfg: RunConfig, splits, out: Path, resume: bool, progress: bool, log, device: torch.device,
           world) -> Run:
    trainer = _trainer(cfg, splits, out, device, world)
    tc = cfg.train
    if resume:
        trainer.resume()
        if trainer.step >= tc.steps:
            raise GanvaeError(f"--resume {out}: already at step {trainer.step}; ask for more with --steps N "
                              f"(N > {trainer.step})")
    if not world.is_main:  # the other ranks train and leave the files to rank 0
        result = trainer.run(tc.steps, progress=False)
        return Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"],
                   result["last"])
    write_yaml(cfg.to_dict(), out / "config.yaml")
    run_info = {"ganvae_version": __version__, "torch_version": torch.__version__, "device": str(device),
                "processes": world.size, "data": splits.meta,
                **{pl.name: pl.summary() for pl in trainer.plugins}}
    atomic_write_text(out / "run.json", json.dumps(run_info, indent=2) + "\n")
    if progress:
        log(f"{'resuming' if resume else 'training'} {cfg.model_name} on {cfg.data.source} "
            f"({splits.meta['n_train']} train images, {splits.meta['channels']}x{splits.meta['image_size']}x"
            f"{splits.meta['image_size']}) from step {trainer.step} to {tc.steps} on {device}"
            + (f" x {world.size} processes" if world.active else "") + f" -> {out}")
    t0 = time.perf_counter()
    result = trainer.run(tc.steps, progress=progress)
    summaries = {pl.name: pl.summary() for pl in trainer.plugins}  # e.g. the privacy guarantee: with the weights
    if summaries:
        atomic_write_text(out / "run.json", json.dumps({**run_info, **summaries}, indent=2) + "\n")
    save_model(trainer.model, out / "model", trainer.sampling_net() if trainer.ema is not None else None,
               {"step": trainer.step, "images_seen": trainer.images_seen, "data": splits.meta,
                "ema": trainer.ema is not None, **summaries})
    run = Run(out, cfg, trainer.step, trainer.images_seen, trainer.train_seconds, result["stopped"], result["last"])
    path = None
    if tc.report:
        try:
            path = report(out)
        except Exception as e:  # the run itself is saved; a report that fails must not lose it
            log(f"warning: report not written ({type(e).__name__}: {e}); retry with `ganvae report {out}`")
    if progress:
        why = f" (stopped: {run.stopped})" if run.stopped else ""
        log(f"done{why}: step {run.step}, {run.images_seen / 1000:.1f}k images in "
            f"{time.perf_counter() - t0:.0f}s; samples {run.samples[-1] if run.samples else None}; model "
            f"{run.model_path}; checkpoint {out / 'checkpoints' / 'latest.pt'}" + (f"; report {path}" if path else ""))
    return run


# ------------------------------------------------------------------------------------------ using a run
def load(path: str | Path, device: str = "cpu") -> GenerativeModel:
    """Load the exported model of a run (or a model folder) for generation."""
    return load_model(path, resolve_device(device, "--device"))


def evaluate(run: str | Path, metrics: str | list[str] = "fid,kid,pr,dc", n: int = 10000,
             feature_net: str = "auto", split: str = "test", seed: int = 0, k: int = 5000,
             kid_subset_size: int = 1000, baselines: bool = True, inception_weights: str | None = None,
             device: str = "cpu", write: bool = True, log=print) -> list[dict]:
    """Score the run's exported generator (see :func:`ganvae.metrics.evaluate`); append to RUN/eval.jsonl."""
    run = Path(run)
    device = str(resolve_device(device, "--device"))
    model = load(run, device=device)
    cfg = read_config(run) if (run / "config.yaml").is_file() else None
    if cfg is None:
        raise GanvaeError(f"{run}: not a run folder (no config.yaml beside the model)")
    splits = load_data(cfg.data, progress=False)
    untrained = None
    if baselines:
        torch.manual_seed(cfg.train.seed)
        untrained = build(cfg.model_name, cfg.model).to(device).eval()
    records = _evaluate(model, splits, metrics=metrics, n=n, feature_net=feature_net, split=split, seed=seed, k=k,
                        kid_subset_size=kid_subset_size, untrained=untrained, binarize=cfg.data.binarize,
                        inception_weights=inception_weights, device=device, model_path=str(run / "model"), log=log)
    if write:
        with (run / "eval.jsonl").open("a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return records


def audit(run_or_model, *, n_samples: int = 10000, n_members: int | None = None, seed: int = 0,
          features: str = "auto", data=None, cells: int | None = None, elbo_k: int = 32, device: str = "cpu",
          write: bool = True, out: str | Path | None = None, log=print) -> dict:
    """Leakage audit (see :mod:`ganvae.privacy.audit`) of a run folder or a loaded model.

    ``data``: a DataConfig, or ``(members, heldout)`` images / ImageData; default: the run's own data
    (or, for a model, the data its export describes). Writes ``audit.json`` and ``audit_pairs.png`` into
    ``out`` (default: the run folder) unless ``write=False``.
    """
    from .data import DataConfig

    device = str(resolve_device(device, "--device"))
    run = None
    if not isinstance(run_or_model, (str, os.PathLike)):  # a loaded model
        model = run_or_model
    else:
        run = Path(run_or_model)
        if not run.exists():
            raise GanvaeError(f"{run}: no such run folder")
        model = load(run, device=device)
        if data is None:
            data = read_config(run).data
    if data is None:
        dm = (getattr(model, "meta", None) or {}).get("data")
        if not dm:
            raise GanvaeError("audit of a model object needs data=DataConfig(...) or data=(train, heldout) images")
        data = config_from_meta(dm)
    if isinstance(data, DataConfig):
        d = members_and_heldout(data)
        members, heldout, kw = d["train"], d["heldout"], {"meta": d["meta"], "split": d["split"]}
    else:
        members, heldout, kw = data[0], data[1], {}
    result, pairs = _audit(model, members, heldout, n_samples=n_samples, n_members=n_members, seed=seed,
                           features=features, cells=cells, elbo_k=elbo_k, device=device,
                           run=str(run) if run is not None else None, log=None, **kw)
    folder = Path(out) if out is not None else run
    if write and folder is not None:
        save_grid(pairs, folder / "audit_pairs.png", nrow=12)
        result["pairs_png"] = str(folder / "audit_pairs.png")
        atomic_write_text(folder / "audit.json", json.dumps(result, indent=2) + "\n")
        result["audit_json"] = str(folder / "audit.json")
    if log:
        from .privacy.audit import format_audit
        log(format_audit(result))
    return result


def sample_labels(model, cls: int | None, class_name: str | None, per_class: int | None, n: int):
    """Resolve --class / --class-name / --per-class into (n, labels or None, nrow or None)."""
    if sum(x is not None for x in (cls, class_name, per_class)) > 1:
        raise GanvaeError("give one of --class, --class-name, --per-class")
    if cls is None and class_name is None and per_class is None:
        return n, None, None
    if not model.conditional:
        raise GanvaeError(f"--class/--class-name/--per-class need a conditional model (cdcgan, cvae); "
                          f"this run is {model.registered_name}")
    c = model.config.num_classes
    if class_name is not None:
        names = (model.meta.get("data") or {}).get("class_names")
        if not names:
            raise GanvaeError(f"--class-name: this run's data has no class names; use --class K (0..{c - 1})")
        if class_name not in names:
            raise GanvaeError(f"--class-name {class_name!r}: expected one of {', '.join(map(str, names))}")
        cls = names.index(class_name)
    if cls is not None:
        if not 0 <= cls < c:
            raise GanvaeError(f"--class {cls}: expected 0..{c - 1}")
        return n, cls, None
    if per_class < 1 or per_class * c > 100_000:
        raise GanvaeError(f"--per-class {per_class}: expected 1 to {100_000 // c}")
    return per_class * c, torch.arange(c).repeat_interleave(per_class), per_class


def sample(run: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None, nrow: int | None = None,
           device: str = "cpu", cls: int | None = None, class_name: str | None = None,
           per_class: int | None = None) -> str:
    """Write samples of a run as a grid (.png), one PNG each (a folder ending in /) or arrays (.npz)."""
    if n < 1 or n > 100_000:
        raise GanvaeError(f"-n {n}: expected 1 to 100000")
    out = str(out or Path(run) / f"sample_seed{seed}.png")
    is_dir = out.endswith(("/", "\\")) or Path(out).is_dir()
    suffix = Path(out).suffix.lower()
    if not is_dir and suffix not in (".png", ".npz"):
        raise GanvaeError(f"--out {out}: expected a .png grid, a .npz file, or a folder ending in /")
    model = load(run, device=device)
    n, labels, per_row = sample_labels(model, cls, class_name, per_class, n)
    imgs = model.sample(n, seed=seed, labels=labels)
    if is_dir:
        return f"wrote {len(save_each(imgs, out))} images to {out}"
    if suffix == ".npz":
        save_npz(imgs, out)
        return f"wrote {n} images to {out} (images: uint8 (N, C, H, W))"
    save_grid(imgs, out, nrow or per_row)
    return f"wrote a grid of {n} images to {out}"


def _png_out(out: str | Path) -> Path:
    if Path(out).suffix.lower() != ".png":
        raise GanvaeError(f"--out {out}: expected a .png file")
    return Path(out)


def traverse(run: str | Path, dims=None, span: float = 3.0, steps: int = 9, seed: int = 0, image=None,
             relative: bool = False, out: str | Path | None = None, device: str = "cpu") -> str:
    """Write a latent traversal grid (one row per dimension) of a run."""
    default = f"traverse_{Path(image).stem}.png" if image else f"traverse_seed{seed}.png"
    path = _png_out(out or Path(run) / default)
    if image and not Path(image).is_file():
        raise GanvaeError(f"--image {image}: no such file")
    imgs = _traverse(load(run, device=device), dims, span, steps, seed=seed, image=image, relative=relative)
    save_grid(imgs, path, nrow=steps)
    return f"wrote a traversal of {imgs.shape[0] // steps} dimensions x {steps} steps to {path}"


def interpolate(run: str | Path, seeds=None, images=None, steps: int = 10, ms: int = 120,
                out: str | Path | None = None, device: str = "cpu") -> str:
    """Write the slerp between two codes as a PNG strip and an animated GIF beside it."""
    if seeds and images:
        raise GanvaeError("give --seeds or --images, not both")
    if ms < 1:
        raise GanvaeError(f"--ms {ms}: expected a positive number of milliseconds")
    seeds = tuple(seeds) if seeds else (0, 1)
    default = (f"interp_{Path(images[0]).stem}-{Path(images[1]).stem}.png" if images
               else f"interp_seed{seeds[0]}-{seeds[1]}.png")
    path = _png_out(out or Path(run) / default)
    for im in images or []:
        if not Path(im).is_file():
            raise GanvaeError(f"--images {im}: no such file")
    frames = _interpolate(load(run, device=device), seeds, steps, images=images)
    save_grid(frames, path, nrow=steps)
    gif = save_gif(frames, path.with_suffix(".gif"), ms=ms)
    return f"wrote {steps} frames to {path} and {gif}"


"""Using a run: ``load``, ``evaluate``, ``audit``, ``sample``, ``traverse``, ``interpolate``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..data import config_from_meta, load_data, members_and_heldout
from ..errors import GanvaeError
from ..export import load_model
from ..images import save_each, save_grid, save_npz
from ..latent import interpolate as _interpolate, parse_dims, save_gif
from ..latent import traverse as _traverse
from ..metrics import evaluate as _evaluate
from ..metrics.translation import translation_view
from ..models import GenerativeModel, build
from ..runfolder import read_config
from ..util.device import resolve_device
from ..util.files import atomic_append_lines, atomic_write_text

def load(path: str | Path, device: str = "cpu") -> GenerativeModel:
    """Load the exported model of a run (or a model folder) for generation."""
    return load_model(path, resolve_device(device, "--device"))


def evaluate(run: str | Path, metrics: str | list[str] = "fid,kid,pr,dc", n: int = 10000,
             feature_net: str = "auto", split: str = "test", seed: int = 0, k: int = 5000,
             kid_subset_size: int = 1000, baselines: bool = True, inception_weights: str | None = None,
             device: str = "cpu", write: bool = True, log=print, progress: bool = True) -> list[dict]:
    """Score the run's exported generator (see :func:`ganvae.metrics.evaluate`); append to RUN/eval.jsonl.

    ``progress``: bars and up-front estimates of slow stages on stderr (never when ``log`` is None).
    """
    check_seed(seed)
    run = Path(run)
    device = str(resolve_device(device, "--device"))
    model = load(run, device=device)
    cfg = read_config(run) if (run / "config.yaml").is_file() else None
    if cfg is None:
        raise GanvaeError(f"{run}: not a run folder (no config.yaml beside the model)")
    splits = load_data(cfg.data, progress=progress and log is not None)
    untrained = None
    if baselines:
        torch.manual_seed(cfg.train.seed)
        untrained = build(cfg.model_name, cfg.model).to(device).eval()
    if model.translation:  # translated source test images against the target domain (metrics/translation.py)
        model, splits, untrained = translation_view(model, splits, untrained)
    records = _evaluate(model, splits, metrics=metrics, n=n, feature_net=feature_net, split=split, seed=seed, k=k,
                        kid_subset_size=kid_subset_size, untrained=untrained, binarize=cfg.data.binarize,
                        inception_weights=inception_weights, device=device, model_path=str(run / "model"), log=log,
                        progress=progress)
    if write:
        atomic_append_lines(run / "eval.jsonl", [json.dumps(r) for r in records])
    return records


def audit(run_or_model, *, n_samples: int = 10000, n_members: int | None = None, seed: int = 0,
          features: str = "auto", data=None, cells: int | None = None, elbo_k: int = 32, device: str = "cpu",
          write: bool = True, out: str | Path | None = None, log=print, progress: bool = True) -> dict:
    """Leakage audit (see :mod:`ganvae.privacy.audit`) of a run folder or a loaded model.

    ``progress``: a bar per stage and up-front estimates of slow ones on stderr (never when ``log`` is None).

    ``data``: a DataConfig, or ``(members, heldout)`` images / ImageData; default: the run's own data
    (or, for a model, the data its export describes). Writes ``audit.json`` and ``audit_pairs.png`` into
    ``out`` (default: the run folder) unless ``write=False``.
    """
    from ..data import DataConfig
    from ..privacy.audit import audit as _audit  # here: it imports scipy.stats (0.8 s), which few commands need

    check_seed(seed)
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
                           run=str(run) if run is not None else None, log=None,
                           progress=progress and log is not None, **kw)
    folder = Path(out) if out is not None else run
    if write and folder is not None:
        save_grid(pairs, folder / "audit_pairs.png", nrow=12,
                  col_labels=["generated", "nearest training", "nearest held-out"])
        result["pairs_png"] = str(folder / "audit_pairs.png")
        atomic_write_text(folder / "audit.json", json.dumps(result, indent=2) + "\n")
        result["audit_json"] = str(folder / "audit.json")
        if (folder / "config.yaml").is_file():  # a run folder: its privacy card (guarantee, attacks, utility)
            from ..privacy.card import write_card
            result["privacy_card"] = str(write_card(folder))
    if log:
        from ..privacy.audit import format_audit
        log(format_audit(result))
        if result.get("privacy_card"):
            card = json.loads(Path(result["privacy_card"]).read_text())
            log("privacy card (" + result["privacy_card"] + "):\n  " + "\n  ".join(card["verdict"]))
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


def check_seed(seed: int, what: str = "--seed") -> int:
    """Seeds are 0 .. 2**63 - 1 (what torch.Generator.manual_seed takes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise GanvaeError(f"{what} {seed}: expected 0 to {2**63 - 1}")
    return seed


def _sample_out(out: str) -> tuple[bool, str]:
    """(is a folder, suffix) of ``sample``'s --out, or a clear error."""
    is_dir = out.endswith(("/", "\\")) or Path(out).is_dir()
    suffix = Path(out).suffix.lower()
    if not is_dir and suffix not in (".png", ".npz"):
        raise GanvaeError(f"--out {out}: expected a .png grid, a .npz file, or a folder ending in /")
    return is_dir, suffix


def sample(run: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None, nrow: int | None = None,
           device: str = "cpu", cls: int | None = None, class_name: str | None = None,
           per_class: int | None = None, truncation: float | None = None) -> str:
    """Write samples of a run as a grid (.png), one PNG each (a folder ending in /) or arrays (.npz).

    ``truncation`` psi in (0, 1]: the truncation trick (codes toward the prior's mean; fewer odd samples,
    less variety); a conditional model keeps each image's class.

    Conditional models: ``cls`` (or ``class_name``) gives every image that class, ``per_class`` K images of
    every class, one labelled grid row each; with none of them each image's class is drawn uniformly at random
    from ``seed`` (the returned line says so). Default ``out``: ``RUN/sample_seed<seed>.png``, named
    ``..._class<K>.png`` or ``..._per_class.png`` when a class is chosen. Returns one line saying what was written.
    """
    check_seed(seed)
    if n < 1 or n > 100_000:
        raise GanvaeError(f"-n {n}: expected 1 to 100000")
    if out is not None:
        _sample_out(str(out))
    model = load(run, device=device)
    n, labels, per_row = sample_labels(model, cls, class_name, per_class, n)
    tag = "_per_class" if per_row else f"_class{labels}" if labels is not None else ""
    out = str(out or Path(run) / f"sample_seed{seed}{tag}.png")
    is_dir, suffix = _sample_out(out)
    imgs = model.sample(n, seed=seed, labels=labels, truncation=truncation)
    what = (f"{per_row} images of each of {model.config.num_classes} classes" if per_row
            else f"{n} images of class {labels}" if labels is not None else f"{n} images")
    note = (f"; classes drawn uniformly at random from seed {seed} (choose with --class K or --per-class K)"
            if model.conditional and labels is None else "")
    if is_dir:
        return f"wrote {len(save_each(imgs, out))} images to {out}{note}"
    if suffix == ".npz":
        save_npz(imgs, out)
        return f"wrote {what} to {out} (images: uint8 (N, C, H, W)){note}"
    rows = None
    if per_row:
        names = (model.meta.get("data") or {}).get("class_names") or []
        rows = [f"{c} {names[c]}" if c < len(names) else str(c) for c in range(model.config.num_classes)]
    save_grid(imgs, out, nrow or per_row, row_labels=rows if (nrow or per_row) == per_row else None)
    return f"wrote a grid of {what} to {out}{note}"


def _png_out(out: str | Path) -> Path:
    if Path(out).suffix.lower() != ".png":
        raise GanvaeError(f"--out {out}: expected a .png file")
    return Path(out)


def traverse(run: str | Path, dims=None, span: float = 3.0, columns: int = 9, seed: int = 0, image=None,
             relative: bool = False, out: str | Path | None = None, device: str = "cpu") -> str:
    """Write a latent traversal grid of a run: one row per dimension (labelled), ``columns`` values from
    -``span`` to +``span`` prior standard deviations (labelled above), tiles at least 64 px."""
    check_seed(seed)
    default = f"traverse_{Path(image).stem}.png" if image else f"traverse_seed{seed}.png"
    path = _png_out(out or Path(run) / default)
    if image and not Path(image).is_file():
        raise GanvaeError(f"--image {image}: no such file")
    model = load(run, device=device)
    imgs = _traverse(model, dims, span, columns, seed=seed, image=image, relative=relative)
    rows = [f"dim {d}" for d in parse_dims(dims, model.config.latent_dim)]
    values = [f"{v:+.3g}" if v else "0" for v in torch.linspace(-span, span, columns).tolist()]
    save_grid(imgs, path, nrow=columns, min_tile=64, row_labels=rows, col_labels=values)
    return f"wrote a traversal of {len(rows)} dimensions x {columns} columns to {path}"


def interpolate(run: str | Path, seeds=None, images=None, frames: int = 10, ms: int = 120,
                out: str | Path | None = None, device: str = "cpu") -> str:
    """Write the slerp between two codes as a PNG strip of ``frames`` images and an animated GIF beside it."""
    if seeds and images:
        raise GanvaeError("give --seeds or --images, not both")
    if ms < 1:
        raise GanvaeError(f"--ms {ms}: expected a positive number of milliseconds")
    seeds = tuple(check_seed(x, "--seeds") for x in seeds) if seeds else (0, 1)
    default = (f"interp_{Path(images[0]).stem}-{Path(images[1]).stem}.png" if images
               else f"interp_seed{seeds[0]}-{seeds[1]}.png")
    path = _png_out(out or Path(run) / default)
    for im in images or []:
        if not Path(im).is_file():
            raise GanvaeError(f"--images {im}: no such file")
    strip = _interpolate(load(run, device=device), seeds, frames, images=images)
    save_grid(strip, path, nrow=frames)
    gif = save_gif(strip, path.with_suffix(".gif"), ms=ms)
    return f"wrote {frames} frames to {path} and {gif}"

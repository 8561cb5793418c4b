"""``ganvae data prepare`` and ``ganvae data info``: build a source's cache ahead of time; say what a source
holds without decoding it (:func:`prepare`, :func:`source_info`, and their text).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import GanvaeError
from .cache import LABELS, cache_mode, find, human_bytes, locate, open_cache
from .cache_arrays import THRESHOLD, idx_source, load_idx_source, load_npz_source, npz_source
from .cache_folder import DEFAULT_SIZE, default_workers, folder_cache, folder_key, native_channels
from .config import DataConfig
from .folder import open_root
from .load import held_out, load_data
from .sources import source_path

MAX_CLASSES_SHOWN = 20


def _class_counts(labels: np.ndarray | None, names: list[str] | None) -> list[list] | None:
    """[[name, count], ...] in class order (names, or the label numbers)."""
    if labels is None:
        return None
    labels = labels[labels >= 0]
    counts = Counter(labels.tolist())
    ids = range(len(names)) if names else sorted(counts)
    return [[names[i] if names else str(i), int(counts.get(i, 0))] for i in ids]


def _cache_summary(folder: Path) -> dict:
    cache = open_cache(folder)
    labels = np.load(folder / LABELS, allow_pickle=False) if (folder / LABELS).is_file() else None
    train, test = cache.rows("train"), cache.rows("test")
    rows = train if test is None else np.concatenate([train, test])
    notes = cache.meta.get("notes", {})
    return {"cache_dir": str(folder), "count": int(len(rows)), "n_source_test": None if test is None else int(len(test)),
            "shape": cache.shape[1:], "bytes": cache.nbytes, "classes": _class_counts(
                None if labels is None else labels[rows], cache.meta.get("class_names")),
            "n_skipped": int(notes.get("n_skipped", 0)), "build": cache.meta.get("build")}


# --------------------------------------------------------------------------- prepare
def prepare(cfg: DataConfig, progress: bool = True) -> dict:
    """Build (or find up to date) the cache of ``cfg.source`` at ``cfg``'s size and channels.

    ``cfg.cache``: ``auto`` (under the cache root, where training finds it) or the cache folder.
    Returns the cache folder, ``status`` (written, hit), the image count and shape, bytes, classes, seconds.
    """
    cfg.validate()
    kind, path = source_path(cfg.source.strip())
    if path is None:
        raise GanvaeError(f"data prepare: {cfg.source!r} is a built-in data set; it loads into memory and needs "
                          "no cache (prepare takes a folder of images, idx:PATH or npz:PATH)")
    if cache_mode(cfg) == "off":
        raise GanvaeError("data prepare: data.cache=off means no cache; give --out DIR or leave it out")
    t0 = time.perf_counter()
    if kind == "folder":
        cache, status = folder_cache(path, cfg, progress)
        folder = cache.folder
    else:
        raw = (load_idx_source if kind == "idx" else load_npz_source)(path, cfg, progress, force=True)
        folder, status = Path(raw.notes["cache_dir"]), raw.notes["cache"]
    return {"source": cfg.source, "status": status, "seconds": time.perf_counter() - t0,
            "explicit": cache_mode(cfg) == "path", **_cache_summary(folder)}


def _classes_text(classes: list[list] | None, how: str = "") -> str:
    if not classes:
        return "none"
    shown = ", ".join(f"{name} {count}" for name, count in classes[:MAX_CLASSES_SHOWN])
    more = f", ... ({len(classes) - MAX_CLASSES_SHOWN} more)" if len(classes) > MAX_CLASSES_SHOWN else ""
    return f"{len(classes)}{how}: {shown}{more}"


def prepare_text(r: dict, cfg: DataConfig) -> str:
    c, h, w = r["shape"]
    if r["status"] == "hit":
        how = "already up to date"
    else:
        b = r.get("build") or {}
        how = (f"written in {r['seconds']:.1f} s" + (f", {b['images_per_s']:.0f} images/s with {b['workers']} "
               f"worker{'s' if b['workers'] != 1 else ''}" if b.get("workers") else ""))
    skipped = f" ({r['n_skipped']} unreadable files skipped)" if r["n_skipped"] else ""
    opts = (f" --image-size {h}" if cfg.image_size is not None else "") + (
        f" --channels {c}" if cfg.channels is not None else "")
    use = (f"--set data.cache={r['cache_dir']}" if r["explicit"] else "found by the same --data, --image-size and "
           "--channels")
    return "\n".join([
        f"cache: {r['cache_dir']} ({how})",
        f"  images: {r['count']}{skipped}, {c}x{h}x{w} uint8, {human_bytes(r['bytes'])}"
        + (f" (of which the source's test split: {r['n_source_test']})" if r["n_source_test"] else ""),
        f"  classes: {_classes_text(r['classes'])}",
        f"  train with: ganvae train --data {r['source']}{opts} ... ({use})",
    ])


# --------------------------------------------------------------------------- info
def source_info(cfg: DataConfig) -> dict:
    """What ``cfg.source`` holds, without decoding it: count, size, channels, classes, and its cache."""
    cfg.validate()
    kind, path = source_path(cfg.source.strip())
    out = {"source": cfg.source, "kind": kind if path is not None else "built-in", "holdout": cfg.holdout}
    if path is None or cache_mode(cfg) == "off":
        return {**out, **_loaded_info(cfg), "cache": {"state": "memory"}}
    if kind == "folder":
        return {**out, **_folder_info(path, cfg)}
    src = idx_source(path) if kind == "idx" else npz_source(path)
    if src is None:  # odd files: the in-memory loader explains (or loads them)
        return {**out, **_loaded_info(cfg), "cache": {"state": "memory"}}
    folder, ready = find(cfg, src.key(cfg))
    if ready is not None:
        return {**out, **_from_cache(folder)}
    shape = src.shape(cfg)
    tr_lab, te_lab = src.read_labels()
    labels = tr_lab if te_lab is None or tr_lab is None else np.concatenate([tr_lab, te_lab])
    big = src.train.pixels + (src.test.pixels if src.test else 0) > THRESHOLD
    return {**out, "count": shape[0], "n_source_test": src.test.n if src.test else None, "shape": shape[1:],
            "classes": _class_counts(labels, None), "size_note": "", "channels_note": "",
            "cache": {"state": "none" if big or cache_mode(cfg) == "path" else "memory", "path": str(folder),
                      "bytes": int(np.prod(shape))}}


def _from_cache(folder: Path) -> dict:
    s = _cache_summary(folder)
    return {"count": s["count"], "n_source_test": s["n_source_test"], "shape": s["shape"], "classes": s["classes"],
            "n_skipped": s["n_skipped"], "size_note": "", "channels_note": "",
            "cache": {"state": "complete", "path": s["cache_dir"], "bytes": s["bytes"]}}


def _folder_info(path: str, cfg: DataConfig) -> dict:
    spec, root, files = open_root(path)
    size = cfg.image_size if cfg.image_size is not None else DEFAULT_SIZE
    key = folder_key(root, files, cfg, size)
    folder, ready = find(cfg, key)
    size_note = "" if cfg.image_size is not None else " (the folder default; --image-size S to choose)"
    if ready is not None:
        return {**_from_cache(folder), "size_note": size_note}
    rels = [f[0] for f in files]
    channels = cfg.channels or native_channels([str(root / r) for r in rels], cfg.workers or default_workers())
    classes = None
    if all("/" in r for r in rels):
        counts = Counter(r.split("/", 1)[0] for r in rels)
        classes = [[name, counts[name]] for name in sorted(counts)]
    return {"count": len(rels), "n_source_test": None, "shape": (channels, size, size), "classes": classes,
            "size_note": size_note, "files_only": True,
            "channels_note": "" if cfg.channels else f" ({'a colour image found' if channels == 3 else 'all grey'})",
            "cache": {"state": "none", "path": str(locate(cfg, key)), "bytes": len(rels) * channels * size * size}}


def _loaded_info(cfg: DataConfig) -> dict:
    splits = load_data(dataclasses.replace(cfg, cache="off") if cfg.cache != "off" else cfg, progress=False)
    m = splits.meta
    labels = [d.labels.numpy() for d in (splits.train, splits.test) if d.labels is not None]
    return {"count": m["n_train"] + m["n_test"], "n_source_test": m["n_test"] if m["split"] == "source" else None,
            "shape": (m["channels"], m["image_size"], m["image_size"]), "size_note": "", "channels_note": "",
            "classes": _class_counts(np.concatenate(labels), m.get("class_names")) if labels else None}


def info_text(r: dict) -> str:
    c, h, w = r["shape"]
    n = r["count"]
    if r["n_source_test"] is not None:
        split = f"train {n - r['n_source_test']}, test {r['n_source_test']}: the source's own split"
    else:
        t = held_out(n, r["holdout"])
        split = f"train {n - t}, test {t}: seeded split, holdout {r['holdout']:g}"
    what = "image files" if r.get("files_only") else "images"
    skipped = f"; {r['n_skipped']} unreadable files skipped" if r.get("n_skipped") else ""
    lines = [f"data: {r['source']} ({r['kind']})", f"  {what}: {n} ({split}{skipped})",
             f"  size: {h}x{w}{r['size_note']}; channels: {c}{r['channels_note']}",
             f"  classes: {_classes_text(r['classes'], ' from subfolders' if r['kind'] == 'folder' else '')}"]
    cache = r["cache"]
    if cache["state"] == "complete":
        lines.append(f"  cache: {cache['path']} ({human_bytes(cache['bytes'])}, complete and up to date)")
    elif cache["state"] == "none":
        lines.append(f"  cache: none yet; about {human_bytes(cache['bytes'])} at {cache['path']}, built on first use "
                     "(or now by ganvae data prepare)")
    else:
        lines.append("  cache: none; loaded into memory" + (" (built-in data set)" if r["kind"] == "built-in" else ""))
    return "\n".join(lines)

"""``folder:PATH`` through the on-disk cache (:mod:`ganvae.data.cache`).

The first load decodes every image file in worker processes (``data.workers``, default
``min(CPUs, 8)``) straight into the cache's image file, each worker writing its own rows with
``pwrite``: no decoded image travels back to the main process, which keeps only a progress bar
(with an ETA) and the list of unreadable files. The rules are :mod:`ganvae.data.folder`'s, pixel for
pixel: the cache gives the same images, labels and order as ``data.cache=off``.

Channels: ``data.channels`` when given; else the headers are scanned first (stopping at the first
colour image) for whether any image is colour. A source file that changes while it is being cached
is refused (its fingerprint before and after differ), and no cache is left.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import GanvaeError
from .cache import IMAGES, LABELS, TRAIN, Cache, Key, allocate, cache_mode, digest, ensure, progress_log
from .config import DataConfig, SourceData
from .folder import (DEFAULT_SIZE, check_bad, decode_file, error_text, folder_labels, folder_notes, list_images,
                     load_folder, open_root)
from .transform import convert_channels, is_colour_mode

CHUNK = 64  # images per worker task
RESIZE = "lanczos-centre-crop"  # the resize rule, part of the cache's options


def default_workers() -> int:
    """``min(CPUs this process may use, 8)``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def folder_key(root: Path, files, cfg: DataConfig, size: int) -> Key:
    opts = {"image_size": size, "channels": cfg.channels, "resize": RESIZE, "skip_bad_images": bool(cfg.skip_bad_images)}
    return Key("folder", f"folder:{root}", opts, digest([list(f) for f in files]))


def load_folder_source(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    """``folder:PATH``: from the cache (built on first use) unless ``data.cache=off``."""
    if cache_mode(cfg) == "off":
        return load_folder(path, cfg, progress)
    cache, status = folder_cache(path, cfg, progress)
    return cache.source_data(status)


def folder_cache(path: str, cfg: DataConfig, progress: bool, workers: int | None = None) -> tuple[Cache, str]:
    """The cache of ``folder:PATH`` for ``cfg`` (its size, channels, ...): found, or built now."""
    spec, root, files = open_root(path)
    size = cfg.image_size if cfg.image_size is not None else DEFAULT_SIZE
    key = folder_key(root, files, cfg, size)
    workers = workers or cfg.workers or default_workers()

    def fill(tmp: Path) -> dict:
        return _fill(tmp, spec, root, files, cfg, size, workers, progress)

    need = len(files) * (cfg.channels or 3) * size * size
    return ensure(cfg, key, fill, need, progress_log(progress))


# --------------------------------------------------------------------------- workers
_W: dict = {}  # a worker's open image file and what it writes


def _init_process() -> None:
    """A worker ends on SIGTERM (Pool.terminate) without the parent's handlers; Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _init_worker(path: str, size: int, channels: int, pooled: bool = True) -> None:
    if pooled:
        _init_process()
    _W.update(fd=os.open(path, os.O_WRONLY), size=size, channels=channels, row=channels * size * size)


def _as_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, c) uint8 -> (channels, H, W) by the folder rules (grey replicated, colour -> BT.601 luma)."""
    chw = arr.transpose(2, 0, 1)
    if chw.shape[0] == channels:
        return np.ascontiguousarray(chw)
    if channels == 3:
        return np.ascontiguousarray(np.broadcast_to(chw, (3, *chw.shape[1:])))
    return convert_channels(torch.from_numpy(np.ascontiguousarray(chw[None])), 1)[0].numpy()


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def _decode_rows(task: list[tuple[int, str]]) -> tuple[int, list[tuple[int, str]], bool]:
    """Decode ``(row, path)`` pairs into the image file: (how many, [(row, error)], whether any was colour)."""
    errors, colour_seen = [], False
    for row, path in task:
        try:
            arr, colour = decode_file(path, _W["size"])
        except Exception as e:  # every failure is "unreadable" (see folder._decode_one)
            errors.append((row, error_text(e)))
            continue
        colour_seen |= colour
        _pwrite_all(_W["fd"], _as_channels(arr, _W["channels"]).tobytes(), row * _W["row"])
    return len(task), errors, colour_seen


def _is_colour(paths: list[str]) -> bool:
    for path in paths:
        try:
            with Image.open(path) as img:
                if is_colour_mode(img.mode):
                    return True
        except Exception:  # unreadable: the decode reports it
            continue
    return False


def _pool(workers: int, initargs: tuple | None = None):
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_init_worker if initargs else _init_process, initargs=initargs or ())


def _chunks(items: list, n: int) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def native_channels(paths: list[str], workers: int) -> int:
    """3 if any file's header says colour, else 1 (what the decoded images would say)."""
    if workers <= 1 or len(paths) <= 4 * CHUNK:
        return 3 if _is_colour(paths) else 1
    with _pool(workers) as pool:
        return 3 if any(pool.imap(_is_colour, _chunks(paths, 4 * CHUNK))) else 1


def decode_into(path: Path, paths: list[str], size: int, channels: int, workers: int, progress: bool,
                desc: str) -> tuple[dict[int, str], bool]:
    """Decode ``paths`` into rows 0.. of ``path``; returns ({row: error} of unreadable files, any colour)."""
    from tqdm import tqdm

    tasks = _chunks(list(enumerate(paths)), CHUNK)
    errors: dict[int, str] = {}
    colour = False
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False)
    try:
        if workers <= 1 or len(tasks) <= 1:
            _init_worker(str(path), size, channels, pooled=False)
            try:
                results = map(_decode_rows, tasks)
                for done, errs, col in results:
                    errors.update(errs)
                    colour |= col
                    bar.update(done)
            finally:
                os.close(_W.pop("fd"))
        else:
            with _pool(min(workers, len(tasks)), (str(path), size, channels)) as pool:
                for done, errs, col in pool.imap_unordered(_decode_rows, tasks):
                    errors.update(errs)
                    colour |= col
                    bar.update(done)
    finally:
        bar.close()
    return errors, colour


def _fill(tmp: Path, spec: str, root: Path, files, cfg: DataConfig, size: int, workers: int, progress: bool) -> dict:
    rels = [f[0] for f in files]
    paths = [str(root / r) for r in rels]
    t0 = time.perf_counter()
    channels = cfg.channels or native_channels(paths, workers)
    shape = (len(rels), channels, size, size)
    allocate(tmp / IMAGES, int(np.prod(shape)))
    errors, colour = decode_into(tmp / IMAGES, paths, size, channels, workers, progress,
                                 f"decoding {root.name or root} into the cache")
    bad = [(rels[r], errors[r]) for r in sorted(errors)]
    check_bad(spec, rels, bad, cfg.skip_bad_images)
    if list_images(root) != files:
        raise GanvaeError(f"{spec}: files were added, removed or changed while it was being cached; "
                          "no cache was kept: run again once the folder is stable")
    good = np.array([r for r in range(len(rels)) if r not in errors], dtype=np.int64)
    if cfg.channels is None and channels == 3 and not colour:  # only unreadable files said colour
        shape = _to_grey(tmp / IMAGES, shape)
    labels, info = folder_labels(rels, [rels[r] for r in good], [rel for rel, _ in bad])
    np.save(tmp / TRAIN, good)
    if labels is not None:
        full = np.full(len(rels), -1, dtype=np.int64)
        full[good] = labels
        np.save(tmp / LABELS, full)
    seconds = time.perf_counter() - t0
    return {"shape": list(shape), "class_names": info["class_names"],
            "num_classes": len(info["class_names"]) if info["class_names"] else None, "n_files": len(rels),
            "notes": folder_notes(info, len(files), cfg),
            "build": {"seconds": round(seconds, 3), "workers": workers, "images_per_s": round(len(rels) / seconds, 1)}}


def _to_grey(path: Path, shape: tuple) -> tuple:
    """Rewrite a 3-channel file of replicated grey images as 1 channel (channel 0), in chunks."""
    n, _, h, w = shape
    src = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    out_path = path.with_suffix(".grey")
    dst = np.memmap(out_path, dtype=np.uint8, mode="w+", shape=(n, 1, h, w))
    for s in range(0, n, 4096):
        dst[s:s + 4096] = src[s:s + 4096, :1]
    dst.flush()
    del src, dst
    os.replace(out_path, path)
    return (n, 1, h, w)

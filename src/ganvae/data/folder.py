"""``folder:PATH`` -- a folder of image files: the rules, and decoding into memory.

Rules (documented for users):

* Files: ``.png .jpg .jpeg .bmp .webp .gif .tif .tiff`` (any case), found
  recursively; hidden files and folders (name starting with ".") are ignored.
  GIFs use their first frame.
* Labels: when *every* image sits in a subfolder, the first path component is its
  class (sorted names -> 0..K-1, ``class_names`` in meta); otherwise no labels.
* Size: default 64 (``image_size`` overrides). Each image's shorter side is
  resized to the size with LANCZOS and the centre square kept. EXIF orientation
  is applied first; JPEGs are decoded at a reduced scale (``Image.draft``)
  when that still leaves at least the target size.
* Channels: default 3 if any image is colour (its mode is RGB/RGBA/palette/CMYK/...),
  else 1; ``channels`` overrides (grey -> replicated, colour -> BT.601 luma).
* Pixel formats: 16-bit maps 0..65535 -> 0..255; transparency is composited on
  black; palette/CMYK/YCbCr -> RGB.
* Cache: with ``data.cache`` = ``auto`` (the default) or a path, the folder is decoded once, in
  worker processes, into an on-disk cache that training reads a batch at a time
  (:mod:`ganvae.data.cache`, :mod:`ganvae.data.cache_folder`); any added, removed or touched
  file invalidates it. ``data.cache=off`` decodes into memory every time (this module).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import GanvaeError
from .config import DataConfig, ImageData, SourceData
from .transform import convert_channels, fit_square, is_colour_mode, pil_to_8bit, pil_to_array

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
DEFAULT_SIZE = 64
_ORIENTATION = 0x0112


# --------------------------------------------------------------------------- listing
def list_images(root: Path) -> list[tuple[str, int, int]]:
    """Sorted (relative posix path, size, mtime_ns) of the image files under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTS):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # vanished or a dangling link; not an image we can read
            found.append((Path(full).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    found.sort()
    return found


# --------------------------------------------------------------------------- decoding
def decode_file(path: str, size: int) -> tuple[np.ndarray, bool]:
    """Decode one file to (size, size, C) uint8 (C = 1 or 3) and whether it is colour.

    Raises whatever PIL raises for unreadable files; the caller collects those.
    """
    with Image.open(path) as img:
        colour = is_colour_mode(img.mode)
        if img.format == "JPEG" and min(img.size) >= 2 * size:
            img.draft(img.mode, (size, size))
        img.load()  # inside the caller's try: catches truncated files
        try:
            orientation = img.getexif().get(_ORIENTATION, 1)
        except Exception:  # malformed EXIF: keep the pixels as stored rather than reject the file
            orientation = 1
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        img = pil_to_8bit(img)
        img = fit_square(img, size)
        return pil_to_array(img), colour


def _decode_one(path: str, size: int):
    # PIL raises OSError (incl. UnidentifiedImageError, truncation), SyntaxError, ValueError,
    # EOFError, DecompressionBombError -- and odd files make it raise odd things: report
    # every failure as "unreadable", never crash the pool.
    try:
        return decode_file(path, size)
    except Exception as e:
        return e


def _decode_all(root: Path, rels: list[str], size: int, progress: bool) -> list:
    from tqdm import tqdm

    workers = max(1, min(8, (os.cpu_count() or 1) * 2))
    paths = [str(root / r) for r in rels]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(_decode_one, paths, [size] * len(paths), chunksize=1)
        return list(
            tqdm(it, total=len(paths), desc=f"decoding {root.name or root}", unit="img",
                 disable=not progress, file=sys.stderr, leave=False)
        )


# --------------------------------------------------------------------------- rules shared with the cache
def open_root(path: str) -> tuple[str, Path, list[tuple[str, int, int]]]:
    """``folder:PATH`` -> (its name in messages, the absolute folder, its image files); one line for bad input."""
    spec = f"folder:{path}"
    root = Path(os.path.abspath(os.path.expanduser(path)))
    if not root.exists():
        raise GanvaeError(f"{spec}: no such folder")
    if not root.is_dir():
        raise GanvaeError(f"{spec}: is a file, not a folder")
    try:
        files = list_images(root)
    except OSError as e:
        raise GanvaeError(f"{spec}: cannot list folder: {e}") from None
    if not files:
        raise GanvaeError(f"{spec}: no image files found (looked for {' '.join(IMAGE_EXTS)}, recursively)")
    return spec, root, files


def error_text(e: BaseException) -> str:
    """How an unreadable file's error is quoted: ``TypeName: message``."""
    return f"{type(e).__name__}: {e}"


def check_bad(spec: str, rels: list[str], bad: list[tuple[str, str]], skip: bool) -> None:
    """Refuse unreadable files (``bad``: (relative path, :func:`error_text`) in file order) unless ``skip``;
    when skipping, say so on stderr; refuse a folder with no readable file at all."""
    if bad and not skip:
        names = ", ".join(rel for rel, _ in bad[:3]) + (", ..." if len(bad) > 3 else "")
        first = " ".join(bad[0][1].split())[:160]
        raise GanvaeError(
            f"{spec}: {len(bad)} of {len(rels)} files unreadable: {names} (first: {first}); "
            "pass --skip-bad-images to skip them"
        )
    if len(bad) == len(rels):
        raise GanvaeError(f"{spec}: none of the {len(rels)} image files is readable")
    if bad:
        print(f"ganvae: {spec}: skipped {len(bad)} of {len(rels)} unreadable files "
              f"({', '.join(rel for rel, _ in bad[:3])}{', ...' if len(bad) > 3 else ''})", file=sys.stderr)


def folder_labels(rels: list[str], good: list[str], bad: list[str]) -> tuple[np.ndarray | None, dict]:
    """Labels of the ``good`` files (the first path component, when every image is in a subfolder) and
    the info that goes with them: n, n_skipped, skipped_examples, class_names, unlabelled_reason."""
    info: dict = {"n": len(good), "n_skipped": len(bad), "skipped_examples": bad[:3]}
    if all("/" in rel for rel in rels):
        class_names = sorted({rel.split("/", 1)[0] for rel in rels})
        index = {c: i for i, c in enumerate(class_names)}
        info["class_names"] = class_names
        return np.array([index[rel.split("/", 1)[0]] for rel in good], dtype=np.int64), info
    info["class_names"] = None
    if any("/" in rel for rel in rels):
        info["unlabelled_reason"] = "some images sit directly in the top folder, so subfolders are not used as labels"
    return None, info


def folder_notes(info: dict, n_files: int, cfg: DataConfig) -> dict:
    """The data-meta notes of a decoded folder (skipped files, why unlabelled, the default size)."""
    notes: dict = {"n_files": n_files}
    if info.get("n_skipped"):
        notes["n_skipped"] = info["n_skipped"]
        notes["skipped_examples"] = info["skipped_examples"]
    if info.get("unlabelled_reason"):
        notes["unlabelled_reason"] = info["unlabelled_reason"]
    if cfg.image_size is None:
        notes["default_size"] = DEFAULT_SIZE  # said in the data summary: folders have no one native size
    return notes


# --------------------------------------------------------------------------- loader (in memory)
def load_folder(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    """``folder:PATH`` decoded into memory (``data.cache=off``); see the module notes for the rules."""
    spec, root, files = open_root(path)
    size = cfg.image_size if cfg.image_size is not None else DEFAULT_SIZE
    images, labels, info = _decode_folder(root, spec, files, cfg, size, progress)
    class_names = info.get("class_names")
    return SourceData(
        train=ImageData(images=torch.from_numpy(images),
                        labels=None if labels is None else torch.from_numpy(labels)),
        class_names=class_names,
        num_classes=len(class_names) if class_names else None,
        notes={**folder_notes(info, len(files), cfg), "cache": "off"},
    )


def _decode_folder(root: Path, spec: str, files, cfg: DataConfig, size: int, progress: bool):
    rels = [f[0] for f in files]
    results = _decode_all(root, rels, size, progress)
    bad = [(rel, error_text(r)) for rel, r in zip(rels, results) if isinstance(r, BaseException)]
    check_bad(spec, rels, bad, cfg.skip_bad_images)
    good = [(rel, r) for rel, r in zip(rels, results) if not isinstance(r, BaseException)]

    # Channels: 3 if any image is colour, else 1; then the configured number, if any.
    native = 3 if any(colour for _, (_, colour) in good) else 1
    images = np.empty((len(good), native, size, size), dtype=np.uint8)
    for i, (_, (arr, _)) in enumerate(good):
        images[i] = arr.transpose(2, 0, 1)  # a grey image broadcasts to 3 channels
    if cfg.channels is not None and cfg.channels != native:
        images = convert_channels(torch.from_numpy(images), cfg.channels).numpy()
    labels, info = folder_labels(rels, [rel for rel, _ in good], [rel for rel, _ in bad])
    return images, labels, info

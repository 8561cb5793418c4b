"""``folder:PATH`` -- a folder of image files, decoded in parallel and cached.

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
* Cache: the decoded result is stored under the cache dir as one ``.npz`` named by a
  hash of the folder's absolute path, the options and the (relative path, size,
  mtime_ns) of every image file; any added, removed or touched file invalidates it.
  Older cache files for the same folder and options are removed when a new one is
  written. A corrupt cache file is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
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
CACHE_VERSION = 1
_ORIENTATION = 0x0112


def default_cache_dir() -> str:
    return os.environ.get("GANVAE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ganvae")


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


# --------------------------------------------------------------------------- cache
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _cache_names(root: Path, files, cfg: DataConfig, size: int) -> tuple[str, str]:
    opts = {"v": CACHE_VERSION, "path": str(root), "image_size": size, "channels": cfg.channels,
            "skip_bad_images": bool(cfg.skip_bad_images)}
    prefix = "folder-" + _digest(opts)[:16]
    key = _digest({"opts": opts, "files": [list(f) for f in files]})
    return prefix, key


def _read_cache(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(bytes(z["info"]).decode())
            if info.get("key") != key:
                return None
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else None
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != info["n"]:
            return None
        if labels is not None and labels.shape != (images.shape[0],):
            return None
        return images, labels, info
    except Exception:  # missing, truncated, not a zip, bad json...: rebuild
        return None


def _write_cache(cache_dir: Path, prefix: str, key: str, images: np.ndarray, labels, info: dict) -> str | None:
    """Atomically write the cache; failures are reported on stderr, never fatal."""
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        final = cache_dir / f"{prefix}-{key[:16]}.npz"
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".npz")
        arrays = {"images": images, "info": np.frombuffer(json.dumps({**info, "key": key}).encode(), np.uint8)}
        if labels is not None:
            arrays["labels"] = labels
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        tmp = None
        for old in cache_dir.glob(f"{prefix}-*.npz"):
            if old != final:
                try:
                    old.unlink()
                except OSError:
                    pass
        return str(final)
    except OSError as e:
        print(f"ganvae: could not write data cache in {cache_dir}: {e}", file=sys.stderr)
        return None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# --------------------------------------------------------------------------- loader
def load_folder(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
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
    size = cfg.image_size if cfg.image_size is not None else DEFAULT_SIZE

    cache_dir = Path(os.path.expanduser(cfg.cache_dir or default_cache_dir()))
    prefix, key = _cache_names(root, files, cfg, size)
    cache_file = cache_dir / f"{prefix}-{key[:16]}.npz"
    hit = _read_cache(cache_file, key) if cache_file.exists() else None
    if hit is not None:
        images, labels, info = hit
        notes = {"cache": "hit", "n_files": len(files)}
    else:
        images, labels, info = _decode_folder(root, spec, files, cfg, size, progress)
        written = _write_cache(cache_dir, prefix, key, images, labels, info)
        notes = {"cache": "written" if written else "failed", "n_files": len(files)}
    if info.get("n_skipped"):
        notes["n_skipped"] = info["n_skipped"]
        notes["skipped_examples"] = info["skipped_examples"]
    if info.get("unlabelled_reason"):
        notes["unlabelled_reason"] = info["unlabelled_reason"]
    if cfg.image_size is None:
        notes["default_size"] = DEFAULT_SIZE  # said in the data summary: folders have no one native size
    class_names = info.get("class_names")
    return SourceData(
        train=ImageData(
            images=torch.from_numpy(images),
            labels=None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        ),
        class_names=class_names,
        num_classes=len(class_names) if class_names else None,
        notes=notes,
    )


def _decode_folder(root: Path, spec: str, files, cfg: DataConfig, size: int, progress: bool):
    rels = [f[0] for f in files]
    results = _decode_all(root, rels, size, progress)
    bad = [(rel, r) for rel, r in zip(rels, results) if isinstance(r, BaseException)]
    if bad and not cfg.skip_bad_images:
        names = ", ".join(rel for rel, _ in bad[:3]) + (", ..." if len(bad) > 3 else "")
        first = " ".join(f"{type(bad[0][1]).__name__}: {bad[0][1]}".split())[:160]
        raise GanvaeError(
            f"{spec}: {len(bad)} of {len(rels)} files unreadable: {names} (first: {first}); "
            "pass --skip-bad-images to skip them"
        )
    good = [(rel, r) for rel, r in zip(rels, results) if not isinstance(r, BaseException)]
    if not good:
        raise GanvaeError(f"{spec}: none of the {len(rels)} image files is readable")
    if bad:
        print(f"ganvae: {spec}: skipped {len(bad)} of {len(rels)} unreadable files "
              f"({', '.join(rel for rel, _ in bad[:3])}{', ...' if len(bad) > 3 else ''})", file=sys.stderr)

    # Channels: 3 if any image is colour, else 1; then the configured number, if any.
    native = 3 if any(colour for _, (_, colour) in good) else 1
    images = np.empty((len(good), native, size, size), dtype=np.uint8)
    for i, (_, (arr, _)) in enumerate(good):
        images[i] = arr.transpose(2, 0, 1)  # a grey image broadcasts to 3 channels
    if cfg.channels is not None and cfg.channels != native:
        images = convert_channels(torch.from_numpy(images), cfg.channels).numpy()

    # Labels from the first path component, only when every image is in a subfolder.
    all_in_sub = all("/" in rel for rel in rels)
    info: dict = {"n": len(good), "n_skipped": len(bad), "skipped_examples": [rel for rel, _ in bad[:3]]}
    labels = None
    if all_in_sub:
        class_names = sorted({rel.split("/", 1)[0] for rel in rels})
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.array([index[rel.split("/", 1)[0]] for rel, _ in good], dtype=np.int64)
        info["class_names"] = class_names
    else:
        info["class_names"] = None
        if any("/" in rel for rel in rels):
            info["unlabelled_reason"] = "some images sit directly in the top folder, so subfolders are not used as labels"
    return images, labels, info

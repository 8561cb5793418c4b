"""``idx:PATH`` and ``npz:PATH`` through the on-disk cache (:mod:`ganvae.data.cache`), when they are large.

With ``data.cache=auto`` a source whose images take more than :data:`THRESHOLD` bytes as uint8 is
cached (smaller ones load into memory, as with ``data.cache=off``); with a ``data.cache`` path it
always is. The images are streamed from the file in chunks of rows, converted by the rules of
:func:`ganvae.data.transform.to_uint8` (over the whole array's value range, read in a first pass
when the dtype needs one), :func:`~ganvae.data.transform.to_nchw` and
:func:`~ganvae.data.transform.conform` (size and channels), and written to the cache: memory stays
bounded by a chunk. The source's own test split (``t10k-*`` files, ``test_images``) is cached beside
the training images. Sources that cannot be streamed (an npz array in Fortran order) load into
memory under ``auto`` and are refused with a data.cache path.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import GanvaeError
from .cache import IMAGES, LABELS, TEST, TRAIN, Key, allocate, cache_mode, digest, ensure, find, progress_log
from .config import DataConfig, SourceData
from .files import IDX_LABELS_MAGIC, _npz_labels, find_idx, load_idx, load_npz, read_idx
from .transform import conform, to_nchw, to_uint8

THRESHOLD = 1 << 30  # bytes of uint8 pixels (at the source's size) above which data.cache=auto caches idx/npz
CHUNK_BYTES = 64 << 20  # source bytes read per chunk
RESIZE = "bilinear-antialias-centre-crop"


def _read_exact(f, n: int, what: str) -> bytes:
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            raise GanvaeError(f"{what}: the file ends early (truncated?)")
        parts.append(b)
        got += len(b)
    return b"".join(parts) if len(parts) != 1 else parts[0]


class Part:
    """One image array in a file: ``shape`` (N, ...), ``dtype``, and ``open()`` -> a file at its first byte."""

    def __init__(self, what: str, shape: tuple, dtype: np.dtype, opener, files: list[Path]):
        self.what, self.shape, self.dtype, self.opener, self.files = what, tuple(shape), np.dtype(dtype), opener, files

    @property
    def n(self) -> int:
        return int(self.shape[0])

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape))

    def chunks(self):
        row = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        rows = max(1, CHUNK_BYTES // max(1, row))
        with self.opener() as f:
            for s in range(0, self.n, rows):
                k = min(rows, self.n - s)
                yield np.frombuffer(_read_exact(f, k * row, self.what), self.dtype).reshape(k, *self.shape[1:])

    def value_range(self) -> tuple[float, float] | None:
        """The whole array's (min, max) when :func:`to_uint8`'s rule depends on it, else None."""
        if self.dtype in (np.uint8, np.bool_, np.uint16):
            return None
        lo, hi = np.inf, -np.inf
        for c in self.chunks():
            if np.issubdtype(c.dtype, np.floating) and not np.isfinite(c).all():
                raise GanvaeError(f"{self.what}: pixel values contain NaN or infinity")
            lo, hi = min(lo, c.min()), max(hi, c.max())
        return float(lo), float(hi)


# --------------------------------------------------------------------------- idx
def _idx_part(path: Path, what: str) -> Part | None:
    try:
        opener = (lambda: gzip.open(path, "rb")) if path.suffix == ".gz" else (lambda: open(path, "rb"))
        with opener() as f:
            head = f.read(16)
        if len(head) < 16 or int.from_bytes(head[:4], "big") != 0x00000803:
            return None
        dims = [int(d) for d in np.frombuffer(head, ">u4", count=3, offset=4)]
        if path.suffix != ".gz" and path.stat().st_size != 16 + int(np.prod(dims)):
            return None
    except (OSError, EOFError, zlib.error):
        return None

    @contextlib.contextmanager
    def opened():
        with opener() as f:
            f.read(16)
            yield f

    return Part(what, tuple(dims), np.uint8, opened, [path])


def idx_parts(path: str) -> tuple[Part, Part | None, Path | None, Path | None] | None:
    """The train/test image parts and label files of ``idx:PATH``, or None when anything looks wrong
    (then the in-memory loader runs and says what)."""
    root = Path(os.path.abspath(os.path.expanduser(path)))
    if not root.is_dir():
        return None
    train_img, test_img = find_idx(root, "train", "images", 3), find_idx(root, "t10k", "images", 3)
    if train_img is None:
        return None
    train_lab = find_idx(root, "train", "labels", 1)
    test_lab = find_idx(root, "t10k", "labels", 1) if test_img is not None else None
    if test_img is not None and (train_lab is None) != (test_lab is None):
        return None
    train = _idx_part(train_img, f"idx:{path} [{train_img.name}]")
    test = _idx_part(test_img, f"idx:{path} [{test_img.name}]") if test_img is not None else None
    if train is None or train.n == 0 or (test_img is not None and (test is None or test.n == 0)):
        return None
    if test is not None and test.shape[1:] != train.shape[1:]:
        return None
    return train, test, train_lab, test_lab


def idx_source(path: str) -> "ArraySource | None":
    """``idx:PATH`` as an :class:`ArraySource`, or None when anything looks wrong (the in-memory loader says what)."""
    found = idx_parts(path)
    if found is None:
        return None
    train, test, train_lab, test_lab = found

    def labels(part: Part, lab: Path | None) -> np.ndarray | None:
        if lab is None:
            return None
        arr = read_idx(lab, IDX_LABELS_MAGIC)
        if len(arr) != part.n:
            raise GanvaeError(f"idx:{path}: {part.files[0].name} has {part.n} images but {lab.name} has "
                              f"{len(arr)} labels")
        return arr.astype(np.int64)

    files = [p for p in (train.files[0], test.files[0] if test else None, train_lab, test_lab) if p is not None]
    notes = {"files": [p.files[0].name for p in (train, test) if p is not None]}
    return ArraySource("idx", Path(os.path.abspath(os.path.expanduser(path))), files, train, test,
                       lambda: (labels(train, train_lab), labels(test, test_lab) if test else None), notes)


def load_idx_source(path: str, cfg: DataConfig, progress: bool = True, force: bool = False) -> SourceData:
    """``idx:PATH``: into memory, or through the cache when large, already cached, a ``data.cache`` path
    or ``force`` (``ganvae data prepare``)."""
    src = idx_source(path) if cache_mode(cfg) != "off" else None
    if src is None:
        if force or cache_mode(cfg) == "path":
            load_idx(path, cfg, progress)  # its own error, if any
            raise GanvaeError(f"idx:{path}: cannot be streamed into a cache; use --set data.cache=off")
        return load_idx(path, cfg, progress)
    got = src.cached(cfg, progress, force)
    return got if got is not None else load_idx(path, cfg, progress)


# --------------------------------------------------------------------------- npz
def _npy_header(f) -> tuple | None:
    """(shape, fortran_order, dtype) of the .npy stream ``f`` (left at the data), None for a format 3 header."""
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    fn = read.get(np.lib.format.read_magic(f))
    return None if fn is None else fn(f)


def _npz_part(p: Path, key: str) -> Part | None:
    """The stored array ``key`` of the npz ``p``, if it can be streamed (C order, no objects, 3/4 dims)."""
    with zipfile.ZipFile(p) as z:
        if f"{key}.npy" not in z.namelist():
            return None
        with z.open(f"{key}.npy") as f:
            header = _npy_header(f)
    if header is None:
        return None
    shape, fortran, dtype = header
    if fortran or dtype.hasobject or len(shape) not in (3, 4) or shape[0] == 0:
        return None

    @contextlib.contextmanager
    def opened():
        with zipfile.ZipFile(p) as z, z.open(f"{key}.npy") as f:
            _npy_header(f)
            yield f

    return Part(f"npz:{p} [{key}]", shape, dtype, opened, [p])


def npz_source(path: str) -> "ArraySource | None":
    """``npz:PATH`` as an :class:`ArraySource`, or None when it cannot be streamed (the in-memory loader runs)."""
    p = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
        train = _npz_part(p, "images")
        test = _npz_part(p, "test_images") if "test_images.npy" in names else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if train is None or ("test_images.npy" in names and test is None):
        return None
    if test is not None and (("labels.npy" in names) != ("test_labels.npy" in names)
                             or _nchw(test).shape[1:] != _nchw(train).shape[1:]):
        return None  # the in-memory loader says what differs

    def labels():
        with np.load(p, allow_pickle=False) as z:
            tr = _npz_labels(z["labels"], train.n, f"npz:{path} [labels]").numpy() if "labels" in z.files else None
            te = (_npz_labels(z["test_labels"], test.n, f"npz:{path} [test_labels]").numpy()
                  if test is not None and "test_labels" in z.files else None)
        return tr, te

    return ArraySource("npz", p, [p], train, test, labels, {})


def load_npz_source(path: str, cfg: DataConfig, progress: bool = True, force: bool = False) -> SourceData:
    """``npz:PATH``: into memory, or through the cache when large, already cached, a ``data.cache`` path
    or ``force`` (``ganvae data prepare``)."""
    src = npz_source(path) if cache_mode(cfg) != "off" else None
    if src is None:
        if force or cache_mode(cfg) == "path":
            load_npz(path, cfg, progress)  # its own errors first: a missing 'images' array, a bad shape
            raise GanvaeError(f"npz:{path}: its images cannot be streamed into a cache (stored in Fortran order or "
                              "a newer .npy format); save them with numpy's defaults or use --set data.cache=off")
        return load_npz(path, cfg, progress)
    got = src.cached(cfg, progress, force)
    return got if got is not None else load_npz(path, cfg, progress)


# --------------------------------------------------------------------------- both
def _nchw(part: Part) -> np.ndarray:
    """A zero-row stand-in of the part after :func:`to_nchw`: its (0, C, H, W) shape."""
    return to_nchw(np.zeros((1, *part.shape[1:]), dtype=np.uint8), part.what)[:0]


class ArraySource:
    """An idx/npz source read as arrays: its files, image parts, a label reader and notes."""

    def __init__(self, kind: str, path: Path, files: list[Path], train: Part, test: Part | None, read_labels,
                 notes: dict):
        self.kind, self.path, self.files, self.train, self.test = kind, path, files, train, test
        self.read_labels, self.notes = read_labels, notes
        self.native = _nchw(train).shape[1:]  # (C, H, W) before size and channels

    def _stats(self) -> list:
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in self.files]

    def key(self, cfg: DataConfig) -> Key:
        return Key(self.kind, f"{self.kind}:{self.path}",
                   {"image_size": cfg.image_size, "channels": cfg.channels, "resize": RESIZE}, digest(self._stats()))

    def shape(self, cfg: DataConfig) -> tuple[int, int, int, int]:
        """(N, C, S, S) of the cache: train and test images at the configured size and channels."""
        c0, h0, w0 = self.native
        size = cfg.image_size if cfg.image_size is not None else min(h0, w0)
        return (self.train.n + (self.test.n if self.test else 0), cfg.channels or c0, size, size)

    def cached(self, cfg: DataConfig, progress: bool, force: bool) -> SourceData | None:
        """From the cache (found, or built now when large, a data.cache path or ``force``); None: load into memory."""
        key = self.key(cfg)
        _, ready = find(cfg, key)
        if ready is not None:
            return ready.source_data("hit")
        pixels = self.train.pixels + (self.test.pixels if self.test else 0)
        if not (force or cache_mode(cfg) == "path" or pixels > THRESHOLD):
            return None
        cache, status = ensure(cfg, key, lambda tmp: self._fill(tmp, cfg, key), int(np.prod(self.shape(cfg))),
                               progress_log(progress))
        return cache.source_data(status)

    def _fill(self, tmp: Path, cfg: DataConfig, key: Key) -> dict:
        shape, (_, h0, w0) = self.shape(cfg), self.native
        allocate(tmp / IMAGES, int(np.prod(shape)))
        tr_lab, te_lab = self.read_labels()
        fd = os.open(tmp / IMAGES, os.O_WRONLY)
        try:
            row = 0
            for part in (self.train, self.test) if self.test is not None else (self.train,):
                row = _stream(part, fd, row, shape[2] if (shape[2], shape[2]) != (h0, w0) else None, cfg.channels,
                              shape)
        finally:
            os.close(fd)
        if digest(self._stats()) != key.fingerprint:
            raise GanvaeError(f"{self.kind}:{self.path}: the file changed while it was being cached; no cache was "
                              "kept: run again once it is stable")
        np.save(tmp / TRAIN, np.arange(self.train.n, dtype=np.int64))
        if self.test is not None:
            np.save(tmp / TEST, np.arange(self.train.n, shape[0], dtype=np.int64))
        if tr_lab is not None:
            np.save(tmp / LABELS, np.concatenate([tr_lab, te_lab]) if te_lab is not None else tr_lab)
        notes = dict(self.notes)
        if cfg.image_size is None and h0 != w0:
            notes["cropped_from"] = [int(h0), int(w0)]
        return {"shape": list(shape), "class_names": None, "num_classes": None, "n_files": len(self.files),
                "notes": notes}


def _stream(part: Part, fd: int, row: int, size: int | None, channels: int | None, shape: tuple) -> int:
    """Convert ``part`` chunk by chunk into rows ``row``.. of the image file ``fd``; returns the next row."""
    rng = part.value_range()
    row_bytes = int(np.prod(shape[1:]))
    for chunk in part.chunks():
        images = conform(torch.from_numpy(to_uint8(to_nchw(chunk, part.what), part.what, rng).copy()), size, channels)
        data = images.numpy().tobytes()
        pos = row * row_bytes
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        row += images.shape[0]
    return row

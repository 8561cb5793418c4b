"""The on-disk image cache: one uint8 file of decoded images, read a batch at a time.

A cache is a folder::

    images.u8     (N, C, H, W) uint8, raw, row-major: every decoded image of the source
    train.npy     int64: the rows that are the source's training images (a folder: every readable image)
    test.npy      int64: the rows of the source's own test split (idx/npz with one), else absent
    labels.npy    int64 (N,): the class of each row (-1 for an unreadable file's row), else absent
    meta.json     what was cached: source, options, fingerprint, shape, classes, notes
    complete      written last: a folder without it is not a cache (a killed build)

Where: ``data.cache`` = ``auto`` puts it under ``<cache_dir>/data/<kind>-<options>-<fingerprint>/``
(``cache_dir``: ``data.cache_dir``, else ``$GANVAE_CACHE``, else ``~/.cache/ganvae``); a path puts it
there (``ganvae data prepare SOURCE --out PATH`` then ``--set data.cache=PATH``). The fingerprint
digests the source's files (relative path, size, mtime in ns) and the options digest image size,
channels, resize rule and the format version, so a changed source or another image size never
reads a stale cache: under ``auto`` it is another folder (the stale one is removed after the new one
is complete); an explicit path made for other options is refused, and one made from an older
state of the same source is rebuilt in place.

A build holds an exclusive ``flock`` on ``.<name>.lock`` beside the folder (other processes, e.g. the
other ranks of a torchrun job, wait and then read the finished cache), writes into
``.tmp-<name>-<pid>/`` and renames it into place after ``complete`` is written. A killed build leaves
only a ``.tmp-*`` folder, which the next build of the same cache removes. A full disk (or an unwritable
cache folder) is one :class:`GanvaeError` line naming the folder, with the temporary folder removed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import GanvaeError
from ..util.files import atomic_write_text
from .cache_view import CachedImages
from .config import DataConfig, ImageData, SourceData

FORMAT = 1
IMAGES, TRAIN, TEST, LABELS, META, DONE = "images.u8", "train.npy", "test.npy", "labels.npy", "meta.json", "complete"
MODES = ("auto", "off")  # data.cache: these words, or a path


def default_cache_dir() -> str:
    """``$GANVAE_CACHE``, else ``~/.cache/ganvae``."""
    return os.environ.get("GANVAE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ganvae")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class Key:
    """What a cache is of: ``source`` (kind:absolute path), ``options`` and the ``fingerprint`` of the files."""

    def __init__(self, kind: str, source: str, options: dict, fingerprint: str):
        self.kind, self.source, self.options, self.fingerprint = kind, source, dict(options, format=FORMAT), fingerprint

    @property
    def prefix(self) -> str:
        return f"{self.kind}-{digest({'source': self.source, 'options': self.options})[:12]}-"

    @property
    def name(self) -> str:
        return self.prefix + self.fingerprint[:12]


def cache_mode(cfg: DataConfig) -> str:
    """``auto``, ``off`` or ``path`` (``cfg.cache`` names a cache folder)."""
    return cfg.cache if cfg.cache in MODES else "path"


def locate(cfg: DataConfig, key: Key) -> Path:
    """The cache folder for ``key`` under ``cfg``: the explicit path, or its place under the cache root."""
    if cache_mode(cfg) == "path":
        return Path(os.path.abspath(os.path.expanduser(cfg.cache)))
    root = Path(os.path.abspath(os.path.expanduser(cfg.cache_dir or default_cache_dir())))
    return root / "data" / key.name


# --------------------------------------------------------------------------- reading
class Cache:
    """A complete cache folder: its ``meta`` and views of its images."""

    def __init__(self, folder: Path, meta: dict):
        self.folder, self.meta = folder, meta
        self.shape = tuple(meta["shape"])

    def rows(self, which: str) -> np.ndarray | None:
        path = self.folder / (TRAIN if which == "train" else TEST)
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def part(self, rows: np.ndarray | None, labels: np.ndarray | None) -> ImageData | None:
        if rows is None:
            return None
        images = CachedImages(self.folder / IMAGES, self.shape, rows)
        return ImageData(images=images, labels=None if labels is None else torch.from_numpy(labels[rows]))

    def source_data(self, status: str) -> SourceData:
        """The cached source as a loader returns it; ``status`` (hit, written) goes into the notes."""
        labels = np.load(self.folder / LABELS, allow_pickle=False) if (self.folder / LABELS).is_file() else None
        names = self.meta.get("class_names")
        notes = {**self.meta.get("notes", {}), "cache": status, "cache_dir": str(self.folder)}
        return SourceData(train=self.part(self.rows("train"), labels), test=self.part(self.rows("test"), labels),
                          class_names=names, num_classes=self.meta.get("num_classes") or (len(names) if names else None),
                          factor_names=None, notes=notes)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))


def open_cache(folder: Path) -> Cache | None:
    """The cache in ``folder`` if it is complete and whole, else None (missing, killed build, damaged)."""
    try:
        if not (folder / DONE).is_file():
            return None
        meta = json.loads((folder / META).read_text())
        shape = tuple(int(s) for s in meta["shape"])
        if meta.get("format") != FORMAT or len(shape) != 4:
            return None
        if (folder / IMAGES).stat().st_size != int(np.prod(shape)) or not (folder / TRAIN).is_file():
            return None
        return Cache(folder, meta)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _differences(meta: dict, key: Key) -> list[str]:
    """How the cache described by ``meta`` differs from what ``key`` asks for (options and source only)."""
    out = []
    if meta.get("source") != key.source:
        out.append(f"source {meta.get('source')} (not {key.source})")
    theirs = meta.get("options", {})

    def say(v) -> str:
        return "the source's own" if v is None else str(v)

    for k in sorted(set(theirs) | set(key.options)):
        if theirs.get(k) != key.options.get(k):
            out.append(f"{k.replace('_', ' ')} {say(theirs.get(k))} (not {say(key.options.get(k))})")
    return out


def find(cfg: DataConfig, key: Key) -> tuple[Path, Cache | None]:
    """The cache folder for ``key`` and the usable cache in it (None: missing or stale: build it).

    An explicit ``data.cache`` path holding a cache made for another source or other options is refused.
    """
    folder = locate(cfg, key)
    cache = open_cache(folder)
    if cache is None:
        if cache_mode(cfg) == "path" and folder.is_file():
            raise GanvaeError(f"data.cache {folder}: is a file; expected a cache folder (ganvae data prepare --out)")
        check_replaceable(folder)
        return folder, None
    diff = _differences(cache.meta, key)
    if diff and cache_mode(cfg) == "path":
        raise GanvaeError(f"data.cache {folder}: this cache was made for {', '.join(diff)}; "
                          "point data.cache at another folder or rebuild it with ganvae data prepare")
    if diff or cache.meta.get("fingerprint") != key.fingerprint:
        return folder, None
    return folder, cache


def check_replaceable(folder: Path) -> None:
    """Refuse to build over a folder that holds anything but a cache's own files (someone's data)."""
    try:
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    except OSError as e:
        raise GanvaeError(f"data.cache {folder}: cannot read it ({e.strerror or e})") from None
    ours = {IMAGES, TRAIN, TEST, LABELS, META, DONE}
    strange = [n for n in names if n not in ours and not (n.startswith(".") and n.endswith(".tmp"))]
    if strange:
        raise GanvaeError(f"data.cache {folder}: the folder holds other files ({', '.join(sorted(strange)[:3])}"
                          f"{', ...' if len(strange) > 3 else ''}), not a ganvae data cache; choose a new or empty "
                          "folder for the cache")


# --------------------------------------------------------------------------- building
class _Lock:
    """An exclusive ``flock`` on ``path``, waited for (another process may be building the same cache)."""

    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path, self.log, self.fd = path, log, None

    def __enter__(self) -> "_Lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.log(f"waiting for another process building the data cache {self.path.name[1:-5]}")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def disk_error(folder: Path, e: OSError, need: int | None = None) -> GanvaeError:
    """One line for an ``OSError`` met while writing the cache in ``folder``."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{human_bytes(shutil.disk_usage(folder.parent if not folder.exists() else folder).free)} free"
        except OSError:
            free = "no space left"
        needs = f", the cache needs {human_bytes(need)}" if need else ""
        return GanvaeError(f"data cache {folder}: the disk is full ({free}{needs}); free some space, set "
                           "data.cache_dir (or $GANVAE_CACHE) to another disk, or --set data.cache=off to decode "
                           "into memory")
    what = e.strerror or str(e)
    return GanvaeError(f"data cache {folder}: cannot write there ({what}); set data.cache_dir (or $GANVAE_CACHE) to "
                       "a writable folder, or --set data.cache=off to decode into memory")


def allocate(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` reserved on disk: a disk too small fails here, before any decoding."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < nbytes:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if nbytes and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                os.ftruncate(fd, nbytes)  # a file system without fallocate: a sparse file
        else:
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _finish(tmp: Path, meta: dict) -> None:
    """Flush the images, write meta.json and, last, the ``complete`` marker."""
    fd = os.open(tmp / IMAGES, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    atomic_write_text(tmp / META, json.dumps(meta, indent=1) + "\n")
    atomic_write_text(tmp / DONE, "ok\n")


def build(folder: Path, key: Key, fill: Callable[[Path], dict], *, log: Callable[[str], None] = print,
          need: int | None = None) -> tuple[Cache, str]:
    """Build the cache of ``key`` in ``folder`` (unless a complete, current one appears meanwhile).

    ``fill(tmp)`` writes ``images.u8``, ``train.npy`` (and ``test.npy``, ``labels.npy``) into the
    temporary folder ``tmp`` and returns the meta entries ``shape``, ``class_names``, ``num_classes``,
    ``notes``, ``n_files``. ``need``: the expected size in bytes, for the full-disk message. Returns the cache
    and ``written``, or ``hit`` when another process finished it while this one waited for the lock.
    """
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = _Lock(parent / f".{folder.name}.lock", log)
        lock.__enter__()
    except OSError as e:
        raise disk_error(folder, e, need) from None
    try:
        ready = open_cache(folder)
        if ready is not None and not _differences(ready.meta, key) and ready.meta.get("fingerprint") == key.fingerprint:
            return ready, "hit"  # another process built it while we waited
        for old in parent.glob(f".tmp-{folder.name}-*"):  # killed builds (we hold the lock: nobody is writing)
            _rmtree(old)
        tmp = parent / f".tmp-{folder.name}-{os.getpid()}"
        try:
            tmp.mkdir()
            info = fill(tmp)
            meta = {"format": FORMAT, "source": key.source, "options": key.options, "fingerprint": key.fingerprint,
                    **info}
            _finish(tmp, meta)
            if folder.exists():  # a stale cache at an explicit path: replaced
                check_replaceable(folder)
                trash = parent / f".tmp-{folder.name}-old-{os.getpid()}"
                os.replace(folder, trash)
                _rmtree(trash)
            os.replace(tmp, folder)
            _fsync_dir(parent)
        except OSError as e:
            _rmtree(tmp)
            raise disk_error(folder, e, need) from None
        except BaseException:
            _rmtree(tmp)
            raise
    finally:
        lock.__exit__()
    cache = open_cache(folder)
    if cache is None:  # pragma: no cover - written and renamed just above
        raise GanvaeError(f"data cache {folder}: could not be read back after writing it")
    return cache, "written"


def ensure(cfg: DataConfig, key: Key, fill: Callable[[Path], dict], need: int, log) -> tuple[Cache, str]:
    """The current cache of ``key`` (``hit``), else a new one built with ``fill`` (``written``)."""
    folder, cache = find(cfg, key)
    if cache is not None:
        return cache, "hit"
    cache, status = build(folder, key, fill, log=log, need=need)
    if cache_mode(cfg) == "auto":
        remove_stale(folder, key)
    return cache, status


def remove_stale(folder: Path, key: Key) -> None:
    """Under ``auto``: remove the caches of the same source and options made from older states of it."""
    for old in folder.parent.glob(key.prefix + "*"):
        if old != folder and old.is_dir():
            _rmtree(old)
            try:
                (old.parent / f".{old.name}.lock").unlink()
            except OSError:
                pass


def progress_log(progress: bool) -> Callable[[str], None]:
    """Where cache notes go: stderr (stdout may be a --dry-run YAML), or nowhere."""
    return (lambda s: print(f"ganvae: {s}", file=sys.stderr)) if progress else (lambda s: None)

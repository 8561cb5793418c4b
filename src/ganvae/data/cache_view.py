"""``CachedImages``: the rows of an image cache file, read from disk when asked for.

A stand-in for a uint8 ``(N, C, H, W)`` image tensor whose pixels live in a cache file
(:mod:`ganvae.data.cache`): it holds the file name and which rows of the file it is (``rows``,
int64), never the pixels. What the data pipeline does with images works without reading them all:

* ``take(index)`` (what :meth:`ImageData.subset` uses for splits and ``data.limit``): a new view;
* ``read(index)`` / ``images[index]`` with a 1-d index: those rows only, as a new array/tensor;
* ``shape``, ``len``, ``dtype``, ``ndim``, ``device``.

Anything else (a torch function such as ``torch.cat`` or ``torch.equal``, a tensor method such
as ``.float()``, iteration, ``numpy.asarray``) first reads the rows into an ordinary tensor, so
code written for tensors keeps working; on a large data set that costs the memory the cache
saves, so the training path (:class:`ganvae.training.batches.BatchStream`) reads batches only.

Reads use ``os.preadv`` into the output buffer (the OS page cache does the caching; nothing is
memory-mapped, so a process's resident memory does not grow with the data set), rows sorted
and consecutive rows read in one call.
"""

from __future__ import annotations

import os

import numpy as np
import torch

_CHUNK = 4096  # rows per read when a whole view is read (iteration, materialising)


def _pread_into(fd: int, buf: memoryview, pos: int, path: str) -> None:
    """Fill ``buf`` from ``fd`` at byte ``pos``; a short file is an error naming ``path``."""
    got = 0
    while got < len(buf):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [buf[got:]], pos + got)
        else:  # pragma: no cover - platforms without preadv (Windows, old macOS)
            data = os.pread(fd, len(buf) - got, pos + got)
            buf[got:got + len(data)] = data
            n = len(data)
        if n == 0:
            raise OSError(f"{path}: cache file is shorter than its header says (truncated?)")
        got += n


class _File:
    """The image file, opened once and shared by a view and the views taken from it (closed with the last).

    Opened on creation, so a cache that is replaced or removed later (a rebuilt stale cache) stays readable
    to the views made before; a forked process shares the descriptor (reads are positional), a pickled copy
    opens the file again by name.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY)

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __getstate__(self) -> dict:
        return {"path": self.path, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


class CachedImages:
    """uint8 ``(N, C, H, W)`` images: rows ``rows`` of the raw image file ``path`` of ``(N_all, C, H, W)``."""

    dtype = torch.uint8
    ndim = 4
    device = torch.device("cpu")
    is_cuda = False

    def __init__(self, path: str | os.PathLike, full_shape: tuple[int, int, int, int], rows: np.ndarray | None = None):
        self.path = str(path)
        self.full_shape = tuple(int(s) for s in full_shape)
        self.rows = (np.arange(self.full_shape[0], dtype=np.int64) if rows is None
                     else np.ascontiguousarray(rows, dtype=np.int64))
        self.row_bytes = int(np.prod(self.full_shape[1:]))
        self._file = _File(self.path)  # opened now: a cache replaced later stays readable to this view

    # ------------------------------------------------------------------ what a tensor would say
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.full_shape[1:]))

    def dim(self) -> int:
        return 4

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return len(self.rows)

    def contiguous(self) -> "CachedImages":
        return self

    def to(self, *args, **kwargs):
        """On the CPU without a dtype change: this view; else the rows read into a tensor first."""
        target = args[0] if args else kwargs.get("device", kwargs.get("dtype"))
        if not kwargs.get("dtype") and target is not None and not isinstance(target, torch.dtype) \
                and torch.device(target).type == "cpu":
            return self
        return self.materialize().to(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CachedImages({self.path!r}, rows={len(self.rows)} of {self.full_shape[0]}, {tuple(self.shape)})"

    # ------------------------------------------------------------------ views and reads
    def take(self, index) -> "CachedImages":
        """The view of these images at ``index`` (positions in this view): no pixels are read."""
        view = CachedImages.__new__(CachedImages)
        view.__dict__.update(self.__dict__, rows=self.rows[_as_index(index)])  # the same open file
        return view

    def read_file_rows(self, file_rows: np.ndarray) -> np.ndarray:
        """Rows of the *file* (not of this view), in the order given: ``(k, C, H, W)`` uint8."""
        file_rows = np.asarray(file_rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(file_rows), self.row_bytes), dtype=np.uint8)
        if len(file_rows) == 0:
            return out.reshape(0, *self.full_shape[1:])
        if len(file_rows) > 1 and not np.all(np.diff(file_rows) > 0):  # read sorted and unique, then reorder
            uniq, inverse = np.unique(file_rows, return_inverse=True)
            return self.read_file_rows(uniq)[inverse.reshape(-1)]
        if file_rows[0] < 0 or file_rows[-1] >= self.full_shape[0]:
            raise IndexError(f"row {int(file_rows.min())}..{int(file_rows.max())} out of range for "
                             f"{self.full_shape[0]} cached images")
        fd = self._file.fd()
        breaks = np.flatnonzero(np.diff(file_rows) != 1) + 1  # runs of consecutive rows: one read each
        for s, e in zip([0, *breaks.tolist()], [*breaks.tolist(), len(file_rows)]):
            _pread_into(fd, memoryview(out[s:e]).cast("B"), int(file_rows[s]) * self.row_bytes, self.path)
        return out.reshape(len(file_rows), *self.full_shape[1:])

    def read(self, index) -> np.ndarray:
        """The images at ``index`` (positions in this view), in that order: a new ``(k, C, H, W)`` array."""
        return self.read_file_rows(self.rows[_as_index(index)])

    def materialize(self) -> torch.Tensor:
        """Every image of this view as an ordinary uint8 tensor (the memory of the whole view)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        for s in range(0, len(self), _CHUNK):
            out[s:s + _CHUNK] = torch.from_numpy(self.read(np.arange(s, min(s + _CHUNK, len(self)))))
        return out

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if key is Ellipsis or key is None:
            return self.materialize()[(key, *rest)]
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.dim() == 0):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of bounds for {len(self)} images")
            t = torch.from_numpy(self.read(np.array([i % len(self)])))[0]
        else:
            t = torch.from_numpy(self.read(key))
            rest = (slice(None), *rest) if rest else ()
        return t[rest] if rest else t

    def __iter__(self):
        for s in range(0, len(self), _CHUNK):
            yield from torch.from_numpy(self.read(np.arange(s, min(s + _CHUNK, len(self)))))

    def __array__(self, dtype=None, copy=None):
        a = self.materialize().numpy()
        return a if dtype is None else a.astype(dtype)

    # ------------------------------------------------------------------ everything else: as a tensor
    # (operators such as ``==`` and ``+`` too: they are set on the class below)
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_materialized(args), **_materialized(kwargs or {}))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)


def _operator(name: str):
    def op(self, *args):
        return getattr(self.materialize(), name)(*_materialized(args))
    op.__name__ = name
    return op


for _name in ("eq", "ne", "lt", "le", "gt", "ge", "add", "radd", "sub", "rsub", "mul", "rmul", "truediv",
              "rtruediv", "floordiv", "mod", "pow", "and", "or", "xor", "neg", "invert", "abs"):
    setattr(CachedImages, f"__{_name}__", _operator(f"__{_name}__"))
CachedImages.__hash__ = None  # compared like a tensor (elementwise), so not hashable


def _as_index(index) -> np.ndarray | slice:
    """A torch/numpy/list index or a slice, as what numpy indexes ``rows`` with."""
    if isinstance(index, slice):
        return index
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    a = np.asarray(index)
    if a.dtype == np.bool_:
        return a
    return a.astype(np.int64, copy=False)


def _materialized(obj):
    if isinstance(obj, CachedImages):
        return obj.materialize()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialized(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _materialized(v) for k, v in obj.items()}
    return obj


def is_cached(images) -> bool:
    """Whether ``images`` is a :class:`CachedImages` view (not an in-memory tensor)."""
    return isinstance(images, CachedImages)

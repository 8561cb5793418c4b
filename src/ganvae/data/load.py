"""``load_data``: source -> split -> limit -> size/channels; and ``describe``."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import GanvaeError
from .config import DataConfig, DataSplits, ImageData
from .pairs import fit_partners, load_domain_b, pair_meta
from .sources import GENERATED, resolve
from .transform import conform


def held_out(n: int, holdout: float) -> int:
    """How many of ``n`` images :func:`seeded_split` holds out: ``round(N * holdout)``, at least 1 when
    holdout > 0 and N >= 2; train always keeps at least 1."""
    n_test = int(round(n * holdout))
    if holdout > 0 and n >= 2:
        n_test = max(1, n_test)
    return min(n_test, n - 1)


def seeded_split(data: ImageData, holdout: float, seed: int) -> tuple[ImageData, ImageData]:
    """Shuffle with ``seed`` and hold out :func:`held_out` images."""
    n = len(data)
    n_test = held_out(n, holdout)
    perm = torch.from_numpy(np.random.default_rng([seed, 0x5B117]).permutation(n))
    return data.subset(perm[n_test:]), data.subset(perm[:n_test])


def limit_index(n: int, limit: int, seed: int) -> np.ndarray:
    """The sorted indices of the ``limit`` images (of ``n``) that ``data.limit`` keeps: a seeded draw."""
    return np.sort(np.random.default_rng([seed, 0x11A17]).permutation(n)[:limit])


def limit_subset(data: ImageData, limit: int, seed: int) -> ImageData:
    """At most ``limit`` images: a seeded random subset, kept in its original order."""
    if limit >= len(data):
        return data
    return data.subset(torch.from_numpy(limit_index(len(data), limit, seed)))


def keep_classes(data: ImageData, classes: list[int], source: str) -> ImageData:
    """The images of ``classes`` only (``data.classes``: the one-class protocol's training split)."""
    if data.labels is None:
        raise GanvaeError(f"data.classes: data source {source!r} has no class labels; the one-class protocol "
                          "needs a labelled source (class subfolders, idx or npz labels, mnist, digits, shapes)")
    keep = torch.isin(data.labels, torch.as_tensor(list(classes), dtype=data.labels.dtype))
    if not bool(keep.any()):
        raise GanvaeError(f"data.classes {list(classes)}: no training image of these classes in {source!r} "
                          f"(its labels run from {int(data.labels.min())} to {int(data.labels.max())})")
    return data.subset(torch.nonzero(keep).flatten())


def load_data(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Load ``cfg.source`` and return train/test splits plus metadata.

    Raises :class:`GanvaeError` for anything the user can fix.
    """
    cfg.validate()
    source = cfg.source.strip()
    loader, kind = resolve(source)
    if cfg.n is not None and kind not in GENERATED:
        raise GanvaeError(f"n applies only to generated sources ({', '.join(sorted(GENERATED))}), not {source!r}")
    raw = loader(cfg, progress)

    if raw.test is not None:
        train, test, split = raw.train, raw.test, "source"
    else:
        if len(raw.train) < 2 and cfg.holdout > 0:
            raise GanvaeError(f"data source {source!r}: only {len(raw.train)} image, too few to split")
        train, test, split = *seeded_split(raw.train, cfg.holdout, cfg.split_seed), "seeded"
    n_all = len(train)  # before data.classes (a generated source is rebuilt from its full size)
    if cfg.classes is not None:
        train = keep_classes(train, cfg.classes, source)
    if cfg.limit is not None:
        train = limit_subset(train, cfg.limit, cfg.split_seed)

    # Output is always square: non-square native images without an image_size are
    # centre-cropped to their shorter side (noted in meta as "cropped_from").
    h0, w0 = train.images.shape[2:]
    size = cfg.image_size if cfg.image_size is not None else (min(h0, w0) if h0 != w0 else None)

    def fit(d: ImageData) -> ImageData:
        c, h, w = d.images.shape[1:]
        if (cfg.channels in (None, c)) and h == w and size in (None, h):
            return d  # already right (a cache holds its images at the configured size and channels)
        imgs = conform(d.images, size, cfg.channels)
        return d if imgs is d.images else ImageData(images=imgs, labels=d.labels, factors=d.factors, b=d.b)

    train, test = (fit_partners(fit(d), cfg.image_size is not None, source) for d in (train, test))
    source_b = cfg.source_b or raw.notes.get("source_b")  # translation: unpaired domain B (data/pairs.py)
    b = load_domain_b(cfg, source_b, int(train.images.shape[-1]), train, load_data) if source_b else None

    num_classes = raw.num_classes
    if num_classes is None and raw.class_names:
        num_classes = len(raw.class_names)
    if num_classes is None and train.labels is not None:
        hi = [int(d.labels.max()) for d in (train, test) if d.labels is not None and len(d)]
        num_classes = max(hi) + 1 if hi else None
    c, h, _ = train.images.shape[1:]
    meta = {
        "source": source,
        "channels": int(c),
        "image_size": int(h),
        "num_classes": num_classes,
        "class_names": list(raw.class_names) if raw.class_names else None,
        "factor_names": list(raw.factor_names) if raw.factor_names else None,
        "split": split,
        "holdout": float(cfg.holdout),
        "split_seed": int(cfg.split_seed),
        "n_train": len(train),
        "n_test": len(test),
    }
    if cfg.limit is not None:
        meta["limit"] = int(cfg.limit)
    if cfg.classes is not None:
        meta["classes"] = [int(c) for c in cfg.classes]
        meta["n_train_all_classes"] = n_all
    if cfg.image_size is None and h0 != w0:
        meta["cropped_from"] = [int(h0), int(w0)]
    for k, v in raw.notes.items():
        meta.setdefault(k, v)
    meta.update(pair_meta(train, b))
    return DataSplits(train=train, test=test, meta=meta, b=b)


def describe(splits: DataSplits) -> str:
    """A few lines summarising the data, for ``--dry-run``."""
    m = splits.meta
    size = f"{m['image_size']}x{m['image_size']}"
    split = "source split" if m["split"] == "source" else f"seeded split, holdout {m['holdout']:g}, seed {m['split_seed']}"
    lines = [
        f"data: {m['source']}  ({split})",
        f"  images: {m['channels']}x{size} uint8; train {m['n_train']}, test {m['n_test']}",
    ]
    if m.get("num_classes"):
        names = m.get("class_names")
        shown = f": {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ""
        lines.append(f"  labels: {m['num_classes']} classes{shown}")
    else:
        lines.append("  labels: none")
    if m.get("factor_names"):
        lines.append(f"  factors: {', '.join(m['factor_names'])}")
    if m.get("channels_b") is not None:  # translation data (data/pairs.py)
        lines.append(f"  domain B: {m['channels_b']} channel(s), " + ("paired with each image" if m.get("paired") else
                     f"unpaired, {m.get('source_b')}: train {m['b']['n_train']}, test {m['b']['n_test']}"))
    extras = []
    if m.get("limit") is not None:
        extras.append(f"train limited to {m['limit']}")
    if m.get("classes") is not None:
        extras.append(f"train keeps only class(es) {', '.join(map(str, m['classes']))} (one-class protocol)")
    if m.get("cropped_from"):
        extras.append("centre-cropped from {}x{}".format(*m["cropped_from"]))
    if m.get("n_skipped"):
        extras.append(f"{m['n_skipped']} unreadable files skipped")
    if m.get("cache"):
        extras.append(f"cache {m['cache']}" + (f" ({m['cache_dir']})" if m.get("cache_dir") else ""))
    if m.get("default_size"):
        extras.append(f"images resized to the folder default {m['default_size']} px (--image-size S to choose)")
    if extras:
        lines.append("  notes: " + "; ".join(extras))
    return "\n".join(lines)


def members_and_heldout(cfg: DataConfig) -> dict:
    """The images a run with data config ``cfg`` trained on (members) and images it never saw (held out).

    Members: the training split after ``data.limit``. Held out: the test split (the source's own, or the
    seeded hold-out), plus the training-split images ``data.limit`` left out. Returns ``train``,
    ``heldout`` (:class:`ImageData`), ``meta``, ``split`` (a sentence) and ``limit_left_out`` (a count).
    """
    splits = load_data(cfg, progress=False)
    train, held, meta = splits.train, splits.test, splits.meta
    split = (f"{meta['split']} split of {meta['source']}" + ("" if meta["split"] == "source" else
             f" (holdout {meta['holdout']:g}, split_seed {meta['split_seed']})"))
    extra = 0
    if cfg.limit is not None:
        full = load_data(dataclasses.replace(cfg, limit=None), progress=False).train
        if cfg.limit < len(full):
            keep = limit_index(len(full), cfg.limit, cfg.split_seed)
            if torch.equal(full.images[torch.from_numpy(keep)], train.images):
                left = full.subset(torch.from_numpy(np.setdiff1d(np.arange(len(full)), keep)))
                labels = None if held.labels is None or left.labels is None else torch.cat([held.labels, left.labels])
                held = ImageData(torch.cat([held.images, left.images]), labels)
                extra = len(left)
                split += f"; plus the {extra} training-split images left out by data.limit={cfg.limit}"
    return {"train": train, "heldout": held, "meta": meta, "split": split, "limit_left_out": extra}


def config_from_meta(meta: dict) -> DataConfig:
    """The data config that reloads the data a model's export describes (its ``data`` meta)."""
    return DataConfig(source=meta["source"], holdout=meta.get("holdout", 0.1), split_seed=meta.get("split_seed", 0),
                      limit=meta.get("limit"), image_size=meta.get("image_size"), channels=meta.get("channels"),
                      n=(meta.get("n_train_all_classes", meta["n_train"]) + meta["n_test"]) if meta["source"] in GENERATED else None,
                      classes=meta.get("classes"), source_b=meta.get("source_b"))

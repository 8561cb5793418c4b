"""Built-in sources: sizes, dtypes, ranges, splits; shapes determinism and factors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ganvae.data import SOURCES, DataConfig, describe, load_data


def _check_common(d, channels, size):
    for part in (d.train, d.test):
        assert part.images.dtype == torch.uint8
        assert part.images.is_contiguous()
        assert part.images.shape[1:] == (channels, size, size)
    json.dumps(d.meta)  # must be JSON-serialisable
    assert d.meta["n_train"] == len(d.train) and d.meta["n_test"] == len(d.test)
    assert d.meta["channels"] == channels and d.meta["image_size"] == size


def test_registered_names():
    assert set(SOURCES.names()) >= {"mnist", "mnist-5k", "digits", "faces", "shapes"}


def test_mnist_full_source_split():
    d = load_data(DataConfig(source="mnist"), progress=False)
    _check_common(d, 1, 28)
    assert len(d.train) == 60000 and len(d.test) == 10000
    assert d.meta["split"] == "source" and d.meta["num_classes"] == 10
    for part in (d.train, d.test):
        assert part.labels.dtype == torch.int64
        assert part.labels.min() == 0 and part.labels.max() == 9
        assert torch.bincount(part.labels, minlength=10).min() > 800
    assert d.train.images.max() == 255 and d.train.images.min() == 0
    # real digits: mostly dark background, a bright stroke
    assert 20 < d.train.images[:100].float().mean() < 60


def test_mnist_resize_channels_limit():
    d = load_data(DataConfig(source="mnist", image_size=16, channels=3, limit=500, split_seed=3), progress=False)
    _check_common(d, 3, 16)
    assert len(d.train) == 500 and len(d.test) == 10000
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 1])
    again = load_data(DataConfig(source="mnist", limit=500, split_seed=3), progress=False)
    assert torch.equal(again.train.labels, d.train.labels)  # seeded subset


def test_mnist_5k_shuffled_seeded_split():
    d = load_data(DataConfig(source="mnist-5k"), progress=False)
    _check_common(d, 1, 28)
    assert len(d.train) == 4500 and len(d.test) == 500
    assert d.meta["split"] == "seeded"
    # the raw file is sorted by label; after the shuffle every class shows up early and in the test set
    assert set(d.train.labels[:200].tolist()) == set(range(10))
    assert set(d.test.labels.tolist()) == set(range(10))
    assert d.train.images.max() == 255


def test_digits():
    d = load_data(DataConfig(source="digits", holdout=0.2), progress=False)
    _check_common(d, 1, 8)
    assert len(d.train) + len(d.test) == 1797 and len(d.test) == round(1797 * 0.2)
    assert d.train.images.max() == 255 and d.meta["num_classes"] == 10
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(d.train.images).tolist()) <= allowed


def test_faces():
    d = load_data(DataConfig(source="faces"), progress=False)
    _check_common(d, 1, 25)
    assert len(d.train) + len(d.test) == 100
    assert d.train.labels is None and d.meta["num_classes"] is None
    assert d.train.images.float().std() > 20  # real pictures, not blank


def test_shapes_deterministic_and_factors():
    cfg = DataConfig(source="shapes", n=300, holdout=0.2, split_seed=7)
    a, b = load_data(cfg, progress=False), load_data(cfg, progress=False)
    _check_common(a, 3, 32)
    assert len(a.train) == 240 and len(a.test) == 60
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.factors, b.train.factors)
    c = load_data(DataConfig(source="shapes", n=300, holdout=0.2, split_seed=8), progress=False)
    assert not torch.equal(a.train.factors, c.train.factors)
    assert not torch.equal(a.train.images, c.train.images)

    names = a.meta["factor_names"]
    assert names == ["shape", "scale", "rotation", "x", "y", "hue"]
    f = torch.cat([a.train.factors, a.test.factors])
    assert f.dtype == torch.float32 and f.shape == (300, 6)
    col = {n: f[:, i] for i, n in enumerate(names)}
    assert set(col["shape"].tolist()) == {0.0, 1.0, 2.0}
    assert torch.equal(a.train.labels, a.train.factors[:, 0].long())
    assert col["scale"].min() >= 0.5 and col["scale"].max() <= 1.0
    assert col["rotation"].min() >= 0 and col["rotation"].max() < 2 * math.pi
    for k in ("x", "y", "hue"):
        assert col[k].min() >= 0 and col[k].max() <= 1
    assert a.meta["class_names"] == ["square", "ellipse", "triangle"] and a.meta["num_classes"] == 3


def test_shapes_render_content():
    d = load_data(DataConfig(source="shapes", n=200, image_size=16, holdout=0.0), progress=False)
    _check_common(d, 3, 16)
    assert len(d.test) == 0
    img = d.train.images.float()
    # a lit shape on black, with anti-aliased edges (intermediate values exist)
    lit = (img.amax(1) > 0).float().mean((1, 2))
    assert lit.min() > 0.02 and lit.max() < 0.8
    assert ((img > 10) & (img < 245)).any()
    # larger scale -> more lit pixels (same shape kind)
    f = d.train.factors
    sq = f[:, 0] == 0
    big, small = lit[sq & (f[:, 1] > 0.9)].mean(), lit[sq & (f[:, 1] < 0.6)].mean()
    assert big > 1.5 * small
    # the shape sits where the x factor says: brightness centroid moves right as x grows
    cols = img.sum((1, 2))
    cx = (cols * torch.arange(16.0)).sum(1) / cols.sum(1)
    assert torch.corrcoef(torch.stack([cx, f[:, 3]]))[0, 1] > 0.8


def test_describe_mentions_essentials():
    d = load_data(DataConfig(source="shapes", n=50), progress=False)
    text = describe(d)
    assert "shapes" in text and "3x32x32" in text and "factors: shape" in text
    assert len(text.splitlines()) <= 8


@pytest.mark.parametrize("name", ["digits", "faces", "shapes"])
def test_holdout_zero_gives_empty_test(name):
    d = load_data(DataConfig(source=name, holdout=0.0, n=20 if name == "shapes" else None), progress=False)
    assert len(d.test) == 0 and d.test.images.shape[1:] == d.train.images.shape[1:]

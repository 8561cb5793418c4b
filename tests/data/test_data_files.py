"""idx:PATH and npz:PATH sources."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = 0x0800 | arr.ndim
    data = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx(root, n_train=30, n_test=10, gz=False, dotted=False, test=True, labels=True):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {"train": n_train, "t10k": n_test} if test else {"train": n_train}
    out = {}
    for prefix, n in parts.items():
        images = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        labs = rng.integers(0, 10, n, dtype=np.uint8)
        sep = "." if dotted else "-"
        write_idx(root / f"{prefix}-images{sep}idx3-ubyte", images, gz)
        if labels:
            write_idx(root / f"{prefix}-labels{sep}idx1-ubyte", labs, gz)
        out[prefix] = (images, labs)
    return out


def idx(root, **kw):
    return load_data(DataConfig(source=f"idx:{root}", **kw), progress=False)


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_round_trip(tmp_path, gz, dotted):
    truth = make_idx(tmp_path / "d", gz=gz, dotted=dotted)
    d = idx(tmp_path / "d")
    assert d.meta["split"] == "source" and len(d.train) == 30 and len(d.test) == 10
    # 6x5 native images come back centre-cropped to 5x5 (rows 0..4 of 6: top offset 0)
    assert torch.equal(d.train.images[:, 0], torch.from_numpy(truth["train"][0][:, 0:5, :]))
    assert torch.equal(d.test.images[:, 0], torch.from_numpy(truth["t10k"][0][:, 0:5, :]))
    assert torch.equal(d.test.labels, torch.from_numpy(truth["t10k"][1]).long())
    assert d.meta["image_size"] == 5 and d.meta["cropped_from"] == [6, 5]
    json.dumps(d.meta)


def test_idx_without_test_or_labels_is_seeded(tmp_path):
    make_idx(tmp_path / "d", n_train=40, test=False, labels=False)
    d = idx(tmp_path / "d", holdout=0.25, image_size=8, channels=3)
    assert d.meta["split"] == "seeded" and len(d.train) == 30 and len(d.test) == 10
    assert d.train.labels is None and d.train.images.shape[1:] == (3, 8, 8)


def test_idx_size_mismatch(tmp_path):
    make_idx(tmp_path / "d")
    p = tmp_path / "d" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(GanvaeError) as e:
        idx(tmp_path / "d")
    msg = str(e.value)
    assert str(p) in msg and "30x6x5" in msg and str(16 + 900) in msg and str(16 + 900 - 7) in msg


def test_idx_wrong_magic_and_count_mismatch(tmp_path):
    make_idx(tmp_path / "d")
    lab = tmp_path / "d" / "train-labels-idx1-ubyte"
    good = lab.read_bytes()
    lab.write_bytes(b"\x00\x00\x08\x03" + good[4:])
    with pytest.raises(GanvaeError, match="wrong IDX magic") as e:
        idx(tmp_path / "d")
    assert str(lab) in str(e.value)
    write_idx(lab, np.zeros(29, np.uint8))
    with pytest.raises(GanvaeError, match="30 images but train-labels-idx1-ubyte has 29 labels") as e:
        idx(tmp_path / "d")
    assert str(tmp_path / "d") in str(e.value)


def test_idx_bad_paths(tmp_path):
    with pytest.raises(GanvaeError, match="no such folder"):
        idx(tmp_path / "missing")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(GanvaeError, match="is a file") as e:
        idx(f)
    assert str(f) in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanvaeError, match="train-images-idx3-ubyte") as e:
        idx(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    bad_gz = tmp_path / "gz"
    bad_gz.mkdir()
    (bad_gz / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(GanvaeError, match="cannot read IDX file"):
        idx(bad_gz)


# --------------------------------------------------------------------------- npz
def npz(path, **kw):
    return load_data(DataConfig(source=f"npz:{path}", **kw), progress=False)


@pytest.mark.parametrize(
    "shape,channels",
    [((12, 7, 9), 1), ((12, 7, 9, 3), 3), ((12, 3, 7, 9), 3), ((12, 7, 9, 1), 1), ((12, 1, 7, 9), 1)],
)
def test_npz_layouts(tmp_path, shape, channels):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(12) % 3)
    d = npz(tmp_path / "a.npz", holdout=0.0, image_size=None)
    assert d.train.images.shape == (12, channels, 7, 7)  # centre square of 7x9
    # same pixels, whatever the layout: compare with the centre crop of the (N,C,H,W) truth
    nchw = images[:, None] if images.ndim == 3 else (images if shape[1] in (1, 3) else images.transpose(0, 3, 1, 2))
    truth = torch.from_numpy(np.ascontiguousarray(nchw[..., 1:8]))
    # holdout 0 still permutes: match the images one by one
    found = sorted(int(torch.nonzero((truth == img).flatten(1).all(1))[0]) for img in d.train.images)
    assert found == list(range(12))
    assert d.meta["num_classes"] == 3 and d.train.labels.dtype == torch.int64


def test_npz_rgba_drops_alpha_and_resizes(tmp_path):
    images = np.zeros((4, 10, 10, 4), np.uint8)
    images[..., 0] = 200
    images[..., 3] = 7
    np.savez(tmp_path / "a.npz", images=images)
    d = npz(tmp_path / "a.npz", holdout=0.0, image_size=5)
    assert d.train.images.shape == (4, 3, 5, 5)
    assert torch.all(d.train.images[:, 0] == 200) and torch.all(d.train.images[:, 1:] == 0)


@pytest.mark.parametrize(
    "arr,expected",
    [
        (np.array([0.0, 0.5, 1.0]), [0, 128, 255]),
        (np.array([0.0, 2.0, 254.6]), [0, 2, 255]),
        (np.array([False, True, True]), [0, 255, 255]),
        (np.array([0, 40000, 65535], np.uint16), [0, 156, 255]),
        (np.array([0, 7, 255], np.int64), [0, 7, 255]),
    ],
)
def test_npz_value_scaling(tmp_path, arr, expected):
    images = np.broadcast_to(arr.reshape(3, 1, 1), (3, 4, 4)).copy()
    np.savez(tmp_path / "a.npz", images=images, test_images=images)
    d = npz(tmp_path / "a.npz")
    assert d.meta["split"] == "source"
    assert d.train.images[:, 0, 0, 0].tolist() == expected


def test_npz_source_split_and_limit(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(
        tmp_path / "a.npz",
        images=rng.random((50, 8, 8), dtype=np.float32),
        labels=rng.integers(0, 4, 50),
        test_images=rng.random((5, 8, 8)),
        test_labels=rng.integers(0, 4, 5),
    )
    d = npz(tmp_path / "a.npz", limit=20)
    assert d.meta["split"] == "source" and len(d.train) == 20 and len(d.test) == 5
    assert d.meta["limit"] == 20
    d2 = npz(tmp_path / "a.npz", limit=20, split_seed=1)
    assert not torch.equal(d.train.images, d2.train.images)


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"pics": np.zeros((2, 4, 4))}, "no 'images' array; the file has: pics"),
        ({"images": np.zeros((2, 4))}, "expected 3 or 4 dimensions"),
        ({"images": np.zeros((2, 4, 4, 5, 5))}, "expected 3 or 4 dimensions"),
        ({"images": np.zeros((2, 5, 6, 7))}, "cannot find the channel axis"),
        ({"images": np.zeros((3, 4, 4)), "labels": np.zeros(2, int)}, "expected 3 labels"),
        ({"images": np.full((3, 4, 4), 300.0)}, r"\[0, 1\] or \[0, 255\]"),
        ({"images": np.full((3, 4, 4), -1, np.int16)}, "0..255"),
        ({"images": np.zeros((0, 4, 4))}, "no images"),
        ({"images": np.zeros((3, 4, 4)), "test_images": np.zeros((3, 5, 5))}, "test_images"),
    ],
)
def test_npz_bad_content(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(GanvaeError, match=match) as e:
        npz(p)
    assert str(p) in str(e.value)


def test_npz_bad_paths(tmp_path):
    with pytest.raises(GanvaeError, match="no such file") as e:
        npz(tmp_path / "x.npz")
    assert str(tmp_path / "x.npz") in str(e.value)
    with pytest.raises(GanvaeError, match="is a folder"):
        npz(tmp_path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(GanvaeError, match="cannot read") as e:
        npz(junk)
    assert str(junk) in str(e.value)

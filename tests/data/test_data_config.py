"""Option validation, source names, and the transform helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganvae.data import DataConfig, ImageData, load_data
from ganvae.data.transform import convert_channels, resize_images, to_nchw, to_uint8
from ganvae.errors import GanvaeError


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"image_size": 3}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"channels": 2}, "channels"),
        ({"channels": 4}, "channels"),
        ({"holdout": 1.0}, "holdout"),
        ({"holdout": -0.1}, "holdout"),
        ({"limit": 0}, "limit"),
        ({"n": 0, "source": "shapes"}, "n must be"),
        ({"n": 5, "source": "digits"}, "n applies only to generated sources"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(GanvaeError, match=match):
        load_data(DataConfig(**kw), progress=False)


def test_unknown_source_lists_names_and_prefixes():
    with pytest.raises(GanvaeError) as e:
        load_data(DataConfig(source="cifar"), progress=False)
    msg = str(e.value)
    for word in ("'cifar'", "mnist", "shapes", "folder:PATH", "idx:PATH", "npz:PATH"):
        assert word in msg
    with pytest.raises(GanvaeError, match="'/some/where': no such folder or .npz file"):
        load_data(DataConfig(source="/some/where"), progress=False)
    with pytest.raises(GanvaeError, match="'gone.npz': no such folder or .npz file"):
        load_data(DataConfig(source="gone.npz"), progress=False)
    with pytest.raises(GanvaeError, match="give a path"):
        load_data(DataConfig(source="folder:"), progress=False)


def test_to_uint8_rules():
    assert to_uint8(np.array([0.0, 1.0])).tolist() == [0, 255]
    assert to_uint8(np.array([0.0, 1.5])).tolist() == [0, 2]
    with pytest.raises(GanvaeError, match="NaN"):
        to_uint8(np.array([np.nan]))


def test_to_nchw_prefers_channels_last_when_ambiguous():
    a = np.zeros((2, 3, 5, 3))
    assert to_nchw(a).shape == (2, 3, 3, 5)
    assert to_nchw(np.zeros((2, 3, 5, 6))).shape == (2, 3, 5, 6)


def test_convert_channels_and_resize():
    red = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    red[:, 0] = 255
    assert torch.all(convert_channels(red, 1) == 76)
    grey = torch.full((1, 1, 4, 4), 9, dtype=torch.uint8)
    assert torch.all(convert_channels(grey, 3) == 9) and convert_channels(grey, 3).shape[1] == 3
    wide = torch.zeros(1, 1, 8, 16, dtype=torch.uint8)
    wide[..., 4:12] = 200  # the centre square is uniform
    out = resize_images(wide, 4)
    assert out.shape == (1, 1, 4, 4) and torch.all(out == 200)
    up = resize_images(torch.full((1, 3, 4, 4), 100, dtype=torch.uint8), 9)
    assert up.shape == (1, 3, 9, 9) and torch.all(up == 100)


def test_imagedata_checks():
    d = ImageData(images=torch.zeros(3, 1, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 1, 2], dtype=torch.int32))
    assert d.labels.dtype == torch.int64 and len(d) == 3
    with pytest.raises(ValueError):
        ImageData(images=torch.zeros(3, 1, 4, 4))


def test_a_bare_existing_path_is_a_folder_idx_folder_or_npz(tmp_path, monkeypatch):
    """``--data ./photos`` works like ``folder:./photos``; likewise idx folders and .npz files; names win."""
    import struct

    from PIL import Image

    rng = np.random.default_rng(0)
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(pics / f"{i}.png")
    arr = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=arr)
    mn = tmp_path / "mn"
    mn.mkdir()
    (mn / "train-images-idx3-ubyte").write_bytes(struct.pack(">I", 0x0803) + struct.pack(">3I", 10, 8, 8)
                                                 + arr.tobytes())
    for bare, explicit in ((str(pics), f"folder:{pics}"), (str(tmp_path / "a.npz"), f"npz:{tmp_path / 'a.npz'}"),
                           (str(mn), f"idx:{mn}")):
        a = load_data(DataConfig(source=bare, holdout=0.2, cache_dir=str(tmp_path / "c")), progress=False)
        b = load_data(DataConfig(source=explicit, holdout=0.2, cache_dir=str(tmp_path / "c")), progress=False)
        assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert load_data(DataConfig(source=str(mn)), progress=False).train.images.shape[1] == 1  # idx, not images
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()  # an empty folder named like a built-in source: the built-in wins
    assert len(load_data(DataConfig(source="digits"), progress=False).train) > 1000

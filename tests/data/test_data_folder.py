"""folder:PATH -- labels, pixel formats, geometry, EXIF, GIF, cache, bad files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae.data.cache_folder as folder_mod  # decodes folders into the cache (data.cache=auto)
from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError


def load(path, cache_dir, **kw):
    kw.setdefault("holdout", 0.0)
    return load_data(DataConfig(source=f"folder:{path}", cache_dir=cache_dir, **kw), progress=False)


def all_images(d):
    return torch.cat([d.train.images, d.test.images])


def test_class_subfolders_give_labels(tmp_path, cache_dir, imgs):
    root = tmp_path / "pics"
    for i in range(3):
        imgs.rgb(root / "cats" / f"c{i}.png", (255, 0, 0))
        imgs.rgb(root / "dogs" / f"d{i}.JPG", (0, 0, 255), fmt="JPEG")
    imgs.rgb(root / "ants" / "deeper" / "x.bmp", (0, 255, 0))  # deeper: first component counts
    d = load(root, cache_dir, image_size=8, holdout=0.25, split_seed=1)
    assert d.meta["class_names"] == ["ants", "cats", "dogs"] and d.meta["num_classes"] == 3
    assert len(d.train) + len(d.test) == 7 and len(d.test) == 2
    json.dumps(d.meta)
    images = all_images(d)
    labels = torch.cat([d.train.labels, d.test.labels])
    for img, lab in zip(images, labels):
        dominant = int(img.float().mean((1, 2)).argmax())
        assert dominant == {0: 1, 1: 0, 2: 2}[int(lab)]  # ants green, cats red, dogs blue


def test_flat_folder_has_no_labels_and_default_size(tmp_path, cache_dir, imgs):
    for i in range(3):
        imgs.gray(tmp_path / f"{i}.png", 100, size=(20, 30))
    d = load(tmp_path, cache_dir)
    assert d.train.labels is None and d.meta["class_names"] is None and d.meta["num_classes"] is None
    assert d.train.images.shape == (3, 1, 64, 64)  # documented default size
    assert d.meta["channels"] == 1


def test_progress_bar_goes_to_stderr(tmp_path, cache_dir, imgs, capsys):
    for i in range(3):
        imgs.gray(tmp_path / "p" / f"{i}.png", i)
    d = load_data(DataConfig(source=f"folder:{tmp_path / 'p'}", cache_dir=cache_dir, image_size=8), progress=True)
    assert len(d.train) + len(d.test) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "decoding" in captured.err


def test_mixed_levels_give_no_labels(tmp_path, cache_dir, imgs):
    imgs.gray(tmp_path / "top.png", 10)
    imgs.gray(tmp_path / "sub" / "a.png", 10)
    d = load(tmp_path, cache_dir, image_size=8)
    assert d.train.labels is None and "unlabelled_reason" in d.meta


def test_colour_rule_and_conversions(tmp_path, cache_dir, imgs):
    mixed = tmp_path / "mixed"
    imgs.gray(mixed / "g.png", 77)
    imgs.rgb(mixed / "r.png", (255, 0, 0))
    d = load(mixed, cache_dir, image_size=8)
    assert d.meta["channels"] == 3  # any colour image -> 3 channels
    g = [img for img in d.train.images if img[0, 0, 0] == 77][0]
    assert torch.all(g == 77)  # grey replicated to 3 channels
    d1 = load(mixed, cache_dir, image_size=8, channels=1)
    assert d1.train.images.shape[1] == 1
    assert sorted(int(img[0, 0, 0]) for img in d1.train.images) == [76, 77]  # red -> BT.601 luma 76
    gray = tmp_path / "gray"
    imgs.gray(gray / "a.png", 50)
    d3 = load(gray, cache_dir, image_size=8, channels=3)
    assert d3.train.images.shape == (1, 3, 8, 8) and torch.all(d3.train.images == 50)


def test_16bit_png(tmp_path, cache_dir, imgs):
    a = np.array([[0, 65535, 257 * 100, 32768]] * 4, dtype=np.uint16)
    p = imgs.array(tmp_path / "deep.png", a)
    assert Image.open(p).mode.startswith("I")
    d = load(tmp_path, cache_dir, image_size=4)
    row = d.train.images[0, 0, 0].tolist()
    assert d.meta["channels"] == 1
    assert row == [0, 255, 100, 128]


def test_palette_and_rgba(tmp_path, cache_dir, imgs):
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "pal.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, :, 3] = 255
    rgba[1, :, 3] = 128
    rgba[2:, :, 3] = 0
    imgs.array(tmp_path / "zz_rgba.png", rgba)
    d = load(tmp_path, cache_dir, image_size=4)
    p, a = d.train.images[0], d.train.images[1]  # sorted file order, holdout 0 -> permuted; find by content
    if p[:, 1, 1].tolist() != [0, 0, 0]:
        p, a = a, p
    assert p[:, 0, 0].tolist() == [10, 200, 30] and p[:, 1, 1].tolist() == [0, 0, 0]
    assert a[:, 0, 0].tolist() == [200, 100, 50]  # opaque
    assert a[:, 1, 0].tolist() == [100, 50, 25]  # half alpha, composited on black
    assert a[:, 3, 3].tolist() == [0, 0, 0]  # transparent -> black


def test_centre_crop_non_square(tmp_path, cache_dir, imgs):
    a = np.zeros((20, 60, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:40] = (0, 255, 0)
    a[:, 40:] = (0, 0, 255)
    imgs.array(tmp_path / "wide.png", a)
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:20], tall[20:40], tall[40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    imgs.array(tmp_path / "wide_tall.png", tall)
    d = load(tmp_path, cache_dir, image_size=10)
    for img in d.train.images:
        inner = img[:, 1:-1, 1:-1].float()
        assert inner[1].min() > 240 and inner[0].max() < 15 and inner[2].max() < 15  # only the green middle


def test_exif_orientation(tmp_path, cache_dir):
    # stored 40 wide x 20 high: top half red, bottom half blue; Orientation 6 = rotate 90 deg clockwise
    a = np.zeros((20, 40, 3), np.uint8)
    a[:10] = (255, 0, 0)
    a[10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    d = load(tmp_path, cache_dir, image_size=20)
    img = d.train.images[0].float()
    # displayed upright it is 20 wide x 40 high, with red on the RIGHT and blue on the LEFT
    left, right = img[:, 4:16, 1:7].mean((1, 2)), img[:, 4:16, 13:19].mean((1, 2))
    assert right[0] > 200 and right[2] < 60
    assert left[2] > 200 and left[0] < 60


def test_jpeg_draft_large_image(tmp_path, cache_dir):
    a = np.zeros((400, 600, 3), np.uint8)
    a[:, :300] = (250, 250, 250)
    Image.fromarray(a).save(tmp_path / "big.jpeg", quality=90)
    d = load(tmp_path, cache_dir, image_size=16)
    img = d.train.images[0].float()
    assert img.shape == (3, 16, 16)
    # centre crop of 400x400 from x=100..500: left half white (x<300), right half black
    assert img[:, :, 1:7].mean() > 230 and img[:, :, 9:15].mean() < 20


def test_gif_first_frame(tmp_path, cache_dir):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.GIF", save_all=True, append_images=frames[1:], duration=100)
    d = load(tmp_path, cache_dir, image_size=8)
    img = d.train.images[0].float().mean((1, 2))
    assert img[0] > 240 and img[2] < 15


def test_webp_and_cmyk(tmp_path, cache_dir):
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "a.webp", lossless=True)
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "b.jpg", quality=100)
    d = load(tmp_path, cache_dir, image_size=8)
    means = sorted(d.train.images.float().mean((2, 3)).tolist())
    assert means[0] == pytest.approx([0, 255, 0], abs=3)  # webp green
    assert means[1] == pytest.approx([255, 255, 255], abs=3)  # CMYK white


def test_cache_hit_and_invalidation(tmp_path, cache_dir, imgs, monkeypatch):
    root = tmp_path / "pics"
    for i in range(4):
        imgs.gray(root / f"{i}.png", 40 * i)
    first = load(root, cache_dir, image_size=8)
    assert first.meta["cache"] == "written"
    assert len(list((tmp_path / "cache" / "data").glob("folder-*"))) == 1

    calls = []
    real = folder_mod.decode_file

    def boom(*a, **k):
        raise AssertionError("decoded although the cache should have been used")

    monkeypatch.setattr(folder_mod, "decode_file", boom)
    second = load(root, cache_dir, image_size=8)
    assert second.meta["cache"] == "hit"
    assert torch.equal(first.train.images, second.train.images)

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(folder_mod, "decode_file", counting)
    st = os.stat(root / "2.png")
    os.utime(root / "2.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    third = load(root, cache_dir, image_size=8)
    assert third.meta["cache"] == "written" and len(calls) == 4
    assert len(list((tmp_path / "cache" / "data").glob("folder-*"))) == 1  # the stale cache was replaced

    imgs.gray(root / "new.png", 200)  # adding a file invalidates too
    calls.clear()
    fourth = load(root, cache_dir, image_size=8)
    assert len(fourth.train) == 5 and len(calls) == 5

    calls.clear()
    load(root, cache_dir, image_size=16)  # other options: another cache entry
    assert len(calls) == 5


def test_corrupt_cache_is_rebuilt(tmp_path, cache_dir, imgs):
    root = tmp_path / "pics"
    imgs.gray(root / "a.png", 9)
    load(root, cache_dir, image_size=8)
    (cache,) = (tmp_path / "cache" / "data").glob("folder-*")
    (cache / "images.u8").write_bytes(b"short")  # not the size meta.json says: not used
    d = load(root, cache_dir, image_size=8)
    assert d.meta["cache"] == "written" and torch.all(d.train.images == 9)
    assert load(root, cache_dir, image_size=8).meta["cache"] == "hit"


def test_default_cache_dir_from_env(tmp_path, imgs):
    imgs.gray(tmp_path / "p" / "a.png", 1)
    d = load_data(DataConfig(source=f"folder:{tmp_path / 'p'}", holdout=0.0), progress=False)
    assert d.meta["cache"] == "written"
    assert list((tmp_path / "env-cache" / "data").glob("folder-*"))


# --------------------------------------------------------------------------- bad input
def _bad_files(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "zero.png").write_bytes(b"")
    (root / "junk.jpg").write_bytes(os.urandom(300))
    buf = root / "full.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf)
    data = buf.read_bytes()
    buf.unlink()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    return ["junk.jpg", "trunc.png", "zero.png"]


@pytest.mark.parametrize("which", ["zero.png", "junk.jpg", "trunc.png"])
def test_each_bad_file_fails_naming_it(tmp_path, cache_dir, imgs, which):
    root = tmp_path / "pics"
    imgs.gray(root / "good.png", 5)
    _bad_files(tmp_path / "all")
    os.replace(tmp_path / "all" / which, root / which)
    with pytest.raises(GanvaeError) as e:
        load(root, cache_dir)
    msg = str(e.value)
    assert str(root) in msg and which in msg and "1 of 2 files unreadable" in msg and "--skip-bad-images" in msg
    assert "\n" not in msg


def test_many_bad_files_listed_and_skipped(tmp_path, cache_dir, imgs):
    root = tmp_path / "pics"
    bad = _bad_files(root)
    (root / "zz.webp").write_bytes(b"RIFF0000WEBPjunk")
    for i in range(3):
        imgs.gray(root / f"good{i}.png", 5)
    with pytest.raises(GanvaeError) as e:
        load(root, cache_dir)
    msg = str(e.value)
    assert "4 of 7 files unreadable" in msg and ", ".join(bad) in msg and "zz.webp" not in msg
    d = load(root, cache_dir, skip_bad_images=True)
    assert len(d.train) == 3 and d.meta["n_skipped"] == 4
    again = load(root, cache_dir, skip_bad_images=True)  # from the cache: the count survives
    assert again.meta["cache"] == "hit" and again.meta["n_skipped"] == 4


def test_no_readable_image_even_when_skipping(tmp_path, cache_dir):
    root = tmp_path / "pics"
    _bad_files(root)
    with pytest.raises(GanvaeError, match="none of the 3 image files is readable") as e:
        load(root, cache_dir, skip_bad_images=True)
    assert str(root) in str(e.value)


def test_missing_file_and_empty_folder(tmp_path, cache_dir, imgs):
    missing = tmp_path / "nope"
    with pytest.raises(GanvaeError, match="no such folder") as e:
        load(missing, cache_dir)
    assert str(missing) in str(e.value)
    f = imgs.gray(tmp_path / "one.png", 3)
    with pytest.raises(GanvaeError, match="is a file") as e:
        load(f, cache_dir)
    assert str(f) in str(e.value)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(GanvaeError, match="no image files") as e:
        load(empty, cache_dir)
    assert str(empty) in str(e.value)

"""Two-domain data: pairs:A_DIR,B_DIR matched by name (and its one-line errors), npz with a and b, the
built-in tasks, --data-b, the batch stream's B rows (paired and unpaired) and the models' data checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae
from ganvae.data import DataConfig, load_data
from ganvae.data.pairs import edges_of
from ganvae.errors import GanvaeError
from ganvae.training.batches import BatchStream
from helpers import train_tiny


def write(folder, names, size=(8, 8), mode="L", value=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        v = value if value is not None else 10 * i
        Image.new(mode, size, v if mode == "L" else (v, 0, 0)).save(folder / name)


def load(source, **kw):
    return load_data(DataConfig(source=source, cache="off", **kw), progress=False)


def test_pairs_are_matched_by_name_without_extension(tmp_path):
    write(tmp_path / "A", ["x.png", "y.png", "z.png"])
    write(tmp_path / "B", ["z.png", "x.jpg", "y.bmp"], mode="RGB")
    s = load(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}", holdout=0.0)
    assert s.meta["paired"] and s.meta["channels"] == 1 and s.meta["channels_b"] == 3
    a, b = s.train.images, s.train.b
    assert a.shape == (3, 1, 8, 8) and b.shape == (3, 3, 8, 8)
    # files x, y, z hold 0, 10, 20 in A; B's x.jpg is the 2nd written (10), y.bmp the 3rd (20), z.png the 1st (0)
    pairs = sorted((int(a[i, 0, 0, 0]), int(b[i, 0, 0, 0])) for i in range(3))
    assert [p[0] for p in pairs] == [0, 10, 20]
    assert [abs(p[1] - q) <= 2 for p, q in zip(pairs, [10, 20, 0])] == [True] * 3  # jpeg: nearly exact


def test_pairs_split_keeps_rows_together(tmp_path):
    names = [f"{i:02d}.png" for i in range(20)]
    write(tmp_path / "A", names)
    write(tmp_path / "B", names)  # B_i == A_i
    s = load(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}", holdout=0.25, limit=10)
    assert len(s.train) == 10 and len(s.test) == 5
    for d in (s.train, s.test):
        assert torch.equal(d.images, d.b)


@pytest.mark.parametrize("a_names,b_names,match", [
    (["x.png", "y.png"], ["p.png", "q.png"], "no file names in common"),
    (["x.png", "y.png", "w.png"], ["x.png", "y.png", "v.png"], r"unmatched file names, 1 in A only: w; 1 in B only: v"),
])
def test_pairs_name_errors_are_one_line(tmp_path, a_names, b_names, match):
    write(tmp_path / "A", a_names)
    write(tmp_path / "B", b_names)
    with pytest.raises(GanvaeError, match=match) as e:
        load(f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}")
    assert "\n" not in str(e.value)


def test_pairs_of_mixed_sizes_need_image_size(tmp_path):
    write(tmp_path / "A", ["x.png"], size=(8, 8))
    write(tmp_path / "A", ["y.png"], size=(12, 12))
    write(tmp_path / "B", ["x.png", "y.png"])
    spec = f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}"
    with pytest.raises(GanvaeError, match="different sizes.*--image-size") as e:
        load(spec)
    assert "\n" not in str(e.value)
    assert load(spec, image_size=8, holdout=0.0).train.images.shape == (2, 1, 8, 8)


def test_npz_with_a_and_b(tmp_path):
    a = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    np.savez(tmp_path / "p.npz", a=a, b=np.stack([a] * 3, -1), labels=np.arange(6))
    for spec in (f"npz:{tmp_path / 'p.npz'}", str(tmp_path / "p.npz"), f"pairs:{tmp_path / 'p.npz'}"):
        s = load(spec, holdout=0.5)
        assert s.meta["channels_b"] == 3 and len(s.train) == 3
        assert torch.equal(s.train.images[:, 0], s.train.b[:, 1])


def test_edges_of_a_filled_square_is_its_outline():
    img = torch.zeros(1, 3, 6, 6, dtype=torch.uint8)
    img[..., 1:5, 1:5] = 200
    e = edges_of(img)[0, 0] > 0
    want = torch.zeros(6, 6, dtype=torch.bool)
    want[1:5, 1:5] = True
    want[2:4, 2:4] = False  # the inside of a 4x4 square is its 2x2 centre
    assert torch.equal(e, want)


def test_shapes_edges_is_paired_outline_to_filled():
    s = load("shapes-edges", n=20, image_size=16)
    assert s.meta["paired"] and s.train.images.shape[1] == 3 and s.train.b.shape[1] == 3
    assert torch.equal(s.train.images, s.train.b * (edges_of(s.train.b) > 0))  # the outline, in its colour


def test_digits2mnist_names_mnist_as_domain_b(monkeypatch):
    from ganvae.data import sources
    src = sources.SOURCES.get("digits2mnist")(DataConfig(source="digits2mnist"), False)
    assert src.notes["source_b"] == "mnist" and src.train.images.shape[1:] == (1, 28, 28)
    assert src.num_classes == 10 and src.train.labels is not None


def test_source_b_loads_at_a_size(tmp_path):
    np.savez(tmp_path / "b.npz", images=np.zeros((30, 12, 12, 3), np.uint8), labels=np.arange(30) % 2)
    s = load("digits", source_b=f"npz:{tmp_path / 'b.npz'}", image_size=16, limit=40)
    assert s.meta["paired"] is False and s.meta["channels_b"] == 3
    assert s.b.train.images.shape[1:] == (3, 16, 16) and len(s.train) == 40


def test_paired_stream_keeps_rows_and_unpaired_walks_its_own_order():
    a = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    paired = BatchStream(a, None, 4, seed=1, images_b=a.clone())
    for _ in range(5):
        bt = paired.next()
        assert torch.equal(bt.x, bt.b)
    b = (torch.arange(7, dtype=torch.uint8) + 100).view(7, 1, 1, 1).expand(7, 1, 2, 2).contiguous()
    s = BatchStream(a, None, 3, seed=1, images_b=b, paired=False)
    firsts = [s.next() for _ in range(5)]
    assert all(int(x.b.min() * 255 + 0.5) >= 100 for x in firsts)
    state = s.state_dict()
    assert {"epoch_b", "pos_b"} <= set(state) and state["epoch_b"] == 2  # 7 // 3 = 2 batches per B epoch
    rest = [s.next() for _ in range(4)]
    t = BatchStream(a, None, 3, seed=1, images_b=b, paired=False)
    t.load_state_dict(state)
    for x, y in zip(rest, [t.next() for _ in range(4)]):
        assert torch.equal(x.x, y.x) and torch.equal(x.b, y.b)
    with pytest.raises(GanvaeError, match="domain B"):
        BatchStream(a, None, 8, seed=1, images_b=b, paired=False)


@pytest.mark.parametrize("model,data,more,match", [
    ("pix2pix", "digits", [], "translates between two domains"),
    ("pix2pix", "digits", ["data.source_b=digits"], "needs paired data"),
    ("dcgan", "shapes-edges", ["data.n=20"], "learns one domain"),
])
def test_models_refuse_the_wrong_data_in_one_line(tmp_path, model, data, more, match):
    with pytest.raises(GanvaeError, match=match) as e:
        train_tiny(tmp_path / "r", model, data, steps=1, batch_size=4, more=more)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r").exists()


def test_cli_data_b_option(tmp_path, capsys):
    from ganvae.cli import main
    np.savez(tmp_path / "b.npz", images=np.zeros((30, 8, 8), np.uint8))
    assert main(["train", "--model", "cyclegan", "--data", "digits", "--data-b", f"npz:{tmp_path / 'b.npz'}",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "source_b: npz:" in out and "channels_b: 1" in out
    assert ganvae.__name__  # the API is importable alongside

"""`ganvae data prepare` and `ganvae data info`: what they print, and one line with exit code 2 for bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganvae import api
from ganvae.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "env-cache"))


def make_folder(root: Path) -> Path:
    """5 cats (colour) and 3 dogs (grey), 10x10."""
    for i in range(8):
        cls = "cats" if i < 5 else "dogs"
        path = root / cls / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        (Image.new("RGB", (10, 10), (i, 2 * i, 3)) if cls == "cats" else Image.new("L", (10, 10), i)).save(path)
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_info_then_prepare_then_info(tmp_path, capsys):
    root = make_folder(tmp_path / "pets")
    rc, out, _ = run(capsys, "data", "info", str(root), "--image-size", "8")
    assert rc == 0
    assert "image files: 8 (train 7, test 1: seeded split, holdout 0.1)" in out
    assert "size: 8x8; channels: 3 (a colour image found)" in out
    assert "classes: 2 from subfolders: cats 5, dogs 3" in out
    assert "cache: none yet; about 1.5 KB at " + str(tmp_path / "env-cache" / "data") in out  # 8 * 3*8*8 bytes

    rc, out, _ = run(capsys, "data", "prepare", str(root), "--image-size", "8", "--quiet")
    assert rc == 0
    assert "images: 8, 3x8x8 uint8, 1.5 KB" in out and "classes: 2: cats 5, dogs 3" in out and "written in" in out
    rc, out, _ = run(capsys, "data", "prepare", str(root), "--image-size", "8", "--quiet")
    assert rc == 0 and "already up to date" in out

    rc, out, _ = run(capsys, "data", "info", str(root), "--image-size", "8")
    assert rc == 0 and "images: 8 (train 7, test 1" in out and "complete and up to date" in out
    assert "classes: 2 from subfolders: cats 5, dogs 3" in out


def test_prepare_out_names_the_cache_to_train_with(tmp_path, capsys):
    root = make_folder(tmp_path / "pets")
    out_dir = tmp_path / "pets-8"
    rc, out, _ = run(capsys, "data", "prepare", str(root), "--image-size", "8", "--channels", "1", "--out",
                     str(out_dir), "--quiet")
    assert rc == 0 and f"cache: {out_dir} (written" in out and "1x8x8" in out
    assert f"--set data.cache={out_dir}" in out
    run_ = api.train("dcgan", str(root), out=tmp_path / "run", steps=1, batch_size=4, progress=False, log=None,
                     image_size=8, channels=1, set=["train.device=cpu", "train.report=false", "train.tensorboard=false",
                                                    "model.g_width=8", "model.d_width=8", "model.latent_dim=8",
                                                    f"data.cache={out_dir}"])
    assert run_.step == 1


def test_info_of_idx_npz_and_built_in_sources(tmp_path, capsys):
    mn = tmp_path / "mn"
    mn.mkdir()
    (mn / "train-images-idx3-ubyte").write_bytes(struct.pack(">I3I", 0x0803, 6, 5, 5) + bytes(150))
    (mn / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 6) + bytes([0, 1, 1, 2, 2, 2]))
    rc, out, _ = run(capsys, "data", "info", str(mn))
    assert rc == 0 and "images: 6 (train 5, test 1" in out and "classes: 3: 0 1, 1 2, 2 3" in out
    assert "size: 5x5; channels: 1" in out and "loaded into memory" in out
    np.savez(tmp_path / "a.npz", images=np.zeros((4, 6, 6, 3), np.uint8), test_images=np.zeros((2, 6, 6, 3), np.uint8))
    rc, out, _ = run(capsys, "data", "info", f"npz:{tmp_path / 'a.npz'}", "--image-size", "4")
    assert rc == 0 and "train 4, test 2: the source's own split" in out and "size: 4x4; channels: 3" in out
    rc, out, _ = run(capsys, "data", "prepare", str(mn), "--quiet")  # prepare caches even a small source
    assert rc == 0 and "images: 6, 1x5x5 uint8, 150 B" in out
    rc, out, _ = run(capsys, "data", "info", str(mn))
    assert rc == 0 and "complete and up to date" in out
    rc, out, _ = run(capsys, "data", "info", "digits")
    assert rc == 0 and "images: 1797" in out and "(built-in data set)" in out and "classes: 10: 0 178" in out


@pytest.mark.parametrize("argv, words", [
    (["data", "prepare", "digits"], "built-in data set"),
    (["data", "info", "no/such/folder"], "no such folder"),
    (["data", "prepare", "no/such/folder"], "no such folder"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, words):
    rc, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and words in lines[0] and lines[0].startswith("ganvae: error:")

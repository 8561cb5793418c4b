"""Using a translation run: ``ganvae translate`` and ``load(RUN).translate``, and their one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae
from ganvae.cli import main
from ganvae.errors import GanvaeError
from helpers import train_tiny


@pytest.fixture(scope="module")
def p2p(tmp_path_factory):
    """A tiny pix2pix run on shapes-edges at 8 px: outlines made grey (A, 1 channel) -> coloured shapes (B, 3)."""
    out = tmp_path_factory.mktemp("p2p") / "run"
    train_tiny(out, "pix2pix", "shapes-edges", steps=2, batch_size=4,
               more=["data.n=20", "data.image_size=8", "data.channels=1"])  # data.channels converts A only
    return out


def images(folder, mode, n=3, size=(10, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, size, 40 * i if mode == "L" else (40 * i, 0, 0)).save(folder / f"im{i}.png")
    return folder


def test_cli_translate_writes_one_png_per_image_and_a_grid(p2p, tmp_path, capsys):
    src = images(tmp_path / "in", "L")
    assert main(["translate", str(p2p), "--images", str(src), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    for i in range(3):
        got = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        assert got.shape == (8, 8, 3)  # resized to the run's 8 px; B is colour
    assert (tmp_path / "out" / "grid.png").is_file()
    assert "translated 3 image(s)" in capsys.readouterr().out


def test_load_translate_matches_the_cli(p2p, tmp_path):
    src = images(tmp_path / "in", "L", n=1, size=(8, 8))
    model = ganvae.load(p2p)
    x = torch.from_numpy(np.asarray(Image.open(src / "im0.png"), dtype=np.float32) / 255)[None, None]
    y = ganvae.translate(p2p, src, out=tmp_path / "o", log=None)
    torch.testing.assert_close(model.translate(x), y, atol=1 / 255, rtol=0)


@pytest.mark.parametrize("args,match", [
    (["--direction", "b2a"], "direction 'b2a'"),
    (["--images", "RGB"], "colour (3 channels) image, but the model translates grey"),
    (["--images", "missing"], "no such file or folder"),
])
def test_cli_refusals_are_one_line_exit_2(p2p, tmp_path, capsys, args, match):
    rgb = images(tmp_path / "rgb", "RGB", n=1)
    argv = ["translate", str(p2p), "--images", str(rgb / "im0.png") if "RGB" in args else str(tmp_path / "nope"),
            "--out", str(tmp_path / "o"), "--device", "cpu"]
    if args[0] == "--direction":
        argv[3] = str(images(tmp_path / "g", "L", n=1))
        argv += args
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_translate_on_a_model_that_is_not_translation(tmp_path, capsys):
    run = train_tiny(tmp_path / "gan", "dcgan", "digits", steps=1, batch_size=8).path
    assert main(["translate", str(run), "--images", str(images(tmp_path / "in", "L", n=1)), "--out",
                 str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is not a translation model" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(GanvaeError, match="not a translation model"):
        ganvae.load(run).translate(torch.rand(1, 1, 8, 8))

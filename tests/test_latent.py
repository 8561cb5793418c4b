"""Latent tools: slerp against closed forms, traversal and interpolation grids, the traverse/interpolate CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae
from helpers import tiny_model
from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.latent import (decode, image_code, interpolate, parse_dims, prior_code, save_gif, slerp,
                           traversal_codes, traverse)


# ----------------------------------------------------------------------------- slerp

def test_slerp_orthogonal_unit_vectors_closed_form():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(slerp(a, b, 0.5), (a + b) / math.sqrt(2))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    t = torch.linspace(0, 1, 7)
    path = slerp(a, b, t)
    assert path.shape == (7, 3)
    # on the unit circle, at angle t * pi/2
    torch.testing.assert_close(path.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(path[:, 0], torch.cos(t * math.pi / 2))
    torch.testing.assert_close(path[:, 1], torch.sin(t * math.pi / 2))


def test_slerp_norms_and_endpoints_for_general_vectors():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    path = slerp(a, b, torch.linspace(0, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    # equal norms stay on the sphere (unlike the linear midpoint, which shrinks)
    b = b / b.norm() * a.norm()
    mid = slerp(a, b, 0.5)
    assert mid.norm().item() == pytest.approx(a.norm().item(), rel=1e-10)
    assert ((a + b) / 2).norm() < a.norm()
    # parallel vectors fall back to linear interpolation
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)
    torch.testing.assert_close(slerp(torch.zeros(16, dtype=torch.float64), a, 0.25), 0.25 * a)


# ----------------------------------------------------------------------------- traversals

def test_parse_dims():
    assert parse_dims("0-3,7", 10) == [0, 1, 2, 3, 7]
    assert parse_dims(None, 3) == [0, 1, 2]
    assert parse_dims([2, 0], 3) == [2, 0]
    for bad, msg in [("0-10", "out of range"), ("-1", "out of range"), ("a", "expected indices"),
                     ("5-2", "backwards"), ("", "no dimensions")]:
        with pytest.raises(GanvaeError, match=msg):
            parse_dims(bad, 10)


def test_traversal_codes_vary_one_dimension_per_row():
    base = torch.arange(5, dtype=torch.float32)
    values = torch.linspace(-3, 3, 4)
    z = traversal_codes(base, [1, 3], values).view(2, 4, 5)
    for r, d in enumerate([1, 3]):
        torch.testing.assert_close(z[r, :, d], values)
        others = [i for i in range(5) if i != d]
        torch.testing.assert_close(z[r][:, others], base[others].expand(4, 4))
    rel = traversal_codes(base, [2], values, relative=True)
    torch.testing.assert_close(rel[:, 2], values + 2)


def test_traverse_grid_shape_and_rows_follow_the_codes():
    m = tiny_model("mlp-vae", image_size=8, channels=1)
    imgs = traverse(m, "0-2", span=2.0, steps=5, seed=3)
    assert imgs.shape == (15, 1, 8, 8) and 0 <= imgs.min() and imgs.max() <= 1
    base = prior_code(m, 3)
    torch.testing.assert_close(imgs, decode(m, traversal_codes(base, [0, 1, 2], torch.linspace(-2, 2, 5))))
    # the base code is the one model.sample(1, seed) decodes
    torch.testing.assert_close(decode(m, base[None]), m.sample(1, seed=3).cpu())


def test_traverse_works_for_a_gan():
    m = tiny_model("dcgan", image_size=8, channels=3)
    assert traverse(m, [0, 5], steps=3).shape == (6, 3, 8, 8)
    with pytest.raises(GanvaeError, match="need a VAE"):
        image_code(m, torch.zeros(3, 8, 8))


# ----------------------------------------------------------------------------- interpolation

def test_interpolate_endpoints_and_gif_frames(tmp_path):
    m = tiny_model("mlp-vae", image_size=8, channels=3)
    frames = interpolate(m, seeds=(1, 2), steps=6)
    assert frames.shape == (6, 3, 8, 8)
    torch.testing.assert_close(frames[0], m.sample(1, seed=1)[0])
    torch.testing.assert_close(frames[-1], m.sample(1, seed=2)[0])
    path = save_gif(frames, tmp_path / "a.gif")
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size == (64, 64)


def test_image_code_is_the_posterior_mean_of_the_prepared_image(tmp_path):
    m = tiny_model("mlp-vae", image_size=8, channels=1)
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :] = [255, 0, 0]  # a red 16x24 picture: centre-cropped to 16x16, resized to 8x8, made grey
    Image.fromarray(rgb).save(tmp_path / "a.png")
    z = image_code(m, tmp_path / "a.png")
    luma_red = round(0.299 * 255)  # grey = BT.601 luma
    x = torch.full((1, 1, 8, 8), luma_red / 255)
    torch.testing.assert_close(z, m.encode(x).mean[0])
    with pytest.raises(GanvaeError, match="no such file"):
        image_code(m, tmp_path / "missing.png")


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lat") / "vae"
    ganvae.train("mlp-vae", "digits", out=out, steps=20, batch_size=32, progress=False,
                 set=["model.latent_dim=4", "model.enc_hidden=[32]", "model.dec_hidden=[32]", "train.device=cpu"])
    return out


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lat") / "gan"
    ganvae.train("mlp-gan", "digits", out=out, steps=2, batch_size=16, progress=False,
                 set=["model.latent_dim=4", "model.g_hidden=[16]", "model.d_hidden=[16]", "train.device=cpu"])
    return out


@pytest.fixture(scope="module")
def two_pngs(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(d / f"{name}.png")
    return d / "a.png", d / "b.png"


def test_cli_traverse(vae_run, two_pngs, tmp_path, capsys):
    out = tmp_path / "t.png"
    assert main(["traverse", str(vae_run), "--dims", "0-3", "--range", "3", "--columns", "7", "--out", str(out)]) == 0
    tile = _tile(vae_run, 64)  # traversal tiles are at least 64 px; row and column labels add margins
    with Image.open(out) as im:
        assert 7 * tile + 2 < im.width < 7 * tile + 80 and 4 * tile + 2 < im.height < 4 * tile + 40
    assert main(["traverse", str(vae_run), "--image", str(two_pngs[0]), "--columns", "3"]) == 0
    with Image.open(vae_run / "traverse_a.png") as im:
        assert 3 * tile + 2 < im.width < 3 * tile + 80 and 4 * tile + 2 < im.height < 4 * tile + 40  # all 4 dims
    assert "wrote a traversal of 4 dimensions" in capsys.readouterr().out


def _tile(run, min_tile: int = 32) -> int:
    """Grid tile pitch: images are enlarged (nearest) to at least ``min_tile`` px, plus 2 px of padding."""
    size = ganvae.load(run).config.image_size
    return size * math.ceil(min_tile / size) + 2


def test_cli_interpolate(vae_run, two_pngs, tmp_path):
    out = tmp_path / "i.png"
    assert main(["interpolate", str(vae_run), "--seeds", "1", "2", "--steps", "10", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (10 * _tile(vae_run) + 2, _tile(vae_run) + 2)
    with Image.open(tmp_path / "i.gif") as im:
        assert 2 <= im.n_frames <= 10  # Pillow merges identical consecutive frames
    assert main(["interpolate", str(vae_run), "--images", *map(str, two_pngs), "--steps", "4"]) == 0
    assert (vae_run / "interp_a-b.png").is_file() and (vae_run / "interp_a-b.gif").is_file()


def test_cli_gan_traverse_and_interpolate(gan_run, tmp_path):
    assert main(["traverse", str(gan_run), "--dims", "1,3", "--out", str(tmp_path / "t.png")]) == 0
    assert main(["interpolate", str(gan_run), "--out", str(tmp_path / "i.png")]) == 0
    assert (tmp_path / "i.gif").is_file()


@pytest.mark.parametrize("which, args, needle", [
    ("vae", ["traverse", "--dims", "0-9"], "out of range"),
    ("vae", ["traverse", "--dims", "x"], "expected indices"),
    ("vae", ["traverse", "--range", "0"], "--range"),
    ("vae", ["traverse", "--columns", "1"], "--columns"),
    ("vae", ["traverse", "--image", "nope.png"], "no such file"),
    ("vae", ["traverse", "--out", "x.jpg"], "expected a .png"),
    ("vae", ["interpolate", "--images", "nope.png", "nope2.png"], "no such file"),
    ("vae", ["interpolate", "--seeds", "1", "2", "--images", "a.png", "b.png"], "not both"),
    ("gan", ["traverse", "--image", "IMG"], "need a VAE"),
    ("gan", ["interpolate", "--images", "IMG", "IMG"], "need a VAE"),
    ("missing", ["traverse"], "no such run or model folder"),
    ("missing", ["interpolate"], "no such run or model folder"),
])
def test_cli_bad_input_is_one_line_exit_2(which, args, needle, vae_run, gan_run, two_pngs, tmp_path, capsys):
    run = {"vae": vae_run, "gan": gan_run, "missing": tmp_path / "none"}[which]
    args = [args[0], str(run)] + [str(two_pngs[0]) if x == "IMG" else x for x in args[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_conditional_models_keep_their_class_column():
    from ganvae.models import MODELS

    if "cvae" not in MODELS:
        pytest.skip("no conditional models registered")
    m = tiny_model("cvae", image_size=8, channels=1, num_classes=3)
    assert traverse(m, [0, 1], steps=3).shape == (6, 1, 8, 8)
    assert interpolate(m, seeds=(1, 2), steps=4).shape == (4, 1, 8, 8)
    with pytest.raises(GanvaeError, match="class-conditional"):
        image_code(m, torch.zeros(1, 8, 8))

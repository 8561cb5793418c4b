"""model.g_upsample (DCGAN-style generators) and model.upsample (conv VAE decoders): the resize-convolution
(nearest, bilinear) beside the transposed conv."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.models import Batch
from ganvae.nets.dcgan import DCGANGenerator, upsample_conv
from ganvae.training import checkpoint as ckpt
from helpers import assert_one_step_lowers_each_phase_loss, assert_same_state, tiny_config, tiny_model, train_tiny

MODES = ("nearest", "bilinear")


@pytest.mark.parametrize("mode", ("transposed", *MODES))
@pytest.mark.parametrize("size", (8, 28, 32, 48))
def test_every_mode_doubles_to_the_image_size(mode, size):
    G = DCGANGenerator(8, 3, size, width=8, upsample=mode)
    assert G(torch.randn(2, 8)).shape == (2, 3, size, size)
    kinds = {type(m) for m in G.modules()}
    assert (nn.ConvTranspose2d in kinds) == (mode == "transposed")
    assert (nn.Upsample in kinds) == (mode != "transposed")


def test_the_resize_convolution_is_a_resize_then_a_3x3_conv():
    layer = upsample_conv(2, 4, "nearest", bias=False)
    x = torch.randn(1, 2, 3, 3)
    conv = layer[1]
    expected = nn.functional.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), conv.weight, padding=1)
    torch.testing.assert_close(layer(x), expected)


def test_a_constant_map_stays_free_of_period_2_patterns_after_nearest_resizing():
    """The checkerboard's source: a transposed conv's output pixels see the kernel at alternating offsets; the
    resize-convolution sees the same inputs at every output pixel of a constant map (away from the border)."""
    torch.manual_seed(0)
    x = torch.ones(1, 4, 6, 6)
    out = upsample_conv(4, 1, "nearest", bias=False)(x)[0, 0, 1:-1, 1:-1]
    torch.testing.assert_close(out, torch.full_like(out, out[0, 0].item()))
    tr = upsample_conv(4, 1, "transposed", bias=False)
    nn.init.normal_(tr.weight)
    y = tr(x)[0, 0, 1:-1, 1:-1]
    assert (y[0::2, 0::2] - y[1::2, 1::2]).abs().max() > 1e-3  # alternating sums of kernel taps


GENERATORS = {"dcgan": "g_upsample", "cdcgan": "g_upsample", "sc-dcgan": "g_upsample", "vae": "upsample",
              "cvae": "upsample", "vamp-vae": "upsample", "vae-gan": "upsample"}


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("mode", MODES)
def test_models_with_a_resize_generator_train_and_sample(name, mode):
    m = tiny_model(name, image_size=16, channels=3, **{GENERATORS[name]: mode})
    assert not any(isinstance(x, nn.ConvTranspose2d) for x in m.modules())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 16, 16, generator=g)
    assert_one_step_lowers_each_phase_loss(m, Batch(x, torch.arange(16) % 3))
    assert m.sample(4, seed=0).shape == (4, 3, 16, 16)


def test_bad_upsample_is_one_line_naming_the_option(tmp_path, capsys):
    with pytest.raises(GanvaeError, match="model.g_upsample: expected one of transposed, nearest, bilinear"):
        tiny_config("dcgan", g_upsample="bicubic").validate()
    for name in ("vae", "vae-gan", "iwae"):
        with pytest.raises(GanvaeError, match="model.upsample: expected one of transposed, nearest, bilinear"):
            tiny_config(name, upsample="bicubic").validate()
    code = main(["train", "--model", "dcgan", "--data", "digits", "--steps", "1", "--out", str(tmp_path / "r"),
                 "--set", "model.g_upsample=cubic"])
    err = capsys.readouterr().err
    assert code == 2 and "model.g_upsample" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_resize_generator_run_resumes_bit_identically(tmp_path):
    loop = dict(seed=3, checkpoint_every=2, g_upsample="nearest")
    straight = train_tiny(tmp_path / "a", steps=6, **loop)
    train_tiny(tmp_path / "b", steps=3, **loop)
    resumed = train_tiny(tmp_path / "b", steps=6, resume=True)
    assert straight.step == resumed.step == 6
    assert_same_state(ckpt.load_state(tmp_path / "a" / "checkpoints" / "latest.pt"),
                      ckpt.load_state(tmp_path / "b" / "checkpoints" / "latest.pt"))

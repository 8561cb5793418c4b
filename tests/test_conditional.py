"""Conditional models (cdcgan, cvae): the projection discriminator's formula, labels end to end, cacc, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae
from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.nets import DCGANDiscriminator
from ganvae.nets.conditional import ConditionalDecoder, ConditionalEncoder, ProjectionDiscriminator, one_hot_planes
from ganvae.models import Batch
from helpers import tiny_config, tiny_model, train_tiny


def test_projection_discriminator_is_unconditional_logit_plus_label_projection():
    torch.manual_seed(0)
    base = DCGANDiscriminator(1, 8, width=4, norm="none")
    D = ProjectionDiscriminator(base, num_classes=3, feature_dim=base.head.in_channels)
    with torch.no_grad():
        D.embed.weight.copy_(torch.arange(3 * base.head.in_channels, dtype=torch.float32).view(3, -1) / 10)
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    h = base.body(x)                                       # (5, C, 4, 4)
    expected = base.head(h).flatten() + (D.embed.weight[y] * h.sum(dim=(2, 3))).sum(1)
    torch.testing.assert_close(D(x, y), expected)
    # class 0's embedding row is ... the first row; a different label changes only the projection term
    assert not torch.allclose(D(x, torch.zeros(5, dtype=torch.long)), D(x, torch.full((5,), 2)))


def test_conditional_vae_nets_see_the_label():
    planes = one_hot_planes(torch.tensor([2, 0]), 3, 4)
    assert planes.shape == (2, 3, 4, 4)
    assert planes[0, 2].eq(1).all() and planes[0, :2].eq(0).all() and planes[1, 0].eq(1).all()
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, inp):
            seen["inp"] = inp
            return inp

    ConditionalEncoder(Probe(), 3)(torch.zeros(2, 1, 4, 4), torch.tensor([2, 0]))
    assert seen["inp"].shape == (2, 4, 4, 4) and torch.equal(seen["inp"][:, 1:], planes)
    ConditionalDecoder(Probe(), 3)(torch.zeros(2, 5), torch.tensor([1, 2]))
    assert torch.equal(seen["inp"][:, 5:], torch.tensor([[0., 1., 0.], [0., 0., 1.]]))


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("cond") / "cgan", "cdcgan", steps=20, batch_size=32,
                      d_spectral_norm=True).path


def test_cdcgan_samples_by_class(cgan_run, tmp_path):
    g = ganvae.load(cgan_run)
    assert g.conditional and g.config.num_classes == 10
    a = g.sample(6, seed=0, labels=3)
    assert a.shape == (6, 1, 8, 8)
    torch.testing.assert_close(a, ganvae.load(cgan_run).sample(6, seed=0, labels=3), rtol=0, atol=0)
    out = tmp_path / "pc.png"
    assert main(["sample", str(cgan_run), "--per-class", "2", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert h > w  # 10 rows (one per class) of 2 images
    assert main(["sample", str(cgan_run), "--class", "7", "-n", "4", "--out", str(tmp_path / "c7.npz")]) == 0
    assert np.load(tmp_path / "c7.npz")["images"].shape == (4, 1, 8, 8)


@pytest.mark.parametrize("args, needle", [
    (["--class", "10"], "--class 10: expected 0..9"),
    (["--class-name", "seven"], "no class names"),
    (["--class", "1", "--per-class", "2"], "give one of"),
])
def test_sample_class_bad_input(cgan_run, capsys, args, needle):
    code = main(["sample", str(cgan_run), *args, "--out", "x.png"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_cacc_beside_floor_and_ceiling(cgan_run, capsys):
    code = main(["eval", str(cgan_run), "--metrics", "cacc", "--n", "200"])
    assert code == 0
    rec = [json.loads(x) for x in (cgan_run / "eval.jsonl").read_text().splitlines()][-1]
    assert rec["metric"] == "cacc" and rec["feature_net"] == "mnist" and rec["n_generated"] == 200
    assert 0.0 <= rec["value"] <= 1.0 and 0.0 <= rec["ceiling"] <= 1.0
    # the floor: the MNIST classifier on real test digits with their true labels; scikit-learn's 8x8 digits,
    # upscaled, are another domain than MNIST, so it is far from MNIST's 99.6% but far above chance
    assert rec["floor"] > 0.25 and rec["ceiling"] < rec["floor"]


def test_cvae_trains_and_refuses_what_it_cannot_do(tmp_path, capsys):
    out = tmp_path / "cvae"
    train_tiny(out, "cvae", steps=20, batch_size=32, latent_dim=4)
    m = ganvae.load(out)
    x = torch.rand(3, 1, 8, 8)
    assert m.reconstruct(x, 5).shape == (3, 1, 8, 8)
    with pytest.raises(GanvaeError, match="class labels"):
        m.encode(x)
    assert main(["eval", str(out), "--metrics", "nll", "--n", "20", "--no-baselines"]) == 2
    assert "not implemented" in capsys.readouterr().err


def test_unconditional_run_refuses_class_options(tmp_path, capsys):
    out = tmp_path / "gan"
    train_tiny(out, steps=2)
    assert main(["sample", str(out), "--class", "1", "--out", str(tmp_path / "a.png")]) == 2
    assert "conditional model" in capsys.readouterr().err
    assert main(["eval", str(out), "--metrics", "cacc", "--n", "20", "--no-baselines"]) == 2
    assert "conditional model" in capsys.readouterr().err


def test_conditional_model_needs_labels(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", images=np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8))
    code = main(["train", "--model", "cdcgan", "--data", f"npz:{tmp_path / 'x.npz'}", "--steps", "1",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "class labels" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------ the auxiliary class head (AC-GAN, model.aux_weight)

def test_aux_head_cross_entropy_by_hand_in_both_phases():
    import math

    m = tiny_model("cdcgan", aux_weight=0.5)
    with torch.no_grad():  # class logits (0, ln 3, 0) for every image: softmax (1/5, 3/5, 1/5)
        m.D.aux.weight.zero_()
        m.D.aux.bias.copy_(torch.tensor([0.0, math.log(3), 0.0]))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    d = m.d_phase(Batch(x, y), torch.Generator().manual_seed(1))
    expected = (3 * math.log(5 / 3) + 3 * math.log(5)) / 6
    torch.testing.assert_close(d["loss/D/aux"], torch.tensor(expected))
    torch.testing.assert_close(d["loss"], d["loss/D/real"] + d["loss/D/fake"] + 0.5 * d["loss/D/aux"])
    g = m.g_phase(Batch(None, None, n=6), torch.Generator().manual_seed(2))
    assert 0 < g["loss/G/aux"] <= math.log(5) + 1e-6  # each fake's CE is ln(5/3) or ln 5
    torch.testing.assert_close(g["loss"], g["loss/G/adv"] + 0.5 * g["loss/G/aux"])
    # the private real half: the same cross-entropy from one pass through D
    r = m.d_real_terms(Batch(x, y), torch.Generator().manual_seed(1))
    torch.testing.assert_close(r["loss/D/aux"], torch.tensor(expected))


def test_aux_head_both_is_forward_and_classify_and_off_by_default():
    m = tiny_model("cdcgan", aux_weight=1.0)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])
    logit, classes = m.D.both(x, y)
    torch.testing.assert_close(logit, m.D(x, y), rtol=0, atol=0)
    torch.testing.assert_close(classes, m.D.classify(x), rtol=0, atol=0)
    assert classes.shape == (4, 3)
    plain = tiny_model("cdcgan")
    assert plain.D.aux is None and not any(k.startswith("D.aux") for k in plain.state_dict())
    with pytest.raises(GanvaeError, match="model.aux_weight: expected >= 0"):
        tiny_config("cdcgan", aux_weight=-1.0).validate()

"""resgan / cresgan (R3GAN): the RpGAN loss and R1/R2 by hand, the residual nets, training, resume, DP refusal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.models import Batch, build
from ganvae.models.resgan import CondResGANConfig, ResGANConfig
from ganvae.nets.resnet import ACT_GAIN, ResidualBlock, ResNetDiscriminator, ResNetGenerator, groups_for
from ganvae.objectives import GAN_OBJECTIVES
from ganvae.objectives.gan import zero_centred_penalty
from ganvae.training import checkpoint as ckpt
from helpers import as_images, assert_same_state, linear_D, logit_D, tiny_config, tiny_model, train_tiny

R, F = [2.0, -1.0], [0.5, -3.0]  # fixed logits, paired by index


def softplus(v):
    return math.log1p(math.exp(v))


# ----------------------------------------------------------------------------- the loss by hand

def test_rpgan_matches_hand_computation():
    obj = GAN_OBJECTIVES.get("rpgan")()
    d = obj.d_loss(logit_D, as_images(R), as_images(F))
    expected_d = (softplus(0.5 - 2.0) + softplus(-3.0 + 1.0)) / 2  # softplus(l_fake - l_real), pairwise
    assert math.isclose(d["loss"].item(), expected_d, rel_tol=1e-12)
    assert math.isclose(d["D/real_logit"].item(), 0.5) and math.isclose(d["D/fake_logit"].item(), -1.25)
    g = obj.g_loss(logit_D, as_images(F), real=as_images(R))
    assert math.isclose(g["loss"].item(), (softplus(1.5) + softplus(2.0)) / 2, rel_tol=1e-12)
    # the pairing, not the batch means: swapping the fakes changes the loss
    swapped = obj.d_loss(logit_D, as_images(R), as_images(F[::-1]))["loss"].item()
    assert not math.isclose(swapped, expected_d)
    assert not obj.separable and obj.pairs_real


def test_rpgan_g_loss_without_real_pairs_with_the_latest_d_step():
    obj = GAN_OBJECTIVES.get("rpgan")()
    with pytest.raises(GanvaeError, match="pairs each generated image with a real one"):
        obj.g_loss(logit_D, as_images(F))
    obj.d_loss(logit_D, as_images(R), as_images([0.0, 0.0]))
    g = obj.g_loss(logit_D, as_images(F))["loss"].item()
    assert math.isclose(g, (softplus(1.5) + softplus(2.0)) / 2, rel_tol=1e-12)


def test_r1_and_r2_closed_form_on_a_linear_discriminator():
    torch.manual_seed(0)
    w = torch.randn(12, dtype=torch.float64)
    real, fake = torch.randn(5, 3, 2, 2, dtype=torch.float64), torch.randn(5, 3, 2, 2, dtype=torch.float64)
    x = real.clone().requires_grad_(True)
    per_sample = zero_centred_penalty(x, linear_D(w)(x))
    torch.testing.assert_close(per_sample, w.square().sum().expand(5))  # ||grad_x D||^2 = ||w||^2
    gamma = 0.3
    out = GAN_OBJECTIVES.get("rpgan")(gamma=gamma).d_loss(linear_D(w), real, fake)
    r = gamma / 2 * w.square().sum()
    torch.testing.assert_close(out["loss/D/r1"], r)
    torch.testing.assert_close(out["loss/D/r2"], r)
    torch.testing.assert_close(out["loss"], out["loss/D/adv"] + 2 * r)
    with torch.no_grad():  # the penalties switch grad mode on locally
        torch.testing.assert_close(GAN_OBJECTIVES.get("rpgan")(gamma=gamma).d_loss(linear_D(w), real, fake)["loss"],
                                   out["loss"].detach())


def test_lazy_penalties_alternate_and_are_weighted_by_the_interval():
    m = tiny_model("resgan", r1_every=2, gamma=0.5)
    batch = Batch(torch.rand(4, 1, 8, 8))
    gen = torch.Generator().manual_seed(0)
    d = m.phases()[0]
    first, second, third = (d.loss(batch, gen) for _ in range(3))
    assert first["loss/D/r1"] > 0 and first["loss/D/r2"] > 0
    assert second["loss/D/r1"] == 0 and second["loss/D/r2"] == 0 and third["loss/D/r1"] > 0
    assert int(m.d_steps_done) == 3 and "d_steps_done" in m.state_dict()
    # r1_every=1 (the paper): every step, weight gamma
    m1 = tiny_model("resgan", r1_every=1, gamma=0.5)
    m1.load_state_dict({k: v for k, v in m.state_dict().items() if k != "d_steps_done"})
    every = m1.phases()[0].loss(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first["loss/D/r1"], 2 * every["loss/D/r1"])


# ----------------------------------------------------------------------------- the networks

@pytest.mark.parametrize("size", [8, 28, 32, 64])
def test_shapes_at_each_size(size):
    G = ResNetGenerator(8, 3, size, width=8, max_width=16)
    D = ResNetDiscriminator(3, size, width=8, max_width=16)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 3, size, size) and D(x).shape == (2,) and D.features(x).shape == (2, 16)


def test_no_normalisation_layers_and_zero_branches_are_the_identity():
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
             nn.LocalResponseNorm)
    for name in ("resgan", "cresgan"):
        m = tiny_model(name, image_size=28)
        assert not any(isinstance(mod, norms) for mod in m.modules()), name
        assert not any("parametrizations" in k for k in m.state_dict()), name  # no spectral norm
        blocks = [b for b in m.modules() if isinstance(b, ResidualBlock)]
        assert len(blocks) == 6  # 3 stages (7, 14, 28) x 1 block, in G and in D
        for b in blocks:
            x = torch.randn(2, b.expand.in_channels, 7, 7)
            assert torch.equal(b(x), x)
            assert b.project.weight.abs().sum() == 0


def test_fixup_scale_and_groups():
    b = ResidualBlock(64, expansion=2, group_size=16, n_blocks=16)
    assert b.mix.groups == 8  # 128 channels in groups of 16
    std = b.expand.weight.std().item()
    assert abs(std - ACT_GAIN * 16 ** -0.25 / math.sqrt(64)) < 0.1 * std  # He's scale times L^(-1/4)
    assert [groups_for(c, 16) for c in (8, 16, 40, 50, 256)] == [1, 1, 2, 1, 16]


def test_config_refusals():
    for over, message in [({"r1_gamma": 1.0}, "model.gamma"), ({"d_spectral_norm": True}, "start at zero"),
                          ({"gamma": -1.0}, "model.gamma"), ({"group_size": 0}, "model.group_size")]:
        with pytest.raises(GanvaeError, match=message):
            tiny_config("resgan", **over).validate()
    ResGANConfig(image_size=28, channels=1).validate()


# ----------------------------------------------------------------------------- the phases

def test_g_phase_pairs_fakes_with_the_real_batch_and_its_classes():
    m = tiny_model("cresgan")
    seen = []
    forward = m.D.forward
    m.D.forward = lambda x, y: seen.append(y.clone()) or forward(x, y)
    y = torch.tensor([0, 2, 1, 2])
    out = m.phases()[1].loss(Batch(torch.rand(4, 1, 8, 8), y), torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and len(seen) == 2 and all(torch.equal(s, y) for s in seen)
    g = next(p for p in m.phases() if p.name == "G")
    assert g.real_data and g.reuse_batch


def test_other_objectives_keep_the_plain_g_phase_and_get_r1_r2():
    m = tiny_model("resgan", objective="hinge", gamma=0.5, r1_every=1)
    d, g = m.phases()
    assert not g.real_data
    terms = d.loss(Batch(torch.rand(4, 1, 8, 8)), torch.Generator().manual_seed(0))
    assert terms["loss/D/r1"] > 0 and terms["loss/D/r2"] > 0


def test_dcgan_with_rpgan_pairs_g_with_the_d_steps_real_logits():
    m = tiny_model("dcgan", objective="rpgan")
    gen = torch.Generator().manual_seed(0)
    for ph in m.phases():
        assert torch.isfinite(ph.loss(Batch(torch.rand(4, 1, 8, 8)), gen)["loss"])


# ----------------------------------------------------------------------------- training, resume, privacy

LOOP = dict(seed=3, log_every=2, sample_every=4, checkpoint_every=2, r1_every=2)


def test_tiny_training_resumes_bit_identically(tmp_path):
    straight = train_tiny(tmp_path / "a", "resgan", steps=5, **LOOP)
    train_tiny(tmp_path / "b", "resgan", steps=3, **LOOP)
    resumed = train_tiny(tmp_path / "b", steps=5, resume=True)
    assert straight.step == resumed.step == 5
    assert straight.images_seen == resumed.images_seen == 5 * 16  # G reuses D's batch: counted once
    assert_same_state(ckpt.load_state(tmp_path / "a" / "checkpoints" / "latest.pt"),
                      ckpt.load_state(tmp_path / "b" / "checkpoints" / "latest.pt"))
    assert torch.isfinite(straight.load().sample(4, seed=0)).all()


def test_conditional_training_runs(tmp_path):
    run = train_tiny(tmp_path / "c", "cresgan", steps=2)
    x = run.load().sample(3, seed=0, labels=[0, 1, 2])
    assert x.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("args,message", [
    (["--model", "resgan"], "model 'resgan' with model.objective=rpgan cannot be trained privately"),
    (["--model", "cresgan"], "model 'cresgan' with model.objective=rpgan cannot be trained privately"),
    (["--model", "resgan", "--objective", "nonsaturating"], "model.gamma > 0 cannot be trained privately"),
])
def test_privacy_refuses_with_one_line(tmp_path, capsys, args, message):
    argv = ["train", "--data", "digits", "--dry-run", "--quiet", "--out", str(tmp_path / "r"), "--dp-epsilon", "1"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ganvae: error: ") and message in err, err


def test_defaults_build_at_28_pixels():
    m = build("resgan", ResGANConfig(image_size=28, channels=1))
    assert m.config.objective == "rpgan" and m.config.betas_g == (0.0, 0.99)
    assert m.sample(2, seed=0).shape == (2, 1, 28, 28)
    c = build("cresgan", CondResGANConfig(image_size=28, channels=1, num_classes=10))
    assert c.sample(2, seed=0, labels=3).shape == (2, 1, 28, 28)


def test_trains_under_bf16_autocast(tmp_path, monkeypatch):
    """The antialiased halving has no bf16 CPU kernel: it runs in fp32 inside bf16 autocast, and training goes on."""
    monkeypatch.setenv("GANVAE_CPU_BF16", "1")  # the detection forced, so the emulation warning stays out of it
    run = train_tiny(tmp_path / "bf16", "resgan", steps=2, more=["train.precision=bf16"])
    assert run.step == 2
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    from ganvae.nets.resnet import Downsample

    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = Downsample(4, 4)(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and y.shape == (2, 4, 4, 4)
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()

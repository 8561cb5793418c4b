"""Stable GAN objectives and regularisers: hinge, least-squares, WGAN-GP, lazy R1, spectral norm, DiffAugment.

Every loss against a hand-computed value or a closed form; every option through a
training step, the export and an exact resume, at a tiny size.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganvae
from ganvae.augment import AUGMENTATIONS, DiffAugment, cutout_mask, rand_translation, translate
from ganvae.config import from_dict
from ganvae.errors import GanvaeError
from ganvae.export import load_model, save_model
from ganvae.models import Batch, DCGANConfig, MLPGANConfig, build
from ganvae.nets import DCGANDiscriminator, MLPDiscriminator
from ganvae.objectives import GAN_OBJECTIVES, gradient_penalty, r1_penalty
from ganvae.training import checkpoint as ckpt
from helpers import as_images, assert_same_state, linear_D, logit_D, tiny_config, tiny_model, tiny_set, train_tiny

OBJECTIVES = ["minimax", "nonsaturating", "hinge", "least-squares", "wgan-gp"]


R, F = [2.0, -1.0], [0.5, -3.0]  # the fixed logits of the hand computations below


# ----------------------------------------------------------------------------- objectives by hand

def test_registry_lists_every_objective():
    assert set(OBJECTIVES) <= set(GAN_OBJECTIVES.names())
    with pytest.raises(GanvaeError) as e:
        GAN_OBJECTIVES.get("wgan")
    for name in OBJECTIVES:
        assert name in str(e.value)


def test_hinge_by_hand():
    out = GAN_OBJECTIVES.get("hinge")().d_loss(logit_D, as_images(R), as_images(F))
    # real: relu(1 - 2) = 0, relu(1 + 1) = 2 -> 1.0;  fake: relu(1 + 0.5) = 1.5, relu(1 - 3) = 0 -> 0.75
    assert math.isclose(out["loss/D/real"].item(), 1.0, rel_tol=1e-12)
    assert math.isclose(out["loss/D/fake"].item(), 0.75, rel_tol=1e-12)
    assert math.isclose(out["loss"].item(), 1.75, rel_tol=1e-12)
    assert math.isclose(out["D/real_logit"].item(), 0.5, rel_tol=1e-12)
    g = GAN_OBJECTIVES.get("hinge")().g_loss(logit_D, as_images(F))
    assert math.isclose(g["loss"].item(), 1.25, rel_tol=1e-12)  # -(0.5 - 3) / 2


def test_least_squares_by_hand():
    out = GAN_OBJECTIVES.get("least-squares")().d_loss(logit_D, as_images(R), as_images(F))
    # real: 0.5 * ((2-1)^2 + (-1-1)^2) / 2 = 1.25;  fake: 0.5 * (0.25 + 9) / 2 = 2.3125
    assert math.isclose(out["loss/D/real"].item(), 1.25, rel_tol=1e-12)
    assert math.isclose(out["loss/D/fake"].item(), 2.3125, rel_tol=1e-12)
    assert math.isclose(out["loss"].item(), 3.5625, rel_tol=1e-12)
    g = GAN_OBJECTIVES.get("least-squares")().g_loss(logit_D, as_images(F))
    assert math.isclose(g["loss"].item(), 4.0625, rel_tol=1e-12)  # 0.5 * ((0.5-1)^2 + (-3-1)^2) / 2


def test_wgan_gp_by_hand():
    # the stand-in D's input gradient is one-hot (norm 1) everywhere, so the penalty is exactly 0
    obj = GAN_OBJECTIVES.get("wgan-gp")()
    assert obj.gp_weight == 10.0 and obj.drift == 0.0
    out = obj.d_loss(logit_D, as_images(R), as_images(F), gen=torch.Generator().manual_seed(0))
    # E[l_fake] - E[l_real] = (0.5 - 3)/2 - (2 - 1)/2 = -1.25 - 0.5
    assert math.isclose(out["loss"].item(), -1.75, rel_tol=1e-12)
    assert out["loss/D/gp"].item() == 0.0
    assert math.isclose(out["D/wasserstein"].item(), 1.75, rel_tol=1e-12)
    assert "loss/D/drift" not in out
    drifted = GAN_OBJECTIVES.get("wgan-gp")(drift=1e-3).d_loss(logit_D, as_images(R), as_images(F))
    # + 1e-3 * (2^2 + 1^2) / 2
    assert math.isclose(drifted["loss"].item(), -1.75 + 0.0025, rel_tol=1e-12)
    assert math.isclose(drifted["loss/D/drift"].item(), 0.0025, rel_tol=1e-12)
    g = obj.g_loss(logit_D, as_images(F))
    assert math.isclose(g["loss"].item(), 1.25, rel_tol=1e-12)


def test_objective_options_come_from_the_config():
    cfg = tiny_config("mlp-gan", objective="wgan-gp", gp_weight=3.0, drift_weight=1e-3)
    m = build("mlp-gan", cfg)
    assert m.objective.gp_weight == 3.0 and m.objective.drift == 1e-3


# ----------------------------------------------------------------------------- gradient penalties

def test_gradient_penalty_is_the_closed_form_for_alinear_D():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(3 * 4 * 4, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    real = torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64)
    fake = torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64)
    gp = gradient_penalty(linear_D(w), real, fake, torch.Generator().manual_seed(1))
    norm = w.detach().norm().item()
    assert abs(norm - 1) > 0.1
    assert math.isclose(gp.item(), (norm - 1) ** 2, rel_tol=1e-10)
    # ... through the objective, weighted by lambda, and it trains D: d/dw = lambda * 2 (||w|| - 1) w / ||w||
    out = GAN_OBJECTIVES.get("wgan-gp")(gp_weight=10.0).d_loss(linear_D(w), real, fake,
                                                               gen=torch.Generator().manual_seed(1))
    assert math.isclose(out["loss/D/gp"].item(), 10 * (norm - 1) ** 2, rel_tol=1e-10)
    (grad,) = torch.autograd.grad(out["loss/D/gp"], w)
    torch.testing.assert_close(grad, 10 * 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_draws_from_the_given_generator_only():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)

    def D(x):  # nonlinear: the penalty depends on where the interpolates lie
        return (x.flatten(1) ** 3).sum(1)

    state = torch.get_rng_state()
    a = gradient_penalty(D, real, fake, torch.Generator().manual_seed(5))
    b = gradient_penalty(D, real, fake, torch.Generator().manual_seed(5))
    c = gradient_penalty(D, real, fake, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())
    with torch.no_grad():  # grad mode is switched on locally: the penalty still works
        assert torch.equal(gradient_penalty(D, real, fake, torch.Generator().manual_seed(5)), a)


def test_r1_is_the_closed_form_for_alinear_D():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g, dtype=torch.float64)
    real = torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64)
    assert math.isclose(r1_penalty(linear_D(w), real).item(), w.square().sum().item(), rel_tol=1e-12)


def test_lazy_r1_every_r1_every_d_steps_scaled_by_it():
    gamma, every = 0.5, 4
    m = tiny_model("dcgan", image_size=4 * 2, r1_gamma=gamma, r1_every=every)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, generator=g, dtype=torch.float64)
    real = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64)
    fake = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64)
    expected = gamma / 2 * w.square().sum().item() * every
    adv = GAN_OBJECTIVES.get("nonsaturating")().d_loss(linear_D(w), real, fake)["loss"].item()
    for step in range(9):
        out = m.d_terms(linear_D(w), real, fake, g)
        if step % every == 0:
            assert math.isclose(out["loss/D/r1"].item(), expected, rel_tol=1e-12), step
        else:
            assert out["loss/D/r1"].item() == 0.0, step
        assert math.isclose(out["loss"].item(), adv + out["loss/D/r1"].item(), rel_tol=1e-12)
    assert int(m.state_dict()["d_steps_done"]) == 9  # a persistent buffer: checkpoints hold it


def test_r1_counter_exists_only_when_r1_is_on():
    assert "d_steps_done" not in tiny_model("dcgan").state_dict()  # exports without R1 are unchanged


# ----------------------------------------------------------------------------- spectral norm

def _sigma(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize("kind", ["dcgan", "mlp"])
def test_spectral_norm_makes_the_top_singular_value_one(kind):
    torch.manual_seed(0)
    if kind == "dcgan":
        D = DCGANDiscriminator(1, 16, width=8, norm="none", spectral_norm=True)
        plain = DCGANDiscriminator(1, 16, width=8, norm="none")
    else:
        D = MLPDiscriminator(1, 8, hidden=(32, 16), spectral_norm=True)
        plain = MLPDiscriminator(1, 8, hidden=(32, 16))
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    with torch.no_grad():  # whatever the raw weights' scale, the effective weights have sigma 1
        for m in layers:
            w = m.parametrizations.weight.original
            w.mul_(5.0 / _sigma(w))
    D.train()
    size = 16 if kind == "dcgan" else 8
    x = torch.randn(4, 1, size, size)
    for _ in range(10):  # one power iteration per forward in training mode
        D(x)
    for m in layers:
        assert _sigma(m.weight) == pytest.approx(1.0, abs=0.05)
        assert _sigma(m.parametrizations.weight.original) == pytest.approx(5.0, rel=1e-4)  # the raw weights stay
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


# ----------------------------------------------------------------------------- DiffAugment

POLICIES = ["color", "translation", "cutout", "translation,cutout,color"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("shape", [(4, 3, 16, 16), (3, 1, 8, 8)])
def test_augment_shape_gradient_and_determinism(policy, shape):
    aug = DiffAugment(policy)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    y = aug(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    (y * torch.randn(shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        a = aug(x, torch.Generator().manual_seed(7))
        b = aug(x, torch.Generator().manual_seed(7))
        c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    if policy != "translation" or shape[2] > 8:  # 8px: shifts of -1..1, two seeds might agree by chance
        assert not torch.equal(a, c)


def test_translation_by_a_known_shift():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # one down, one left: out[i, j] = x[i - 1, j + 1], zeros shifted in
    out = translate(x, torch.tensor([1]), torch.tensor([-1]))
    expected = torch.tensor([[0.0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]])
    assert torch.equal(out[0, 0], expected)
    # per image shifts, across channels
    x2 = torch.arange(2 * 2 * 16.0).view(2, 2, 4, 4)
    out2 = translate(x2, torch.tensor([0, -2]), torch.tensor([2, 0]))
    assert torch.equal(out2[0, :, :, 2:], x2[0, :, :, :2]) and (out2[0, :, :, :2] == 0).all()
    assert torch.equal(out2[1, :, :2], x2[1, :, 2:]) and (out2[1, :, 2:] == 0).all()


def test_random_translation_is_a_shift_of_at_most_an_eighth():
    x = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = rand_translation(x, torch.Generator().manual_seed(3))
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    for b in range(6):
        matches = [s for s in shifts if torch.equal(y[b:b + 1], translate(x[b:b + 1], torch.tensor([s[0]]),
                                                                         torch.tensor([s[1]])))]
        assert matches, b


def test_cutout_by_hand():
    # 4x4 image, 2x2 square: centre (0, 0) covers rows/cols -1..0, clipped to the one pixel (0, 0);
    # centre (2, 2) covers rows and cols 1..2
    m = cutout_mask((2, 1, 4, 4), torch.tensor([0, 2]), torch.tensor([0, 2]), 2, 2)
    assert m.shape == (2, 1, 4, 4)
    assert m[0, 0, 0, 0] == 0 and m[0].sum() == 15
    assert (m[1, 0, 1:3, 1:3] == 0).all() and m[1].sum() == 12
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = AUGMENTATIONS.get("cutout")(x, torch.Generator().manual_seed(0))
    zeroed = (y == 0).all(dim=1)  # (B, H, W): cut pixels are zero in every channel
    assert zeroed.any() and (zeroed.flatten(1).sum(1) <= 16).all()  # at most the 4x4 square
    assert torch.equal(y[~zeroed.unsqueeze(1).expand_as(y)], x[~zeroed.unsqueeze(1).expand_as(x)])


def test_color_on_a_flat_grey_image_is_a_brightness_shift():
    x = torch.full((5, 1, 4, 4), 0.25)
    y = AUGMENTATIONS.get("color")(x, torch.Generator().manual_seed(0))
    # one channel: saturation is a no-op; a constant image keeps its contrast; brightness adds U(-0.5, 0.5)
    shift = y - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)
    assert (shift.abs() <= 0.5).all() and shift.flatten(1)[:, 0].unique().numel() == 5


def test_unknown_augmentation_is_a_clear_error():
    with pytest.raises(GanvaeError, match="translation") as e:
        DiffAugment("translation,flip")
    assert "'flip'" in str(e.value) and "color" in str(e.value) and "cutout" in str(e.value)
    with pytest.raises(GanvaeError, match="model.augment"):
        from_dict(MLPGANConfig, {"augment": "colour"}, "model")
    assert not DiffAugment("") and not DiffAugment(" ")


@pytest.mark.parametrize("policy", ["", "translation"])
def test_augment_runs_before_D_in_both_phases(policy):
    m = tiny_model("mlp-gan", augment=policy)
    seen = []

    def spy(x):
        seen.append(x.detach().clone())
        return m.D(x)

    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    m.d_terms(spy, real, fake, g)
    m.g_terms(spy, fake, g)
    sources = [real, fake, fake]  # D phase: real then fake; G phase: fake
    assert len(seen) == 3
    if not policy:
        assert all(torch.equal(s, x) for s, x in zip(seen, sources))
    else:  # every input D saw is a shift of what it was given, and not all of them the identity
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        for s, x in zip(seen, sources):
            for b in range(4):
                assert any(torch.equal(s[b:b + 1], translate(x[b:b + 1], torch.tensor([dy]), torch.tensor([dx])))
                           for dy, dx in shifts)
        assert any(not torch.equal(s, x) for s, x in zip(seen, sources))


# ----------------------------------------------------------------------------- config checks

def test_wgan_gp_with_batchnorm_in_D_is_a_clear_error():
    with pytest.raises(GanvaeError, match="d_norm=batch") as e:
        from_dict(DCGANConfig, {"objective": "wgan-gp"}, "model")
    assert "layer" in str(e.value) and "group" in str(e.value) and "none" in str(e.value)
    for norm in ("layer", "group", "none"):
        from_dict(DCGANConfig, {"objective": "wgan-gp", "d_norm": norm}, "model")
    from_dict(MLPGANConfig, {"objective": "wgan-gp"}, "model")  # no BatchNorm in the MLP D


@pytest.mark.parametrize("field,value", [("r1_gamma", -1), ("r1_every", 0), ("gp_weight", -1.0),
                                         ("drift_weight", -1e-3)])
def test_option_ranges(field, value):
    with pytest.raises(GanvaeError, match=f"model.{field}"):
        from_dict(DCGANConfig, {field: value}, "model")


def test_objective_flag_reaches_the_config():
    cfg = ganvae.train("dcgan", "digits", objective="hinge", dry_run=True, progress=False, log=lambda *a: None,
                       set=tiny_set("dcgan"))
    assert cfg.model.objective == "hinge"
    # wgan-gp alone picks a D without BatchNorm (its penalty is per sample); an explicit BatchNorm is refused
    with pytest.warns(UserWarning, match="using model.d_norm=layer"):
        cfg = ganvae.train("dcgan", "digits", objective="wgan-gp", dry_run=True, progress=False, log=lambda *a: None)
    assert cfg.model.d_norm == "layer"
    with pytest.raises(GanvaeError, match="d_norm"):
        ganvae.train("dcgan", "digits", objective="wgan-gp", dry_run=True, progress=False, log=lambda *a: None,
                     set=["model.d_norm=batch"])


# ----------------------------------------------------------------------------- training

def _fixed_batch(n=16, seed=0):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return Batch((x > 0.5).float() * 0.9 + 0.05)


@pytest.mark.parametrize("name", ["dcgan", "mlp-gan"])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_one_step_lowers_each_objective_loss(name, objective):
    kw = {"d_norm": "layer"} if name == "dcgan" and objective == "wgan-gp" else {}
    m = tiny_model(name, objective=objective, **kw)
    m.train()
    batch = _fixed_batch()
    for ph in m.phases():
        opt = torch.optim.Adam(ph.parameters(), lr=1e-3, betas=ph.betas)
        before = ph.loss(batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        before["loss"].backward()
        opt.step()
        with torch.no_grad():
            after = ph.loss(batch, torch.Generator().manual_seed(0))
        assert all(torch.isfinite(v).all() for v in [*before.values(), *after.values()])
        assert after["loss"].item() < before["loss"].item(), (ph.name, before["loss"].item(), after["loss"].item())


STABLE = {"d_spectral_norm": True, "r1_gamma": 1.0, "r1_every": 1, "augment": "translation,cutout,color"}


@pytest.mark.parametrize("name", ["dcgan", "mlp-gan"])
def test_one_step_with_every_regulariser_on(name):
    m = tiny_model(name, objective="hinge", **STABLE)
    m.train()
    batch = _fixed_batch()
    for ph in m.phases():
        opt = torch.optim.Adam(ph.parameters(), lr=1e-3, betas=ph.betas)
        out = ph.loss(batch, torch.Generator().manual_seed(0))
        assert all(torch.isfinite(v).all() for v in out.values())
        if ph.name == "D":
            assert out["loss/D/r1"].item() > 0
        opt.zero_grad()
        out["loss"].backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ph.parameters())
        opt.step()


@pytest.mark.parametrize("name", ["dcgan", "mlp-gan"])
def test_spectral_norm_contract(name, tmp_path):
    """The contract tests' save/load round trip and phase ownership, with spectral norm, R1 and DiffAugment on."""
    m = tiny_model(name, image_size=16, channels=3, **STABLE)
    assert any("parametrizations.weight.original" in k for k in m.state_dict())
    owned = {id(p) for ph in m.phases() for p in ph.parameters()}
    assert owned == {id(p) for p in m.parameters()}
    m.train()
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for ph in m.phases():  # move the power iteration's u/v and the R1 counter away from their start
        if ph.real_data:
            ph.loss(Batch(x), torch.Generator().manual_seed(0))
    save_model(m, tmp_path / "model", inference_only=False)  # the full export: D's u/v and the R1 counter too
    loaded = load_model(tmp_path)
    assert loaded.config == m.config
    sd_a, sd_b = m.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert any(k.endswith("._u") for k in sd_a) and "d_steps_done" in sd_a
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    torch.testing.assert_close(m.sample(4, seed=5), loaded.sample(4, seed=5), rtol=0, atol=0)
    m.eval()
    torch.testing.assert_close(m.D(x), loaded.D(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- exact resume

EVERY_REGULARISER = dict(d_steps=2, d_spectral_norm=True, r1_gamma=1.0, r1_every=3,
                         augment="translation,cutout,color", objective="wgan-gp", d_norm="layer",
                         seed=3, log_every=2, sample_every=100, grid_size=4, checkpoint_every=2)


def _state(run_dir: Path) -> dict:
    return ckpt.load_state(run_dir / "checkpoints" / "latest.pt")


def test_resume_is_bit_identical_with_every_regulariser_on(tmp_path):
    """WGAN-GP (interpolation weights from the noise generator), lazy R1 (its counter crosses the resume:
    4 D steps done, R1 every 3), spectral norm (u/v buffers) and DiffAugment (draws from the noise generator)."""
    straight = train_tiny(tmp_path / "a", steps=4, **EVERY_REGULARISER)
    train_tiny(tmp_path / "b", steps=2, **EVERY_REGULARISER)
    resumed = train_tiny(tmp_path / "b", steps=4, resume=True)
    assert straight.step == resumed.step == 4
    sa, sb = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert int(sa["model"]["d_steps_done"]) == 4 * 2
    assert any(k.endswith("parametrizations.weight.0._u") for k in sa["model"])
    assert_same_state(sa, sb)
    assert_same_state(load_file(tmp_path / "a" / "model" / "model.safetensors"),
                 load_file(tmp_path / "b" / "model" / "model.safetensors"))
    last = straight.last
    assert {"loss/D/r1", "loss/D/gp"} <= set(last) and all(math.isfinite(v) for v in last.values())

"""Adaptive discriminator augmentation: the p update, the pipeline's transforms, and ADA in training runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from ganvae.augment import build_augment
from ganvae.augment.ada import (LUMA, AdaAugment, blit, blit_matrix, color, color_matrix, geom, geom_matrix,
                                rotate2d, rotate3d, scale2d, translate2d)
from ganvae.errors import GanvaeError
from ganvae.export import load_model, save_model
from ganvae.models import MODELS, Batch
from ganvae.training import checkpoint as ckpt
from ganvae.training.ada import AdaPlugin, ada_plugins
from helpers import (assert_one_step_lowers_each_phase_loss, assert_same_state, logit_D, tiny_config, tiny_model,
                     train_tiny)


def _logits(signs: str) -> torch.Tensor:
    return torch.tensor([{"+": 2.5, "-": -0.7, "0": 0.0}[s] for s in signs])


# ----------------------------------------------------------------------------- the p update

def test_p_update_on_a_scripted_rt_sequence():
    """4 logits per update and kimg = 0.016: each update moves p by exactly 4 / 16 = 0.25, clipped to [0, 1]."""
    ada = AdaAugment(kimg=0.016, target=0.6)
    script = ["++++", "+++-", "+++-", "++++", "++++", "++++", "++++", "++++", "----", "", "+0--"]
    want_p = [0.25, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.75, 0.5]
    want_rt = [1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -0.25]  # "": no logits, r_t kept
    for signs, p, rt in zip(script, want_p, want_rt):
        if signs:
            ada.observe(_logits(signs))
        ada.update()
        assert float(ada.p) == p and float(ada.rt) == rt, (signs, float(ada.p), float(ada.rt))
        assert float(ada.rt_sum) == 0 and float(ada.rt_n) == 0  # the accumulator starts over


def test_p_update_is_the_papers_rule():
    """p <- clip(p + sign(r_t - target) * batch * interval / (kimg * 1000)): batch 64, interval 4, kimg 100."""
    ada = AdaAugment(p=0.3, kimg=100, interval=4, target=0.6)
    for _ in range(4):  # r_t = 0.75 > 0.6: up by 256 / 100000
        ada.observe(_logits("+++++++-" * 8))
    ada.update()
    assert float(ada.p) == pytest.approx(0.3 + 256 / 100_000, abs=1e-7)
    for _ in range(4):  # r_t = 0.5 < 0.6: down
        ada.observe(_logits("+++-" * 16))
    ada.update()
    assert float(ada.p) == pytest.approx(0.3, abs=1e-7)


def test_fixed_p_when_kimg_is_zero():
    ada = AdaAugment(p=0.4, kimg=0)
    ada.observe(_logits("++++"))
    ada.update()
    assert float(ada.p) == pytest.approx(0.4) and float(ada.rt) == 1.0


def test_plugin_updates_every_interval_steps():
    """Two logits per step, updates after steps 4 and 8 only: 8 logits each, kimg 0.032 -> steps of 0.25."""
    ada = AdaAugment(kimg=0.032, interval=4, target=0.0)
    plugin = AdaPlugin(ada)
    trainer = SimpleNamespace(step=0, world=SimpleNamespace(active=False))
    plugin.attach(trainer)
    p_after = []
    for signs in ["++", "+-", "++", "-+", "--", "--", "-+", "--"]:  # r_t: 4/8 > 0, then -6/8 < 0
        ada.observe(_logits(signs))
        trainer.step += 1
        assert plugin.after_step(trainer) is None
        p_after.append(float(ada.p))
    assert p_after == [0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0.0]
    assert plugin.log_values(trainer) == {"ada/p": 0.0, "ada/rt": -0.75}
    assert plugin.summary()["p"] == 0.0 and plugin.summary()["pipe"] == "bgc"


def test_watch_records_only_the_first_pass_on_the_real_batch():
    """The objective's pass on the reals counts; its pass on fakes and a second pass on the reals (R1) do not."""
    ada = AdaAugment(p=0.0)
    real = torch.tensor([1.0, 2.0, -3.0]).view(3, 1, 1, 1)  # logit_D: the logit is the image's value
    fake = torch.tensor([5.0, 6.0, 7.0]).view(3, 1, 1, 1)
    D = ada.watch(logit_D, torch.Generator().manual_seed(0), real)
    torch.testing.assert_close(D(real), real.flatten())  # p = 0: D sees the images as they are
    D(fake)
    D(real.detach().requires_grad_(True))  # same storage: R1's pass, not counted again
    assert float(ada.rt_sum) == 1.0 and float(ada.rt_n) == 3.0


# ----------------------------------------------------------------------------- the pipeline

def _images(channels: int, n: int = 6, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("pipe", ["b", "g", "c", "bgc"])
def test_p0_is_the_identity_and_p1_changes_every_image(pipe, channels):
    x = _images(channels)
    same = AdaAugment(pipe, p=0.0)(x, torch.Generator().manual_seed(1))
    assert torch.equal(same, x)
    changed = AdaAugment(pipe, p=1.0)(x, torch.Generator().manual_seed(1))
    assert changed.shape == x.shape and torch.isfinite(changed).all()
    assert all(not torch.equal(changed[i], x[i]) for i in range(x.shape[0]))


def test_same_generator_same_augmentation():
    x, ada = _images(3), AdaAugment(p=0.5)
    a, b = ada(x, torch.Generator().manual_seed(7)), ada(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, ada(x, torch.Generator().manual_seed(8)))


def test_xflip_rot90_and_integer_shift_are_exact():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    one, zero = torch.ones(1), torch.zeros(1)
    assert torch.equal(blit(x, scale2d(-one, one, one)), x.flip(3))
    assert torch.equal(blit(x, rotate2d(zero, one, one)), torch.rot90(x, 1, (2, 3)))
    assert torch.equal(blit(x, rotate2d(-one, zero, one)), torch.rot90(x, 2, (2, 3)))
    # content one pixel to the right; the first column reflected from the second (no edge repeat)
    row = blit(x, translate2d(-one, zero, one))[0, 0, 0]
    assert row.tolist() == [1.0, 0.0, 1.0, 2.0]


def test_random_blit_is_a_dihedral_shift_of_whole_pixels():
    """p = 1 on a 4x4 image (shifts round to 0 px): each output is one of its 8 flips/rotations."""
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(32, 1, 4, 4)
    out = blit(x, blit_matrix(x, torch.tensor(1.0), torch.Generator().manual_seed(0)))
    base = x[0]
    group = [torch.rot90(b, k, (1, 2)) for b in (base, base.flip(2)) for k in range(4)]
    found = {next(i for i, g in enumerate(group) if torch.equal(o, g)) for o in out}
    assert len(found) > 4  # all images are in the group, and several of its members occur


def test_geom_integer_shift_matches_blit_and_stays_in_range():
    x = _images(1, n=2, size=8)
    one, zero = torch.ones(2), torch.zeros(2)
    T = translate2d(-2 * one, zero, one)
    torch.testing.assert_close(geom(x, T, torch.ones(2, dtype=torch.bool))[..., 2:],
                               blit(x, T)[..., 2:], rtol=0, atol=1e-5)  # away from the reflected border
    G, changed = geom_matrix(x, torch.tensor(1.0), torch.Generator().manual_seed(3))
    out = geom(x, G, changed)  # bilinear: convex combinations of input pixels
    assert changed.all() and out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


def test_color_matrices_closed_forms():
    # a hue rotation by 120 degrees about the grey axis permutes the channels cyclically
    Hm = rotate3d(LUMA, torch.tensor([2 * math.pi / 3]))
    x = torch.tensor([0.9, -0.2, 0.4]).view(1, 3, 1, 1)
    torch.testing.assert_close(color(x, Hm).flatten(), torch.tensor([0.4, 0.9, -0.2]), rtol=0, atol=1e-6)
    # one channel: brightness b, contrast c, luma flip -> y = -(c (x + b))
    b, c = 0.3, 1.5
    C = torch.tensor([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1.0]])
    C = torch.diag(torch.tensor([c, c, c, 1.0])) @ C
    v = torch.tensor(LUMA)
    C = (torch.eye(4) - 2 * torch.outer(v, v)) @ C
    g = torch.tensor([[0.5, -1.0]]).view(1, 1, 1, 2)
    torch.testing.assert_close(color(g, C[None]).flatten(), -(c * (g.flatten() + b)), rtol=0, atol=1e-6)
    # every random colour matrix keeps the homogeneous row
    M = color_matrix(_images(3), torch.tensor(1.0), torch.Generator().manual_seed(0))
    assert torch.equal(M[:, 3], torch.tensor([0, 0, 0, 1.0]).expand(6, 4))


@pytest.mark.parametrize("pipe", ["b", "g", "c"])
def test_each_group_is_differentiable_and_linear_in_the_images(pipe):
    """For fixed draws each group is affine in x: <w, f(x + d) - f(x)> = <grad_x <w, f(x)>, d>."""
    ada = AdaAugment(pipe, p=1.0)
    x = _images(3).requires_grad_(True)
    y = ada(x, torch.Generator().manual_seed(2))
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
    (grad,) = torch.autograd.grad((w * y).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)) * 0.1
    with torch.no_grad():
        diff = (w * (ada(x + d, torch.Generator().manual_seed(2)) - y)).sum()
    torch.testing.assert_close(diff, (grad * d).sum(), rtol=1e-4, atol=1e-4)


def test_second_order_gradients_flow_through_the_pipeline():
    """R1 on augmented reals differentiates D's input gradient through the pipeline (grid_sample included)."""
    ada = AdaAugment(p=1.0)
    w = torch.randn(3 * 8 * 8, requires_grad=True)
    x = _images(3).requires_grad_(True)
    logits = torch.tanh(ada(x, torch.Generator().manual_seed(0)).flatten(1) @ w)
    (gx,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- options and models

WITH_D = [n for n in MODELS.names() if MODELS.get(n).model_class.has_discriminator]  # dcgan, ..., vae-gan


def fixed_batch(n: int = 16) -> Batch:
    """The contract tests' batch: 16 binary-ish 8x8 images with labels 0, 1, 2."""
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return Batch((x > 0.5).float() * 0.9 + 0.05, torch.arange(n) % 3)


@pytest.mark.parametrize("over,match", [
    ({"augment": "ada,translation"}, "model.augment: ada"),
    ({"augment": "ada", "ada_pipe": "bgx"}, "model.ada_pipe"),
    ({"augment": "ada", "ada_p": 1.5}, "model.ada_p"),
    ({"augment": "ada", "ada_target": 1.0}, "model.ada_target"),
    ({"augment": "ada", "ada_kimg": -1}, "model.ada_kimg"),
    ({"augment": "ada", "ada_interval": 0}, "model.ada_interval"),
])
def test_bad_options_are_one_line_errors(over, match):
    with pytest.raises(GanvaeError, match=match) as e:
        tiny_config("dcgan", **over).validate()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", WITH_D)
def test_models_with_ada_save_load_and_step(name, tmp_path):
    """The contract on each model with a D, with augment=ada (p fixed at 0.5 so the pipeline is on)."""
    m = tiny_model(name, augment="ada", ada_p=0.5)
    assert isinstance(m.augment, AdaAugment) and len(ada_plugins(m)) == 1
    m.train()
    batch = fixed_batch()
    assert_one_step_lowers_each_phase_loss(m, batch)
    assert float(m.augment.rt_n) > 0  # the D phase recorded its logits on the reals
    save_model(m, tmp_path / "full" / "model", inference_only=False)
    loaded = load_model(tmp_path / "full")
    assert loaded.config == m.config
    for k in ("augment.p", "augment.rt_sum", "augment.rt_n"):
        assert torch.equal(loaded.state_dict()[k], m.state_dict()[k]), k
    save_model(m, tmp_path / "model")  # inference-only: no D, no augmentation state
    assert "augment" not in load_model(tmp_path).meta["parts"]


def test_without_ada_the_state_dict_is_unchanged():
    assert not any(k.startswith("augment.") for k in tiny_model("dcgan", augment="translation").state_dict())
    assert ada_plugins(tiny_model("dcgan")) == []


def test_dp_refuses_adaptive_p_and_allows_a_fixed_one():
    cls = MODELS.get("dcgan").model_class
    with pytest.raises(GanvaeError, match="privacy: model.augment=ada"):
        cls.private_config(tiny_config("dcgan", augment="ada"))
    cfg = cls.private_config(tiny_config("dcgan", augment="ada", ada_kimg=0, ada_p=0.3))
    assert isinstance(build_augment(cfg), AdaAugment)


# ----------------------------------------------------------------------------- training runs

# p moves: a target below any r_t pushes p up every 3 steps by 96 / 400 = 0.24 (16 reals x 2 D steps x 3 steps)
ADA_RUN = dict(augment="ada", ada_kimg=0.4, ada_interval=3, ada_target=-0.99, d_steps=2, seed=3, log_every=3,
               sample_every=100, grid_size=4, checkpoint_every=2)


def _state(run_dir: Path) -> dict:
    return ckpt.load_state(run_dir / "checkpoints" / "latest.pt")


@pytest.mark.parametrize("model", ["dcgan", "cresgan", "vae-gan"])
def test_resume_is_bit_identical_with_ada(tmp_path, model):
    """Straight 6 steps == 4 steps + resume to 6: the resume falls inside an interval, so the final r_t also
    covers a step taken before it (the accumulator must cross the resume)."""
    kw = {k: v for k, v in ADA_RUN.items() if k != "d_steps" or model != "vae-gan"}
    straight = train_tiny(tmp_path / "a", model=model, steps=6, **kw)
    train_tiny(tmp_path / "b", model=model, steps=4, **kw)
    resumed = train_tiny(tmp_path / "b", steps=6, resume=True)
    assert straight.step == resumed.step == 6
    sa, sb = _state(tmp_path / "a"), _state(tmp_path / "b")
    p = float(sa["model"]["augment.p"])
    if model == "dcgan":  # its D's logits on the reals start near 0 > target; rpgan's are not anchored at 0
        assert p == pytest.approx(2 * 0.24)  # two updates, each +0.24
    assert p > 0 and float(sa["model"]["augment.rt"]) != 0  # p and r_t moved, and crossed the resume
    assert_same_state(sa, sb)
    assert_same_state(load_file(tmp_path / "a" / "model" / "model.safetensors"),
                      load_file(tmp_path / "b" / "model" / "model.safetensors"))


def test_p_is_logged_recorded_and_reported(tmp_path):
    run = train_tiny(tmp_path / "r", steps=6, report=True, **ADA_RUN)
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [round(r["ada/p"], 6) for r in lines] == [0.24, 0.48]
    assert all(r["ada/rt"] > -0.99 for r in lines)
    summary = json.loads((run.path / "run.json").read_text())["ada"]
    assert summary["p"] == pytest.approx(0.48) and summary["pipe"] == "bgc" and summary["adaptive"]
    assert json.loads((run.path / "model" / "config.json").read_text())["ada"]["p"] == pytest.approx(0.48)
    page = (run.path / "report.html").read_text()
    assert "<h2>Ada</h2>" in page and "0.48" in page


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # Opacus on D's first layer, harmless
def test_dp_run_with_a_fixed_p_trains_and_logs_nothing_about_the_reals(tmp_path):
    """Under DP the augmentation is applied but r_t is never computed (it would be a function of the private
    images outside the accountant): p stays at ada_p, r_t at 0."""
    dp = ["privacy.noise_multiplier=1.0", "privacy.max_grad_norm=0.5"]
    run = train_tiny(tmp_path / "dp", steps=4, augment="ada", ada_kimg=0, ada_p=0.5, more=dp)
    summary = json.loads((run.path / "run.json").read_text())
    assert "privacy" in summary and summary["ada"]["p"] == 0.5 and summary["ada"]["rt"] == 0.0
    assert not summary["ada"]["adaptive"]

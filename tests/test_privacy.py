"""Differentially private training (ganvae.privacy.dp): accounting, clipping, the uncharged fake pass,
Poisson sampling, exact resume, exports, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from safetensors.torch import load_file

import ganvae
from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.models import Batch
from ganvae.privacy import PrivacyConfig
from ganvae.privacy.accounting import calibrate, epsilon_for, steps_within
from ganvae.privacy.dp import DPPlugin, PoissonStream
from ganvae.training import TrainConfig, Trainer
from ganvae.training import checkpoint as ckpt
from helpers import assert_same_state, tiny_model

GAN_SET = ["model.latent_dim=8", "model.g_width=8", "model.d_width=8", "model.d_steps=2",
           "train.log_every=2", "train.sample_every=4", "train.checkpoint_every=2", "train.device=cpu",
           "train.tensorboard=false", "train.report=false", "privacy.noise_multiplier=1.0",
           "privacy.max_grad_norm=0.5"]
VAE_SET = ["model.latent_dim=4", "model.width=8", "train.log_every=1", "train.device=cpu",
           "train.tensorboard=false", "train.report=false", "privacy.epsilon=4", "privacy.delta=1e-5"]
N_DIGITS = 1617  # digits training images (the seeded 90% split)

# Opacus hooks D's first layer, whose input (the images) needs no gradient: PyTorch says so, harmlessly
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def _gan(out: Path, steps: int, resume: bool = False):
    if resume:
        return ganvae.train(out=out, resume=True, steps=steps, progress=False)
    return ganvae.train("dcgan", "digits", out=out, steps=steps, batch_size=16, seed=3, progress=False, set=GAN_SET)


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    """A DP GAN trained 7 steps straight, and the same trained 3 steps then resumed to 7."""
    root = tmp_path_factory.mktemp("dpgan")
    straight = _gan(root / "a", 7)
    _gan(root / "b", 3)
    resumed = _gan(root / "b", 7, resume=True)
    return root, straight, resumed


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpvae")
    run = ganvae.train("vae", "digits", out=root / "v", steps=4, batch_size=16, seed=1, progress=False, set=VAE_SET)
    return run


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- accounting

def test_dp_default_step_ratio_and_calibration_over_all_d_steps(tmp_path):
    """Under DP a GAN takes GANConfig.DP_D_STEPS D steps per G step unless model.d_steps is given; the noise is
    calibrated for, and the accountant charges, every one of them (steps x d_steps at rate q)."""
    from ganvae.models.gan import GANConfig
    from ganvae.runfolder import resolve
    k = GANConfig.DP_D_STEPS
    assert k > 1
    private = resolve({"model": {"name": "cdcgan"}, "privacy": {"epsilon": 10.0}})
    assert private.model.d_steps == k
    assert resolve({"model": {"name": "dcgan"}}).model.d_steps == 1  # non-private: unchanged
    given = resolve({"model": {"name": "dcgan", "d_steps": 3}, "privacy": {"noise_multiplier": 1.0}})
    assert given.model.d_steps == 3
    sets = [s for s in GAN_SET if not s.startswith(("model.d_steps", "privacy."))] + ["privacy.epsilon=3"]
    ganvae.train("dcgan", "digits", out=tmp_path / "r", steps=3, batch_size=16, seed=3, progress=False, set=sets)
    cfg = (tmp_path / "r" / "config.yaml").read_text()
    assert f"d_steps: {k}" in cfg  # the resolved ratio is recorded: a resume keeps it
    history = ckpt.load_state(tmp_path / "r" / "checkpoints" / "latest.pt")["privacy"]["history"]
    q = 16 / N_DIGITS
    sigma = calibrate(3.0, 1e-5, q, 3 * k)  # calibrated for every planned D step
    assert history == [[pytest.approx(sigma), q, 3 * k]]
    assert epsilon_for([(sigma, q, 3 * k)], 1e-5) <= 3.0 + 1e-6
    rj = json.loads((tmp_path / "r" / "run.json").read_text())["privacy"]
    assert rj["d_steps_per_g_step"] == k and rj["steps"] == 3 * k


def test_reported_epsilon_is_opacus_accountant(gan_runs):
    root, straight, _ = gan_runs
    state = ckpt.load_state(root / "a" / "checkpoints" / "latest.pt")
    history = state["privacy"]["history"]
    q = 16 / N_DIGITS
    # the fake pass is not charged: one accountant step per D step (7 steps x d_steps 2), all at rate q
    assert history == [[1.0, q, 14]]
    acc = RDPAccountant()
    for _ in range(14):
        acc.step(noise_multiplier=1.0, sample_rate=q)
    rj = json.loads((root / "a" / "run.json").read_text())["privacy"]
    assert rj["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-6)
    assert rj["steps"] == 14 and rj["sample_rate"] == q and rj["noise_multiplier"] == 1.0
    assert rj["max_grad_norm"] == 0.5 and rj["accountant"] == "rdp" and rj["delta"] == 1e-5
    # logged every line, growing, the last one the final epsilon
    eps = [r["dp/epsilon"] for r in _metrics(root / "a")]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(rj["epsilon"], rel=1e-5)
    # exactly Opacus's numbers for any schedule, both accountants
    sched = [(1.3, 0.01, 200), (0.9, 0.02, 50)]
    acc = RDPAccountant()
    acc.history = list(sched)
    assert epsilon_for(sched, 1e-5, "rdp") == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-12)
    prv = PRVAccountant()
    prv.history = list(sched)
    assert epsilon_for(sched, 1e-5, "prv") == pytest.approx(prv.get_epsilon(delta=1e-5), rel=1e-9)


def test_calibrated_sigma_ends_at_or_below_target(vae_run):
    q, steps = 64 / 60000, 3000
    for target in (1.0, 8.0):
        sigma = calibrate(target, 1e-5, q, steps)
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        assert target - 0.05 <= acc.get_epsilon(delta=1e-5) <= target
    s = vae_run.path / "run.json"
    p = json.loads(s.read_text())["privacy"]
    assert p["epsilon_target"] == 4.0 and p["epsilon"] <= 4.0 and p["steps"] == 4
    assert "calibrated" in p["noise_multiplier_source"]
    assert steps_within([], p["noise_multiplier"], p["sample_rate"], 4.0, 1e-5) >= 4


def test_losses_are_finite_and_images_seen_are_the_poisson_draws(gan_runs, vae_run):
    root, straight, _ = gan_runs
    for run_dir in (root / "a", vae_run.path):
        for rec in _metrics(run_dir):
            assert all(torch.isfinite(torch.tensor(v)) for k, v in rec.items() if k.startswith(("loss", "elbo")))
    # 7 steps x 2 D steps of Poisson batches; G steps draw no real images
    stream = PoissonStream(torch.zeros(N_DIGITS, 1, 1, 1, dtype=torch.uint8), None, 16 / N_DIGITS, seed=3)
    sizes = [len(stream.indices(k)) for k in range(14)]
    assert straight.images_seen == sum(sizes) and len(set(sizes)) > 1


@pytest.mark.parametrize("objective", ["minimax", "nonsaturating", "hinge", "least-squares"])
def test_separable_objectives_split_into_real_and_fake_halves(objective):
    from ganvae.objectives import GAN_OBJECTIVES

    obj = GAN_OBJECTIVES.get(objective)()
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1), torch.nn.Flatten(0))
    real, fake = torch.randn(5, 1, 8, 8), torch.randn(7, 1, 8, 8)
    whole, r, f = obj.d_loss(D, real, fake), obj.d_real(D, real), obj.d_fake(D, fake)
    assert obj.separable and torch.allclose(whole["loss"], r["loss"] + f["loss"])
    for k, v in {**r, **f}.items():
        if k != "loss":
            assert torch.allclose(whole[k], v), k
    assert not GAN_OBJECTIVES.get("wgan-gp").separable


# ----------------------------------------------------------------------------- the mechanism

def _dp_trainer(model, cfg, images, labels, out, privacy):
    """The loop with the DP plugin; returns (trainer, plugin)."""
    plugin = DPPlugin(privacy)
    return Trainer(model, cfg, images, labels, out, torch.device("cpu"), plugins=[plugin]), plugin


def _trainer(tmp_path, name="dcgan", sigma=1e-9, clip=1e-3, n=200, clipping="per-sample", clip_fakes=False,
             **model_kw):
    """Opacus's per-sample hooks unless ``clipping`` says otherwise: the tests below read ``grad_sample``."""
    torch.manual_seed(0)
    model = tiny_model(name, **model_kw)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,))
    cfg = TrainConfig(steps=5, batch_size=16, seed=0, device="cpu", tensorboard=False, report=False)
    privacy = PrivacyConfig(noise_multiplier=sigma, max_grad_norm=clip, delta=1e-5, clipping=clipping,
                            clip_fakes=clip_fakes)
    return _dp_trainer(model, cfg, images, labels, tmp_path, privacy)


@pytest.mark.parametrize("name,kw", [("dcgan", {}), ("cdcgan", {}), ("cdcgan", {"aux_weight": 1.0}), ("mlp-gan", {}),
                                     ("cdcgan", {"d_features": "effnet"})])
def test_real_half_is_clipped_and_fake_half_added_unclipped(tmp_path, name, kw):
    """With an auxiliary class head (cdcgan, aux_weight) its cross-entropy is in the clipped real half. With a
    D on frozen ImageNet features (d_features=effnet) only its trainable layers get per-sample gradients."""
    tr, dp = _trainer(tmp_path, name, **kw)
    params = [p for p in tr.model.D.parameters()]
    seen = {}
    original = dp._after_private_gradient

    def spy():
        C, B = dp.privacy.max_grad_norm, tr.cfg.batch_size
        gs = [p.grad_sample.flatten(1) for p in params]                  # raw per-sample gradients
        norms = torch.cat(gs, dim=1).norm(dim=1)
        factor = (C / (norms + 1e-6)).clamp(max=1.0)
        expected = [(f_g * factor[:, None]).sum(0) / B for f_g in gs]
        private = [p.grad.flatten().clone() for p in params]
        for e, g in zip(expected, private):                               # sum of clipped samples / E[B]
            torch.testing.assert_close(g, e, atol=1e-9, rtol=1e-4)
        total = torch.cat(private).norm()
        assert total <= C * norms.numel() / B * (1 + 1e-4)                # each sample moves it by <= C / E[B]
        assert (norms > C).all()                                          # clipping was active
        dp.gsm.disable_hooks()
        fake_grad = torch.autograd.grad(dp._pending, params, retain_graph=True, allow_unused=True)
        fake_grad = [torch.zeros_like(p) if g is None else g for p, g in zip(params, fake_grad)]  # the class head
        original()
        added = [p.grad.flatten() - g for p, g in zip(params, private)]
        for a, f in zip(added, fake_grad):
            torch.testing.assert_close(a, f.flatten(), atol=1e-7, rtol=1e-5)
        seen["fake_norm"] = torch.cat([f.flatten() for f in fake_grad]).norm()
        seen["calls"] = seen.get("calls", 0) + 1

    dp._after_private_gradient = spy
    terms = tr.train_step()
    assert seen["calls"] == 1 and seen["fake_norm"] > 100 * dp.privacy.max_grad_norm  # not clipped
    aux = kw.get("aux_weight", 0) > 0
    assert ("loss/D/aux" in terms) == aux and ("loss/G/aux" in terms) == aux
    assert all(torch.isfinite(v) for v in terms.values())
    assert dp.accountant.history == [(1e-9, 16 / 200, 1)]  # one charged step for one D step


@pytest.mark.parametrize("clip", [1e-3, 1e6])
def test_clip_fakes_clips_each_generated_sample_like_the_real_ones(tmp_path, clip):
    """privacy.clip_fakes: the generated half adds sum_i clip_C(g_i) / E[B] (norm <= C) instead of its mean
    gradient; with C above every per-sample norm the two are the same (the scaling is the mean's)."""
    tr, dp = _trainer(tmp_path, "cdcgan", clip=clip)
    dp.privacy = dataclasses.replace(dp.privacy, clip_fakes=True)
    params = [p for p in tr.model.D.parameters()]
    seen = {}
    original = dp._after_private_gradient

    fake_half = dp.halves[1]

    def fake_spy(n, gen):  # the generated half's mean gradient, from the same fakes
        terms = fake_half(n, gen)
        dp.gsm.disable_hooks()  # a plain gradient: Opacus's per-sample hooks stay out of it
        seen["fake"] = torch.cat([g.flatten() for g in torch.autograd.grad(terms["loss"], params,
                                                                            retain_graph=True)])
        dp.gsm.enable_hooks()
        return terms

    def spy():
        private = [p.grad.flatten().clone() for p in params]
        original()
        seen["added"] = torch.cat([p.grad.flatten() - g for p, g in zip(params, private)])

    dp.halves = (dp.halves[0], fake_spy)
    dp._after_private_gradient = spy
    tr.train_step()
    tr.train_step()  # the second step: the first one's real per-sample gradients must not join the generated half
    added, fake = seen["added"], seen["fake"]
    if clip < 1e3:
        assert fake.norm() > 100 * clip and 0 < added.norm() <= clip * (1 + 1e-4)  # each of B fakes moves <= C/B
    else:
        torch.testing.assert_close(added, fake, atol=1e-6, rtol=1e-4)  # nothing clipped: the mean gradient
    assert dp.accountant.history == [(1e-9, 16 / 200, 2)]  # still one charged step per D step
    assert "clipped per sample" in dp.summary()["generated_half"]


def test_empty_poisson_batch_is_a_charged_noisy_step(tmp_path):
    tr, dp = _trainer(tmp_path, sigma=1.0, clip=1.0)
    empty = Batch(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    tr.stream.next = lambda: empty
    before = [p.detach().clone() for p in tr.model.D.parameters()]
    terms = tr.train_step()
    assert all(torch.isfinite(v) for v in terms.values())
    assert tr.images_seen == 0 and dp.accountant.history == [(1.0, 16 / 200, 1)]
    assert any(not torch.equal(b, p) for b, p in zip(before, tr.model.D.parameters()))  # noise still moved D


def test_vae_whole_model_is_private(tmp_path):
    tr, dp = _trainer(tmp_path, "vae", sigma=1.0, clip=1.0)
    terms = tr.train_step()
    assert torch.isfinite(terms["loss/VAE"])
    assert dp.summary()["private"] == "encoder, decoder" and dp.accountant.history == [(1.0, 16 / 200, 1)]


def test_prv_accountant(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("mlp-vae")
    images = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8)
    cfg = TrainConfig(steps=3, batch_size=16, seed=0, device="cpu")
    tr, dp = _dp_trainer(model, cfg, images, None, tmp_path,
                         PrivacyConfig(noise_multiplier=1.5, delta=1e-5, accountant="prv"))
    for _ in range(2):
        tr.train_step()
    acc = PRVAccountant()
    acc.history = [(1.5, 16 / 200, 2)]
    assert dp.summary()["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-5)
    assert dp.summary()["accountant"] == "prv"


def test_poisson_stream_rate_determinism_and_resume():
    images = torch.arange(1000, dtype=torch.uint8).view(1000, 1, 1, 1) % 255
    a = PoissonStream(images, torch.arange(1000), 0.05, seed=7)
    sizes = [a.next().n for _ in range(200)]
    assert abs(sum(sizes) / 200 - 50) < 3 and min(sizes) < 45 < 55 < max(sizes)
    b = PoissonStream(images, torch.arange(1000), 0.05, seed=7)
    b.load_state_dict(a.state_dict())
    x, y = a.next(), b.next()
    assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
    c = PoissonStream(images, None, 0.05, seed=8)
    assert not torch.equal(c.indices(0), PoissonStream(images, None, 0.05, seed=7).indices(0))


# ----------------------------------------------------------------------------- resume, export, info

def test_dp_run_resumes_bit_identically(gan_runs):
    root, straight, resumed = gan_runs
    assert straight.step == resumed.step == 7 and straight.images_seen == resumed.images_seen
    sa = ckpt.load_state(root / "a" / "checkpoints" / "latest.pt")
    sb = ckpt.load_state(root / "b" / "checkpoints" / "latest.pt")
    assert "poisson_draws" in sa["data"] and sa["privacy"]["history"] == [[1.0, 16 / N_DIGITS, 14]]
    assert_same_state(sa, sb)
    assert_same_state(load_file(root / "a" / "model" / "model.safetensors"),
                      load_file(root / "b" / "model" / "model.safetensors"))
    ma = {r["step"]: r for r in _metrics(root / "a")}
    mb = {r["step"]: r for r in _metrics(root / "b")}
    assert sorted(mb) == [2, 3, 4, 6, 7] and sorted(ma) == [2, 4, 6, 7]
    for step in ma:
        assert ma[step]["dp/epsilon"] == mb[step]["dp/epsilon"]
    drop = ("time_s", "img_per_s")
    for step in (6, 7):  # the same steps averaged in both (the resume restarts the window at step 4)
        assert {k: v for k, v in ma[step].items() if k not in drop} == \
               {k: v for k, v in mb[step].items() if k not in drop}


def test_export_keeps_plain_keys_and_info_shows_privacy(gan_runs, capsys, tmp_path):
    root, _, _ = gan_runs
    keys = set(load_file(root / "a" / "model" / "model.safetensors"))
    assert not any("_module" in k for k in keys) and "G.fc.weight" in keys
    # the private D (Opacus-wrapped in training) stays in the checkpoint, with plain keys; the export is G only
    ckpt_keys = set(ckpt.load_state(root / "a" / "checkpoints" / "latest.pt")["model"])
    assert not any("_module" in k for k in ckpt_keys) and "D.head.weight" in ckpt_keys
    assert "D.head.weight" not in keys and {k.split(".")[0] for k in keys} == {"G"}
    meta = json.loads((root / "a" / "model" / "config.json").read_text())
    assert meta["privacy"]["noise_multiplier"] == 1.0 and meta["config"]["d_norm"] == "group"
    g = ganvae.load(root / "a")
    assert g.sample(4, seed=0).shape == (4, 1, 8, 8)
    assert main(["sample", str(root / "a"), "-n", "4", "--out", str(tmp_path / "g.png")]) == 0
    capsys.readouterr()
    assert main(["info", str(root / "a")]) == 0
    out = capsys.readouterr().out
    assert "privacy: (" in out and "1e-05)-DP, rdp accountant" in out
    assert "noise multiplier 1 (given), clipping norm 0.5" in out and "sample rate 0.009895, 14 private steps" in out
    assert "model.d_norm=group" in out
    cfg = (root / "a" / "config.yaml").read_text()
    assert "privacy:" in cfg and "noise_multiplier: 1.0" in cfg


def test_budget_stop_in_the_loop(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("dcgan")
    images = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8)
    cfg = TrainConfig(steps=2, batch_size=16, seed=0, device="cpu", tensorboard=False, report=False,
                      log_every=1)
    tr, dp = _dp_trainer(model, cfg, images, None, tmp_path, PrivacyConfig(epsilon=2.0, delta=1e-5))
    allowed = steps_within([], dp.sigma(), 16 / 200, 2.0, 1e-5)
    assert allowed >= 2
    result = tr.run(allowed + 5, progress=False)  # asks for more steps than sigma was calibrated for
    assert result["step"] == allowed and "privacy budget" in result["stopped"]
    assert dp.epsilon() <= 2.0 < dp.epsilon(1)
    state = ckpt.load_state(tmp_path / "checkpoints" / "latest.pt")
    assert state["step"] == allowed and state["privacy"]["history"][0][2] == allowed
    assert _metrics(tmp_path)[-1]["dp/epsilon"] == pytest.approx(dp.epsilon(), rel=1e-5)
    with pytest.raises(GanvaeError, match="privacy budget"):
        tr.run(allowed + 5, progress=False)


def test_budget_stops_cleanly_when_the_target_epsilon_would_be_exceeded(vae_run):
    p = json.loads((vae_run.path / "run.json").read_text())["privacy"]
    allowed = steps_within([], p["noise_multiplier"], p["sample_rate"], 4.0, 1e-5)
    if allowed == 4:  # the calibration left no room for a fifth step: refused with one line
        with pytest.raises(GanvaeError, match="privacy budget"):
            ganvae.train(out=vae_run.path, resume=True, steps=allowed + 3, progress=False)
        return
    run = ganvae.train(out=vae_run.path, resume=True, steps=allowed + 3, progress=False)
    assert run.step == allowed and "privacy budget" in run.stopped
    p2 = json.loads((vae_run.path / "model" / "config.json").read_text())["privacy"]
    assert p2["steps"] == allowed and p2["epsilon"] <= 4.0 < epsilon_for(
        [(p["noise_multiplier"], p["sample_rate"], allowed + 1)], 1e-5)


# ----------------------------------------------------------------------------- bad input

BAD = [
    (["--dp-epsilon", "0"], "privacy.epsilon (--dp-epsilon): expected a finite number > 0"),
    (["--dp-epsilon", "inf"], "privacy.epsilon: expected a finite number, got inf"),
    (["--dp-epsilon", "1e300"], "privacy.epsilon (--dp-epsilon) 1e+300: at most 1000"),
    (["--dp-epsilon", "1", "--dp-delta", "0"], "privacy.delta (--dp-delta): expected 0 < delta"),
    (["--dp-epsilon", "1", "--dp-delta", "0.001"], "privacy.delta (--dp-delta) 0.001: expected < 1/N"),
    (["--dp-epsilon", "1", "--dp-noise-multiplier", "1"], "not both"),
    (["--dp-noise-multiplier", "-1"], "privacy.noise_multiplier (--dp-noise-multiplier): expected a number > 0"),
    (["--dp-epsilon", "1", "--dp-max-grad-norm", "0"], "privacy.max_grad_norm (--dp-max-grad-norm): expected"),
    (["--dp-delta", "1e-6"], "privacy.delta (--dp-delta) needs privacy.epsilon"),
    (["--dp-epsilon", "1", "--objective", "wgan-gp", "--set", "model.d_norm=layer"], "model.objective=wgan-gp"),
    (["--dp-epsilon", "1", "--set", "model.r1_gamma=1"], "model.r1_gamma > 0"),
    (["--dp-epsilon", "1", "--model", "tcvae"], "model 'tcvae' cannot be trained privately"),
    (["--dp-epsilon", "1", "--model", "vae-gan"], "model 'vae-gan' cannot be trained privately"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    argv = ["train", "--data", "digits", "--dry-run", "--quiet", "--out", str(tmp_path / "r")] + args
    if "--model" not in args:
        argv += ["--model", "dcgan"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ganvae: error: ") and message in err, err


def test_resume_cannot_change_privacy(gan_runs):
    root, _, _ = gan_runs
    with pytest.raises(GanvaeError, match="privacy.noise_multiplier"):
        ganvae.train(out=root / "a", resume=True, steps=9, progress=False, set=["privacy.noise_multiplier=2"])

"""The loop: exact resume, determinism, atomic checkpoints, refused pickles, divergence."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganvae
from ganvae.errors import GanvaeError
from ganvae.models.gan import GAN
from ganvae.training import checkpoint as ckpt
from ganvae.training.loop import DivergenceError
from helpers import assert_same_state, tiny_model, train_tiny

# bit-identity is promised on CPU: tiny_set pins train.device=cpu, so a machine with a GPU tests the same thing
LOOP = dict(seed=3, log_every=2, sample_every=4, checkpoint_every=2)
TINY = {
    "dcgan": dict(model="dcgan", d_steps=2, **LOOP),
    "vae": dict(model="vae", latent_dim=4, **LOOP),
    "vae-binarized": dict(model="vae", latent_dim=4, more=["data.binarize=true"], **LOOP),
}


def _state(run_dir: Path) -> dict:
    return ckpt.load_state(run_dir / "checkpoints" / "latest.pt")


@pytest.mark.parametrize("name", ["dcgan", "vae", "vae-binarized"])
def test_resume_is_bit_identical(tmp_path, name):
    straight = train_tiny(tmp_path / "a", steps=7, **TINY[name])
    train_tiny(tmp_path / "b", steps=3, **TINY[name])
    resumed = train_tiny(tmp_path / "b", steps=7, resume=True)
    assert straight.step == resumed.step == 7
    assert straight.images_seen == resumed.images_seen
    sa, sb = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert_same_state(sa, sb)
    ea = load_file(tmp_path / "a" / "model" / "model.safetensors")
    eb = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert_same_state(ea, eb)
    # one metrics line per logged step, no duplicates after the resume
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 7


def test_resume_after_a_crash_is_bit_identical(tmp_path, monkeypatch):
    straight = train_tiny(tmp_path / "a", steps=6, **TINY["dcgan"])
    real_step = ganvae.training.Trainer.train_step

    def crashing(self):
        if self.step == 5:  # dies during step 6; the last checkpoint is step 4
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(ganvae.training.Trainer, "train_step", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_tiny(tmp_path / "b", steps=6, **TINY["dcgan"])
    assert int(_state(tmp_path / "b")["step"]) == 4
    monkeypatch.setattr(ganvae.training.Trainer, "train_step", real_step)
    resumed = train_tiny(tmp_path / "b", steps=6, resume=True)
    assert resumed.step == straight.step == 6
    assert_same_state(_state(tmp_path / "a"), _state(tmp_path / "b"))


def test_same_seed_same_weights_and_different_seed_differs(tmp_path):
    a = train_tiny(tmp_path / "a", steps=3, **TINY["dcgan"])
    b = train_tiny(tmp_path / "b", steps=3, **TINY["dcgan"])
    assert_same_state(_state(a.path)["model"], _state(b.path)["model"])
    c = train_tiny(tmp_path / "c", steps=3, seed=4, d_steps=2)
    assert not torch.equal(_state(a.path)["model"]["G.fc.weight"], _state(c.path)["model"]["G.fc.weight"])


def test_run_folder_contents(tmp_path):
    run = train_tiny(tmp_path / "r", steps=4, **TINY["dcgan"])
    assert (run.path / "config.yaml").is_file() and (run.path / "run.json").is_file()
    assert (run.path / "checkpoints" / "final.pt").is_file()
    assert [p.name for p in run.samples] == ["step_000004.png"]
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    for key in ("images_seen", "img_per_s", "loss/D", "loss/G", "loss/D/real", "loss/G/adv"):
        assert key in lines[-1]
    assert lines[-1]["images_seen"] == 4 * 2 * 16  # d_steps=2 real batches of 16 per step
    run_json = json.loads((run.path / "run.json").read_text())
    assert run_json["data"]["split"] == "seeded" and run_json["data"]["holdout"] == 0.1
    g = ganvae.load(run.path)
    assert g.sample(3, seed=0).shape == (3, 1, 8, 8)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt.save_state({"step": 1, "w": torch.ones(3)}, path)
    good = path.read_bytes()
    real_save = torch.save

    def half_then_crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_state({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temp file left behind
    assert ckpt.load_state(path)["step"] == 1


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _Evil(marker)}, bad)
    assert not marker.exists()
    with pytest.raises(GanvaeError, match="refused"):
        ckpt.load_state(bad)
    assert not marker.exists()
    # and resuming a run whose checkpoint was swapped for it refuses too
    run = train_tiny(tmp_path / "r", steps=2, **TINY["dcgan"])
    bad.replace(run.path / "checkpoints" / "latest.pt")
    with pytest.raises(GanvaeError, match="refused"):
        train_tiny(run.path, steps=4, resume=True)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "t.pt"
    ckpt.save_state({"w": torch.ones(1000)}, p)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(GanvaeError, match="unreadable"):
        ckpt.load_state(p)


def _poison_d_phase(monkeypatch, first_bad_step: int, d_steps: int = 2) -> None:
    """D's loss term ``loss/D/real`` (and so ``loss``) is NaN from ``first_bad_step`` on."""
    real_d = GAN.d_phase
    calls = {"n": 0}

    def poisoned(self, batch, gen):
        calls["n"] += 1
        out = real_d(self, batch, gen)
        if calls["n"] > (first_bad_step - 1) * d_steps:
            out["loss/D/real"] = out["loss/D/real"] * float("nan")
            out["loss"] = out["loss/D/real"] + out["loss/D/fake"]
        return out

    monkeypatch.setattr(GAN, "d_phase", poisoned)


def test_nan_loss_stops_with_the_step_and_term_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    _poison_d_phase(monkeypatch, 4)
    with pytest.raises(DivergenceError) as e:
        train_tiny(tmp_path / "r", steps=8, **TINY["dcgan"])
    msg = str(e.value)
    assert "step 4" in msg and "loss/D/real" in msg and "nan" in msg
    assert int(_state(tmp_path / "r")["step"]) == 2
    assert e.value.exit_code != 0


def test_deferred_finite_check_stops_at_the_next_boundary_and_names_the_first_bad_step(tmp_path, monkeypatch):
    """The CUDA mode (no host sync per phase), forced on the CPU: found at the next boundary, nothing bad saved."""
    from ganvae.training.loop import Trainer

    _poison_d_phase(monkeypatch, 5)
    monkeypatch.setattr(Trainer, "defer_finite_check", True)
    run = tmp_path / "r"
    with pytest.raises(DivergenceError) as e:
        train_tiny(run, steps=12, seed=3, d_steps=2, log_every=4, sample_every=4, checkpoint_every=4)
    msg = str(e.value)
    assert "loss/D" in msg and "at step 5" in msg and "found at step 8" in msg
    st = _state(run)
    assert int(st["step"]) == 4  # the step-8 checkpoint was not written
    assert all(torch.isfinite(v).all() for v in st["model"].values() if v.is_floating_point())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4]  # no line holds the NaN steps


def test_ema_half_life():
    from ganvae.training.ema import EMA

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, half_life_kimg=0.64, rampup=None)  # 640 images = 10 steps of 64
    torch.nn.init.ones_(net.weight)
    for i in range(10):
        ema.update(net, 64, 64 * (i + 1))
    assert abs(ema.module.weight.item() - 0.5) < 1e-6


def test_resume_rejects_changes_that_break_exactness(tmp_path):
    run = train_tiny(tmp_path / "r", steps=2, **TINY["vae"])
    with pytest.raises(GanvaeError, match="cannot change"):
        ganvae.train(out=run.path, resume=True, steps=4, progress=False, set=["train.batch_size=8"])
    with pytest.raises(GanvaeError, match="already at step 2"):
        ganvae.train(out=run.path, resume=True, steps=2, progress=False)


def test_dynamic_binarization_gives_fresh_binary_batches():
    from ganvae.training.batches import BatchStream

    images = torch.full((8, 1, 2, 2), 128, dtype=torch.uint8)
    stream = BatchStream(images, None, 8, seed=0, binarize=torch.Generator().manual_seed(0))
    a, b = stream.next().x, stream.next().x
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)


def test_channels_last_is_the_cpu_default_for_conv_nets_only(tmp_path):
    from ganvae.training import TrainConfig, Trainer

    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    for name, conv in (("dcgan", True), ("mlp-gan", False)):
        model = tiny_model(name)
        tr = Trainer(model, TrainConfig(batch_size=8, tensorboard=False), images, None, tmp_path, torch.device("cpu"))
        assert tr.channels_last is conv
        w = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1) if conv else None
        if conv:
            assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        tr.train_step()  # trains in that format
    model = tiny_model("dcgan")
    tr = Trainer(model, TrainConfig(batch_size=8, tensorboard=False, channels_last=False), images, None, tmp_path,
                 torch.device("cpu"))
    assert tr.channels_last is False

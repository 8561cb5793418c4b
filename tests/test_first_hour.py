"""What a newcomer sees while training: an early sample grid, losses on the bar from the first steps, an ETA
that respects --max-minutes, images counted once per step, the scores in `ganvae info`."""

from __future__ import annotations

import json

import ganvae
from ganvae.cli import main
from ganvae.training import loop
from helpers import train_tiny


def test_first_grid_comes_early_then_the_usual_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "EARLY_GRID_STEP", 3)
    run = train_tiny(tmp_path / "r", steps=12, sample_every=10, log_every=5)
    assert [p.name for p in run.samples] == ["step_000003.png", "step_000010.png", "step_000012.png"]


def test_no_early_grid_when_the_schedule_is_already_early(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "EARLY_GRID_STEP", 3)
    run = train_tiny(tmp_path / "r", steps=6, sample_every=2, log_every=5)
    assert [p.name for p in run.samples] == ["step_000002.png", "step_000004.png", "step_000006.png"]


def test_losses_on_the_bar_from_the_first_step_and_eta_within_the_budget(tmp_path, capsys):
    ganvae.train("dcgan", "digits", out=tmp_path / "r", steps=100000, batch_size=16, max_minutes=0.05,
                 set=["model.latent_dim=8", "model.g_width=8", "model.d_width=8", "train.log_every=1000",
                      "train.report=false", "train.tensorboard=false", "train.sample_every=100000"])
    err = capsys.readouterr().err
    assert "loss/D=" in err  # the bar shows losses long before the first log line (step 1000)
    # the bar's total was shrunk to the steps that fit in the budget: its last state is not "x/100000"
    last = [ln for ln in err.replace("\r", "\n").splitlines() if "step" in ln and "/" in ln][-1]
    assert "/100000" not in last, last


def test_vae_gan_counts_each_step_s_images_once(tmp_path):
    run = train_tiny(tmp_path / "r", "vae-gan", steps=5, batch_size=16)
    assert run.images_seen == 5 * 16
    last = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["images_seen"] == 80


def test_info_shows_the_latest_scores_and_whether_it_is_training(tmp_path, capsys):
    run = train_tiny(tmp_path / "r", steps=4)
    ganvae.evaluate(run.path, "fid", n=50, baselines=False, log=None)
    d = ganvae.info(run.path)
    assert d["scores"]["fid"]["source"] == "ganvae eval" and d["scores"]["fid"]["value"] > 0
    assert d["running"] is None
    assert main(["info", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "not running" in out and "fid" in out

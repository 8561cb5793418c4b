"""Training-health alarms: scripted histories (a collapse, an overfitting D, a divergence, a healthy run), the
probe's statistics against hand-computed values, the config, and one tiny real run with a forced alarm that
shows the warning line, the metrics.jsonl record, the report row, and is not re-fired by a resume."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.training.health import HealthConfig, HealthMonitor, health_config
from ganvae.training.health_plugin import HealthPlugin, d_stats, mean_pairwise_distance


def ev(step: int, **values) -> dict:
    """A periodic-evaluation reading (64 images per step)."""
    return {"step": step, "images_seen": 64 * step, **{f"eval/{k}": v for k, v in values.items()}}


def probe(step: int, **values) -> dict:
    """A probe reading (64 images per step)."""
    return {"step": step, "images_seen": 64 * step, **{f"health/{k}": v for k, v in values.items()}}


def feed(monitor: HealthMonitor, readings: list[dict]) -> list:
    return [a for r in readings for a in monitor.observe(r)]


NO_WARMUP = HealthConfig(warmup_kimg=0)
HEALTHY_PROBE = dict(diversity=0.8, r_t=0.3, r_heldout=0.25, d_loss=1.2, g_loss=0.9)


# ------------------------------------------------------------------------------------------ scripted histories
def test_recall_falling_is_a_collapse_that_began_at_its_first_low_evaluation():
    recall = [0.2, 0.45, 0.6, 0.58, 0.40, 0.35, 0.3]  # best 0.6 at step 300; 70% of it: 0.42
    alarms = feed(HealthMonitor(NO_WARMUP), [ev(100 * (i + 1), recall=v) for i, v in enumerate(recall)])
    assert [(a.kind, a.began, a.step) for a in alarms] == [("collapse", 500, 600)]
    e = alarms[0].evidence
    assert e["best"] == 0.6 and e["best_step"] == 300 and e["threshold"] == pytest.approx(0.42)
    assert "eval/recall fell to 0.35" in alarms[0].message and "mode collapse since step 500" in alarms[0].message


def test_modes_falling_is_a_collapse():
    modes = [10, 10, 9, 10, 6, 5, 4]  # below 7 of 10 from step 500
    alarms = feed(HealthMonitor(NO_WARMUP), [ev(100 * (i + 1), modes_covered=v) for i, v in enumerate(modes)])
    assert [(a.kind, a.began, a.step) for a in alarms] == [("collapse", 500, 600)]


def test_probe_diversity_falling_is_a_collapse_after_patience_probes():
    div = [0.01, 0.2, 0.8, 0.85, 0.82, 0.2, 0.15, 0.1, 0.1]  # an untrained G starts low: not an alarm
    readings = [probe(50 * (i + 1), **{**HEALTHY_PROBE, "diversity": v}) for i, v in enumerate(div)]
    alarms = feed(HealthMonitor(NO_WARMUP), readings)
    assert [(a.kind, a.began, a.step) for a in alarms] == [("collapse", 300, 400)]  # patience 3: 300, 350, 400


def test_an_overfitting_discriminator():
    r_t = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.0]
    r_heldout = [0.1, 0.25, 0.3, 0.1, -0.2, -0.5, -0.6]  # gap >= 0.5 with r_t >= 0.6 from step 200
    readings = [probe(50 * (i + 1), **{**HEALTHY_PROBE, "r_t": a, "r_heldout": b})
                for i, (a, b) in enumerate(zip(r_t, r_heldout))]
    alarms = feed(HealthMonitor(NO_WARMUP), readings)
    assert [(a.kind, a.began, a.step) for a in alarms] == [("d_overfit", 200, 300)]
    assert alarms[0].evidence["gap"] == pytest.approx(1.5)


def test_d_winning_while_g_loss_climbs_is_a_divergence():
    d = [1.2, 1.1, 1.0, 0.9, 0.5, 0.08, 0.05, 0.03, 0.02]
    g = [0.8, 0.9, 0.85, 1.0, 1.5, 2.5, 3.5, 4.5, 6.0]  # median of the first five: 0.9; 2x: 1.8
    readings = [probe(50 * (i + 1), **{**HEALTHY_PROBE, "d_loss": a, "g_loss": b})
                for i, (a, b) in enumerate(zip(d, g))]
    alarms = feed(HealthMonitor(NO_WARMUP), readings)
    assert [(a.kind, a.began, a.step) for a in alarms] == [("divergence", 300, 400)]
    assert alarms[0].evidence["g_median"] == pytest.approx(0.9)


def test_fid_rising_far_above_its_best_is_a_divergence():
    fid = [300, 120, 60, 40, 45, 85, 90, 120]  # best 40; 2x: 80 from step 600
    alarms = feed(HealthMonitor(NO_WARMUP), [ev(100 * (i + 1), fid=v) for i, v in enumerate(fid)])
    assert [(a.kind, a.began, a.step) for a in alarms] == [("divergence", 600, 700)]


def test_a_healthy_noisy_run_raises_nothing_and_warmup_is_not_judged():
    rnd = random.Random(0)
    cfg = HealthConfig()  # the defaults, warm-up of 10 kimg included
    readings = [probe(s, diversity=0.01, r_t=1.0, r_heldout=-1.0, d_loss=0.01, g_loss=6.0 + s)  # wild, in warm-up
                for s in range(10, 150, 10)]
    for i in range(300):
        s = 200 + 50 * i
        readings.append(probe(s, diversity=0.7 + rnd.gauss(0, 0.05), r_t=0.3 + rnd.gauss(0, 0.1),
                              r_heldout=0.25 + rnd.gauss(0, 0.1), d_loss=1.2 + rnd.gauss(0, 0.15),
                              g_loss=0.9 + rnd.gauss(0, 0.2)))
        if i % 20 == 19:
            t = i / 300
            readings.append(ev(s, fid=(200 - 180 * t) * (1 + rnd.gauss(0, 0.1)),
                               recall=0.3 + 0.3 * t + rnd.gauss(0, 0.03),
                               coverage=0.4 + 0.3 * t + rnd.gauss(0, 0.03), modes_covered=rnd.choice([9, 10]),
                               diversity=0.8 + rnd.gauss(0, 0.05)))
    assert feed(HealthMonitor(cfg), readings) == []


def test_an_alarm_fires_once_and_again_only_after_its_condition_cleared():
    bad, good = dict(HEALTHY_PROBE, r_t=1.0, r_heldout=0.0), HEALTHY_PROBE
    script = [bad] * 8 + [good] + [bad] * 4
    alarms = feed(HealthMonitor(NO_WARMUP), [probe(10 * (i + 1), **v) for i, v in enumerate(script)])
    assert [(a.kind, a.began, a.step) for a in alarms] == [("d_overfit", 10, 30), ("d_overfit", 100, 120)]


def test_state_round_trip_neither_forgets_nor_repeats():
    recall = [0.2, 0.45, 0.6, 0.58, 0.40, 0.35, 0.3, 0.3]
    readings = [ev(100 * (i + 1), recall=v) for i, v in enumerate(recall)]
    straight = feed(HealthMonitor(NO_WARMUP), readings)
    for cut in (4, 5, 6):  # mid-streak, on the alarm, after it
        first = HealthMonitor(NO_WARMUP)
        before = feed(first, readings[:cut])
        again = HealthMonitor(NO_WARMUP)
        again.load_state_dict(json.loads(json.dumps(first.state_dict())))  # plain JSON: checkpoint-safe
        after = feed(again, readings[cut:])
        assert [(a.kind, a.began, a.step) for a in before + after] == [(a.kind, a.began, a.step) for a in straight]
        assert again.state_dict() == json.loads(json.dumps(monitor_after(readings).state_dict()))
    fresh = HealthMonitor(NO_WARMUP)
    fresh.load_state_dict(None)  # a checkpoint from before health alarms
    assert fresh.fired == []


def monitor_after(readings: list[dict]) -> HealthMonitor:
    m = HealthMonitor(NO_WARMUP)
    feed(m, readings)
    return m


# ------------------------------------------------------------------------------------------ probe statistics
def test_d_stats_against_hand_computed_values():
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus
    d_train, d_held, d_fake = [2.0, -1.0, 0.5, 3.0], [-1.0, -2.0, 1.0, -1.0], [0.0, -2.0]
    out = d_stats(torch.tensor(d_train), torch.tensor(d_held), torch.tensor(d_fake))
    assert out["health/r_t"] == pytest.approx(0.5) and out["health/r_heldout"] == pytest.approx(-0.5)
    d_loss = sum(sp(-v) for v in d_train) / 4 + sum(sp(v) for v in d_fake) / 2
    assert out["health/d_loss"] == pytest.approx(d_loss, rel=1e-6)
    assert out["health/g_loss"] == pytest.approx((math.log(2) + sp(2.0)) / 2, rel=1e-6)
    private = d_stats(None, torch.tensor(d_held), torch.tensor(d_fake))  # DP: no training reals
    assert "health/r_t" not in private
    assert private["health/d_loss"] == pytest.approx(sum(sp(-v) for v in d_held) / 4 + sum(sp(v) for v in d_fake) / 2,
                                                     rel=1e-6)


def test_mean_pairwise_distance_closed_form():
    from ganvae.metrics.diversity import mean_pairwise_distance as feature_mpd, relative_diversity

    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])  # distances 5, 0, 5: ordered pairs 20 / 6
    assert mean_pairwise_distance(x) == pytest.approx(20 / 6) and feature_mpd(x) == pytest.approx(20 / 6)
    assert mean_pairwise_distance(x.view(3, 1, 1, 2)) == pytest.approx(20 / 6)  # images are flattened
    assert relative_diversity(torch.zeros(4, 2), x) == 0.0  # identical samples: collapsed
    assert relative_diversity(x, x) == pytest.approx(1.0)


def test_private_runs_probe_no_training_image():
    imgs = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    held = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    plugin = HealthPlugin(HealthConfig(probe_n=8), imgs, None, held, None, private=True)
    assert plugin.train == (None, None) and plugin.heldout[0].shape == (8, 1, 4, 4)
    assert plugin.real_spread == pytest.approx(mean_pairwise_distance(plugin.heldout[0]))


# ------------------------------------------------------------------------------------------ config and TensorBoard
def test_config_forms_and_errors():
    assert health_config(None) == HealthConfig() and not health_config(False).enabled
    assert not health_config("off").enabled and health_config({"patience": 2}).patience == 2
    with pytest.raises(GanvaeError, match="train.health: unknown key bogus"):
        health_config({"bogus": 1})
    with pytest.raises(GanvaeError, match="train.health.collapse_drop"):
        health_config({"collapse_drop": 1.5})
    with pytest.raises(GanvaeError, match="train.health: expected true, false or a mapping"):
        health_config(3)


def test_tensorboard_gets_an_alarm_as_text():
    from ganvae.training.tb import TensorBoard

    calls = []

    class Writer:
        def add_text(self, tag, text, step):
            calls.append(("text", tag, text, step))

        def add_scalar(self, tag, value, step):
            calls.append(("scalar", tag, value, step))

    tb = TensorBoard.__new__(TensorBoard)
    tb.writer = Writer()
    tb.scalars({"step": 4, "images_seen": 64, "alarm": "collapse", "began": 3, "message": "m", "evidence": {}}, 64)
    assert calls == [("text", "alarm/collapse", "m", 64), ("scalar", "alarm/collapse", 3, 64)]


# ------------------------------------------------------------------------------------------ a real tiny run
FORCE = ["train.health.warmup_kimg=0", "train.health.patience=1", "train.health.overfit_rt=-1",
         "train.health.overfit_gap=-2"]  # D "overfits" at the first probe: the alarm must fire at step 2


def _records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_forced_alarm_is_warned_logged_reported_and_not_refired_by_resume(tmp_path, capsys):
    import ganvae
    from ganvae.cli import main
    from helpers import set_args, tiny_set

    out = tmp_path / "r"
    sets = tiny_set("dcgan", seed=3, log_every=2, checkpoint_every=2, sample_every=4, report=True, more=FORCE)
    code = main(["train", "--model", "dcgan", "--data", "digits", "--steps", "4", "--batch-size", "16",
                 "--out", str(out), "--quiet", *set_args(sets)])
    err = capsys.readouterr().err
    assert code == 0
    lines = [ln for ln in err.splitlines() if "health alarm" in ln]
    assert len(lines) == 1 and lines[0].startswith(
        "ganvae: warning: health alarm at step 2: discriminator overfitting since step 2: D's r_t")
    alarms = [r for r in _records(out) if "alarm" in r]
    assert [(r["alarm"], r["began"], r["step"]) for r in alarms] == [("d_overfit", 2, 2)]
    assert "r_t" in alarms[0]["evidence"]
    probes = [r for r in _records(out) if "health/r_t" in r]
    assert [r["step"] for r in probes] == [2, 4] and all(-1 <= r["health/r_t"] <= 1 for r in probes)
    page = (out / "report.html").read_text()
    assert "Health alarms" in page and "discriminator overfitting since step 2" in page
    info = ganvae.info(out)
    assert [(a["alarm"], a["began"]) for a in info["alarms"]] == [("d_overfit", 2)] and info["step"] == 4

    code = main(["train", "--resume", str(out), "--steps", "6", "--quiet"])  # the condition still holds
    assert code == 0 and "health alarm" not in capsys.readouterr().err
    assert [(r["alarm"], r["step"]) for r in _records(out) if "alarm" in r] == [("d_overfit", 2)]
    assert max(r["step"] for r in _records(out)) == 6


def test_the_probe_does_not_change_training(tmp_path):
    from ganvae.training import checkpoint as ckpt
    from helpers import assert_same_state, train_tiny

    on = train_tiny(tmp_path / "on", steps=4, seed=3, log_every=1, more=["train.health.probe_n=8"])
    off = train_tiny(tmp_path / "off", steps=4, seed=3, log_every=1, more=["train.health=false"])
    a, b = (ckpt.load_state(r.path / "checkpoints" / "latest.pt") for r in (on, off))
    assert "health" in a and "health" not in b and len([r for r in _records(on.path) if "health/d_loss" in r]) == 4
    a.pop("health")
    assert_same_state(a, b)

"""A newcomer's first hour with `ganvae eval` and `ganvae audit`: scores a person can read, KID on a small
folder, and feedback while waiting (a bar on stderr, and one line up front when the work will be slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import ganvae
from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.metrics import progress
from ganvae.metrics.evaluate import kid_subset
from ganvae.metrics.reading import read_score
from ganvae.report import build_report
from helpers import train_tiny


# -- the reading, on constructed cases ---------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    # lower is better (FID): better than real data, close to it, between, far, barely, worse than untrained
    (("fid", 0.05, 0.1, 114.0, True), "FID 0.05: as good as real data (0.1); untrained: 114"),
    # FID on a log scale: t = log(114 / v) / log(114 / 0.1) = log(114 / v) / 7.039 (hand-computed below)
    (("fid", 0.15, 0.1, 114.0, True), "FID 0.15: close to real data (0.1), far better than untrained (114); "
                                       "94% of the way from untrained to real data"),      # 6.633 / 7.039
    (("fid", 2.0, 0.1, 114.0, True), "FID 2: nearer real data (0.1) than untrained (114); "
                                      "57% of the way from untrained to real data"),       # 4.043 / 7.039
    (("fid", 8.0, 0.1, 114.0, True), "FID 8: far from real data (0.1), clearly better than untrained (114); "
                                      "38% of the way from untrained to real data"),       # 2.657 / 7.039
    (("fid", 80.0, 0.1, 114.0, True), "FID 80: far from real data (0.1), barely better than untrained (114); "
                                       "5% of the way from untrained to real data"),       # 0.354 / 7.039
    (("fid", 48.0, 3.4, 45.0, True), "FID 48: worse than an untrained generator (45); real data: 3.4"),
    (("fid", 45.0, 3.4, 45.0, True), "FID 45: no better than an untrained generator (45); real data: 3.4"),
    # higher is better (IS, precision, recall)
    (("is", 9.8, 9.5, 1.2, False), "IS 9.8: as good as real data (9.5); untrained: 1.2"),
    (("recall", 0.6, 0.9, 0.1, False), "recall 0.6: nearer real data (0.9) than untrained (0.1); "
                                        "62% of the way from untrained to real data"),       # linear: 0.5 / 0.8
    (("recall", 0.3, 0.9, 0.1, False), "recall 0.3: far from real data (0.9), clearly better than untrained (0.1); "
                                        "25% of the way from untrained to real data"),
    (("recall", 0.05, 0.9, 0.1, False), "recall 0.05: worse than an untrained generator (0.1); real data: 0.9"),
    # the untrained generator scores better than real data: the metric tells nothing here
    (("precision", 0.9, 0.75, 0.98, False), "precision 0.9: the untrained generator scores 0.98, above real data "
                                            "(0.75), so precision does not tell good samples from bad ones here"),
    (("kid", 0.2, 0.3, 0.3, True), "KID 0.2: the untrained generator scores 0.3, the same as real data (0.3), so "
                                   "KID does not tell good samples from bad ones here"),
    # one reference only (nll has no real-data value), or none
    (("nll", 85.0, None, 543.0, True), "NLL 85: better than an untrained generator (543)"),
    (("elbo", -600.0, None, -543.0, False), "ELBO -600: worse than an untrained generator (-543)"),
    (("fid", 8.0, None, None, True), None),
    (("fid", None, 0.1, 114.0, True), None),
    (("fid", float("nan"), 0.1, 114.0, True), None),
])
def test_read_score(args, expected):
    assert read_score(*args) == expected


# -- KID on a small folder ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A 4-step dcgan on a folder of 60 8x8 images (the test split: 6 of them)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for i in range(60):
        img = np.zeros((8, 8), np.uint8)
        img[rng.integers(0, 6):, rng.integers(0, 6):] = rng.integers(80, 255)  # a bright corner block
        Image.fromarray(img, "L").save(root / "imgs" / f"{i:03d}.png")
    return train_tiny(root / "run", data=f"folder:{root / 'imgs'}", steps=4, batch_size=16,
                      more=["data.image_size=8"]).path


def test_kid_adapts_its_subset_to_a_small_test_split(folder_run, capsys):
    code = main(["eval", str(folder_run), "--metrics", "fid,kid", "--n", "40", "--feature-net", "mnist"])
    out = capsys.readouterr().out
    assert code == 0, out
    head = out.splitlines()[0]
    assert "40 samples vs 6 test images" in head
    assert "KID subsets of 6, not 1000: the test split has 6 images" in head
    recs = {r["metric"]: r for r in map(json.loads, (folder_run / "eval.jsonl").read_text().splitlines())}
    assert recs["kid"]["kid_subset_size"] == 6
    assert recs["kid"]["protocol"].endswith("; subsets of 6 (not 1000: the test split has 6 images)")
    assert recs["kid"]["reading"] and recs["kid_std"]["reading"] is None  # kid_std is no score to read out
    assert all(r["real_data"] is not None and r["untrained"] is not None for r in recs.values())


def test_kid_subset_refuses_only_below_two():
    assert kid_subset(1000, {"--n is {}": 5000, "the test split has {} images": 51}) == (
        51, "not 1000: the test split has 51 images")
    assert kid_subset(100, {"--n is {}": 150, "the test split has {} images": 150}) == (100, "")
    assert kid_subset(1000, {"--n is {}": 2, "the test split has {} images": 51})[0] == 2
    with pytest.raises(GanvaeError, match="the train split .real data. has 1 images; KID needs at least 2"):
        kid_subset(1000, {"--n is {}": 50, "the train split (real data) has {} images": 1})


def test_the_kid_metric_never_asks_for_more_than_a_side_has():
    """The periodic evaluator (train.eval_n samples) builds its options with the default subset size 1000."""
    import torch

    from ganvae.metrics import METRICS, EvalInputs, Side

    class Net:
        def features(self, x, progress=None):
            return x.flatten(1)

    g = torch.Generator().manual_seed(0)
    gen, ref = (Side(torch.rand(n, 1, 4, 4, generator=g), Net()) for n in (30, 20))
    out = METRICS.get("kid").compute(EvalInputs(gen, ref, None, {"kid_subset_size": 1000}))
    assert np.isfinite(out["kid"])


# -- feedback while waiting ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_vae(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("vae") / "vae", "mlp-vae", steps=5, batch_size=32, latent_dim=4).path


@pytest.fixture
def bars_at_once(monkeypatch):
    """Bars appear as soon as work starts (by default only once it has lasted progress.BAR_DELAY_S)."""
    monkeypatch.setattr(progress, "BAR_DELAY_S", 0.0)


def test_eval_shows_bars_on_stderr_and_the_table_reads(digits_vae, capsys, bars_at_once):
    code = main(["eval", str(digits_vae), "--metrics", "fid,pr", "--n", "300"])
    cap = capsys.readouterr()
    assert code == 0
    for stage in ("sampling: model", "features: model", "features: test images", "features: real data",
                  "features: untrained"):
        assert stage in cap.err, stage
    assert "100%" in cap.err and "img/s" in cap.err
    assert "about" not in cap.err  # a few seconds of work: no estimate line
    lines = cap.out.splitlines()
    assert lines[1].split() == ["metric", "model", "real", "data", "untrained"]
    assert lines[2].startswith("fid (lower is better)") and lines[3].startswith("precision (higher is better)")
    assert any(line.startswith("  FID ") for line in lines) and any(line.startswith("  recall ") for line in lines)


def test_no_bars_without_log_or_with_progress_false(digits_vae, capsys, bars_at_once):
    ganvae.evaluate(digits_vae, metrics="fid", n=50, write=False, log=None)
    assert capsys.readouterr().err == ""
    ganvae.evaluate(digits_vae, metrics="fid", n=50, write=False, progress=False)
    cap = capsys.readouterr()
    assert cap.err == "" and "fid (lower is better)" in cap.out


def test_a_slow_nll_is_announced_up_front_with_a_faster_setting(digits_vae, capsys, monkeypatch, bars_at_once):
    monkeypatch.setattr(progress, "SLOW_S", 0.0)  # every estimate counts as slow
    code = main(["eval", str(digits_vae), "--metrics", "nll", "--n", "12", "--k", "1200"])
    cap = capsys.readouterr()
    assert code == 0  # a warning, not an error
    line = next(x for x in cap.err.replace("\r", "\n").splitlines() if x.startswith("nll: ") and " for " in x)
    assert line.startswith(("nll: about ", "nll: under a second"))  # measured: on a fast machine, under a second
    assert "for 12 images at k=1200 (model and untrained) on cpu; --n 12 --k 1000 takes " in line
    assert "nll: model" in cap.err and "nll: untrained" in cap.err  # the bars
    assert "NLL " in cap.out


def test_a_slow_feature_pass_is_announced(digits_vae, capsys, monkeypatch):
    monkeypatch.setattr(progress, "SLOW_S", 0.0)
    assert main(["eval", str(digits_vae), "--metrics", "fid", "--n", "1500", "--no-baselines"]) == 0
    err = capsys.readouterr().err.replace("\r", "\n")
    # 1500 samples + the 180 test images, one pass; the faster setting: 1000 samples
    line = next(x for x in err.splitlines() if x.startswith("features: ") and "for 1680 images" in x)
    assert "through the mnist feature net on cpu; --n 1000 takes " in line
    assert line.endswith((" s", " min", " h", "under a second"))


def test_a_bar_appears_only_once_its_work_lasts(capsys, monkeypatch):
    import time

    monkeypatch.setattr(progress, "BAR_DELAY_S", 0.2)
    fb = progress.Feedback(True, "cpu")
    with fb.bar(4, "quick") as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""  # a quick command stays quiet (and its errors stay one line)
    with fb.bar(4, "slow work") as bar:
        bar.update(1)
        time.sleep(0.6)  # the bar appears while the work goes on, even between updates
        assert "slow work:  25%" in capsys.readouterr().err
        bar.update(3)
    err = capsys.readouterr().err
    assert "slow work: 100%" in err and err.endswith("\n")


def test_the_estimate_is_measured_and_says_nothing_when_quick(capsys):
    fb = progress.Feedback(True, "cpu")
    fb.plan("work", 1000, "1000 things")
    with fb.bar(10, "work", "work") as bar:
        bar.update(10)
    assert 0 < fb.estimates["work"] < progress.SLOW_S
    assert "about" not in capsys.readouterr().err


def test_audit_shows_its_stages_and_announces_slow_ones(digits_vae, capsys, monkeypatch, bars_at_once):
    monkeypatch.setattr(progress, "SLOW_S", 0.0)
    assert main(["audit", str(digits_vae), "--n-samples", "1200", "--n-members", "40"]) == 0
    cap = capsys.readouterr()
    err = cap.err.replace("\r", "\n")
    for stage in ("audit: sampling", "audit: features", "audit: memorisation, data copying", "audit: attacks",
                  "features: samples", "elbo: members"):
        assert stage in err, stage
    line = next(x for x in err.splitlines() if "audit features: " in x and " for " in x)
    assert "for 2997 images through the mnist feature net on cpu; --n-samples 1000 takes " in line
    assert "audit elbo: " in err and " for 80 images at k=32 on cpu" in err
    assert "membership inference" in cap.out
    ganvae.audit(digits_vae, n_samples=40, n_members=20, write=False, log=None)
    ganvae.audit(digits_vae, n_samples=40, n_members=20, write=False, progress=False)
    assert capsys.readouterr().err == ""


# -- the report reads new and old records --------------------------------------------------------------

def test_report_scores_name_both_references_and_read_old_records(digits_vae):
    old = {"metric": "fid", "value": 48.0, "floor": 3.4, "ceiling": 45.0, "feature_net": "mnist",
           "n_generated": 100, "n_reference": 100, "reference_split": "test", "step": 5, "protocol": "old"}
    (digits_vae / "eval.jsonl").write_text(json.dumps(old) + "\n")
    page = build_report(digits_vae)
    assert "<th>real data</th><th>untrained</th><th>reading</th>" in page
    assert "<td>lower is better</td><td>48</td><td>3.4</td><td>45</td>" in page
    assert "FID 48: worse than an untrained generator (45); real data: 3.4" in page
    recs = ganvae.evaluate(digits_vae, metrics="pr", n=60, log=None)
    page = build_report(digits_vae)
    assert f"<td>{recs[0]['reading']}</td>" in page and "higher is better" in page

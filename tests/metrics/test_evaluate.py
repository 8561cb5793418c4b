"""`ganvae eval` end to end on tiny runs, periodic evaluation with --keep-best, and eval's bad input."""

from __future__ import annotations

import json

import pytest
import torch

import ganvae
from ganvae.cli import main
from ganvae.training import checkpoint as ckpt
from helpers import train_tiny

FIELDS = {"metric", "value", "feature_net", "n_generated", "n_reference", "reference_split", "step", "seed",
          "real_data", "untrained", "lower_is_better", "reading"}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("ev") / "gan", steps=30, batch_size=32).path


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("ev") / "vae", "mlp-vae", steps=100, batch_size=32, latent_dim=4).path


def test_eval_writes_records_with_protocol_and_both_references(gan_run, capsys):
    code = main(["eval", str(gan_run), "--metrics", "fid,kid,pr,dc,is,modes", "--n", "150",
                 "--kid-subset-size", "100"])
    out = capsys.readouterr().out
    assert code == 0
    assert "real data" in out and "untrained" in out and "fid (lower is better)" in out and "features: mnist" in out
    assert "KID subsets of 100;" in out
    recs = [json.loads(x) for x in (gan_run / "eval.jsonl").read_text().splitlines()]
    by = {r["metric"]: r for r in recs}
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "is", "modes_covered"):
        assert key in by, key
        assert FIELDS <= by[key].keys()
    fid = by["fid"]
    assert fid["feature_net"] == "mnist" and fid["n_generated"] == 150 and fid["reference_split"] == "test"
    assert fid["n_reference"] == 150 and fid["step"] == 30 and fid["seed"] == 0
    # real train vs test is far better than an untrained generator; a 30-step tiny model is no better than
    # real data (it may still sit near the untrained value, so only the real-data side is asserted for it)
    assert fid["real_data"] < fid["untrained"] / 3
    assert fid["real_data"] < fid["value"]
    # an untrained generator collapses to one point: it may sit inside the real manifold (precision can be
    # high, a known weakness of k-NN precision) but it covers nothing of it
    assert by["recall"]["real_data"] > by["recall"]["untrained"] + 0.5
    assert by["coverage"]["real_data"] > by["coverage"]["untrained"] + 0.5
    assert by["kid"]["kid_subset_size"] == 100 and "subsets of 100" in by["kid"]["protocol"]
    assert fid["lower_is_better"] is True and by["recall"]["lower_is_better"] is False
    assert fid["reading"].startswith(f"FID {fid['value']:.3g}: ") and fid["reading"] in out
    for r in recs:  # the old names stay as aliases for older readers
        assert r["floor"] == r["real_data"] and r["ceiling"] == r["untrained"]


def test_eval_is_repeatable(gan_run):
    from ganvae.api import evaluate

    a = evaluate(gan_run, "fid", n=100, write=False, log=None, baselines=False)
    b = evaluate(gan_run, "fid", n=100, write=False, log=None, baselines=False)
    assert a[0]["value"] == b[0]["value"]


def test_vae_nll(vae_run):
    from ganvae.api import evaluate

    recs = {r["metric"]: r for r in evaluate(vae_run, "nll", n=50, k=20, write=False, log=None)}
    assert recs["nll"]["value"] <= -recs["elbo"]["value"] + 1e-6   # L_k >= ELBO
    assert recs["nll"]["value"] < recs["nll"]["untrained"]          # trained beats untrained
    assert recs["nll"]["real_data"] is None
    assert recs["nll"]["reading"] == f"NLL {recs['nll']['value']:.3g}: better than an untrained generator " \
                                     f"({recs['nll']['untrained']:.3g})"


@pytest.mark.parametrize("args, needle", [
    (["--metrics", "nope"], "unknown metric 'nope'"),
    (["--feature-net", "nope"], "unknown feature net 'nope'"),
    (["--metrics", "kid", "--kid-subset-size", "1"], "--kid-subset-size 1: expected at least 2"),
    (["--metrics", "nll"], "needs a VAE"),
    (["--feature-net", "inception"], "--inception-weights"),
])
def test_eval_bad_input(gan_run, capsys, args, needle):
    code = main(["eval", str(gan_run), "--n", "50", "--no-baselines", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_eval_needs_a_model(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model: {name: dcgan}\n")
    assert main(["eval", str(tmp_path)]) == 2
    assert "no exported model" in capsys.readouterr().err


def test_periodic_eval_keeps_best_and_does_not_change_training(tmp_path):
    plain = train_tiny(tmp_path / "a", steps=12, batch_size=32)
    evald = train_tiny(tmp_path / "b", steps=12, batch_size=32, eval_every_kimg=0.128, eval_n=100, keep_best=True)
    sa = ckpt.load_state(plain.path / "checkpoints" / "latest.pt")["model"]
    sb = ckpt.load_state(evald.path / "checkpoints" / "latest.pt")
    for k in sa:
        assert torch.equal(sa[k], sb["model"][k]), k
    lines = [json.loads(x) for x in (evald.path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "eval/fid" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]  # every 128 images = 4 steps of 32
    best = min(evals, key=lambda r: r["eval/fid"])
    assert sb["best"]["step"] == best["step"] and sb["best"]["value"] == best["eval/fid"]
    meta = json.loads((evald.path / "best" / "config.json").read_text())
    assert meta["step"] == best["step"]
    assert ganvae.load(evald.path / "best").sample(2, seed=0).shape == (2, 1, 8, 8)


def test_a_metric_that_cannot_run_is_refused_before_anything_is_scored(gan_run, capsys, monkeypatch):
    from ganvae.metrics import registry

    def no_features(self):
        raise AssertionError("features were computed before nll was refused")

    monkeypatch.setattr(registry.Side, "features", property(no_features))
    before = (gan_run / "eval.jsonl").read_text() if (gan_run / "eval.jsonl").exists() else ""
    code = main(["eval", str(gan_run), "--metrics", "fid,nll", "--n", "50", "--no-baselines"])
    err = capsys.readouterr()
    assert code == 2 and "needs a VAE" in err.err and len(err.err.strip().splitlines()) == 1
    assert err.out == ""  # no table: nothing was scored
    after = (gan_run / "eval.jsonl").read_text() if (gan_run / "eval.jsonl").exists() else ""
    assert after == before


def test_periodic_and_final_evaluation_share_one_builder(vae_run):
    """The nll scored during training honours data.binarize and uses the same reference images and checks as
    `ganvae eval` (they were built separately once, and the periodic nll ignored binarisation)."""
    from ganvae.data import DataConfig, load_data
    from ganvae.errors import GanvaeError
    from ganvae.metrics import TrainingEvaluator, evaluate

    model = ganvae.load(vae_run)
    splits = load_data(DataConfig(source="digits"), progress=False)
    for binarize in (False, True):
        periodic = TrainingEvaluator("nll", model, splits, n=40, seed=3, binarize=binarize)(model)
        final = {r["metric"]: r["value"] for r in evaluate(model, splits, metrics="nll", n=40, seed=3, k=100,
                                                             binarize=binarize, log=None)}
        assert periodic["eval/nll"] == pytest.approx(final["nll"], rel=1e-9)
    assert periodic["eval/nll"] != TrainingEvaluator("nll", model, splits, n=40, seed=3)(model)["eval/nll"]
    with pytest.raises(GanvaeError, match="needs a conditional model"):  # the metric's check runs up front
        TrainingEvaluator("cacc", model, splits, n=40)

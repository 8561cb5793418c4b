"""`ganvae audit`: membership inference, the data-copying test Z_U, memorisation; CLI and report.

The two trained runs are MLP VAEs on the 8x8 `digits` (same architecture and steps): one on a
64-image subset (`data.limit=64`, 800 steps = 800 epochs: it memorises) and one on the full
1617-image training split (800 steps, about 32 epochs: it does not).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_curve

import ganvae
from ganvae.cli import main
from ganvae.api import audit
from ganvae.data import ImageData, members_and_heldout
from ganvae.privacy import audit as audit_module
from ganvae.privacy.copying import data_copying_test, mann_whitney_z, memorisation
from ganvae.privacy.mia import mc_scores, median_eps, roc_auc, tpr_at_fpr
from helpers import tiny_model

VAE_SET = ["model.latent_dim=4", "model.lr=3e-3", "train.threads=1", "train.report=false",
           "train.sample_every=100000", "train.checkpoint_every=100000", "train.log_every=400"]


def _train(tmp_path_factory, name: str, extra: list[str]):
    out = tmp_path_factory.mktemp(name) / "run"
    ganvae.train("mlp-vae", "digits", out=out, steps=800, batch_size=64, progress=False, set=VAE_SET + extra)
    return out


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    return _train(tmp_path_factory, "overfit", ["data.limit=64"])


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    return _train(tmp_path_factory, "normal", [])


# ------------------------------------------------------------------------------- AUC and TPR
def test_auc_matches_hand_computed_pairs():
    # member > non-member in 5 of the 6 pairs (0.4 < 0.5)
    assert roc_auc([0.9, 0.8, 0.4], [0.5, 0.3]) == pytest.approx(5 / 6)
    # ties count one half: pairs (1,1) x2 -> 1/2 each, (1,0) x2 -> 1 each: 3/4
    assert roc_auc([1, 1], [1, 0]) == pytest.approx(0.75)
    assert roc_auc([0, 0], [1, 1]) == 0.0


def test_tpr_at_1pct_fpr_hand_computed():
    non = np.arange(100) / 100  # 0.00 .. 0.99
    members = [0.985, 0.995, 2.0, 3.0, 0.5]
    # FPR <= 1% allows one of the 100 non-members at or above t: t = 0.985 passes only 0.99,
    # and 4 of the 5 members; t = 0.98 would pass two non-members
    assert tpr_at_fpr(members, non, 0.01) == pytest.approx(0.8)
    # with 50 non-members 1% allows none: t must exceed 0.49, which 2 of the 3 members do
    assert tpr_at_fpr([0.2, 0.5, 0.6], np.arange(50) / 100, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr([0.1], [0.5, 0.6], 0.01) == 0.0  # nothing beats every non-member
    # the same as the ROC curve's largest TPR with FPR <= 1%, on random scores with ties
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 300, 400) + 20, rng.integers(0, 300, 700)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(400), np.zeros(700)], np.r_[a, b], drop_intermediate=False)
    assert tpr_at_fpr(a, b, 0.01) == pytest.approx(tpr[fpr <= 0.01].max())


def test_monte_carlo_score_counts_samples_within_eps():
    gen = torch.tensor([[0.0], [0.1], [0.2], [5.0]])
    rec = torch.tensor([[0.0], [5.0], [10.0]])
    assert mc_scores(rec, gen, 0.15).tolist() == [0.5, 0.25, 0.0]
    assert median_eps(rec, gen) == pytest.approx(0.0)  # nearest-sample distances 0, 0, 5


# --------------------------------------------------------------------------------------- Z_U
def test_mann_whitney_z_against_scipy_and_by_hand():
    u, z = mann_whitney_z([1, 2], [3])
    assert u == 0 and z == pytest.approx(-1 / np.sqrt(2 / 3))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=37).round(1), rng.normal(0.3, size=51).round(1)  # with ties
    u, _ = mann_whitney_z(x, y)
    assert u == pytest.approx(mannwhitneyu(x, y, alternative="two-sided").statistic)


def test_data_copying_test_known_answers():
    rng = np.random.default_rng(0)
    T = rng.normal(size=(400, 5))
    P = rng.normal(size=(400, 5))
    fresh = rng.normal(size=(1000, 5))
    copies = T[rng.integers(0, 400, 1000)] + 1e-3 * rng.normal(size=(1000, 5))
    spread = 1.6 * rng.normal(size=(1000, 5))  # underfit: further from the training set than fresh data
    r_copy = data_copying_test(T, P, copies, k=5)
    r_fresh = data_copying_test(T, P, fresh, k=5)
    r_under = data_copying_test(T, P, spread, k=5)
    assert r_copy["z_u"] < -10
    assert abs(r_fresh["z_u"]) < 2.5
    assert r_under["z_u"] > 3
    assert r_copy["cells_used"] == 5 and sum(c["test_share"] for c in r_copy["cells"]) == pytest.approx(1)
    # a cell with <= tau of the samples is left out (the paper's Pi_tau)
    lopsided = np.r_[copies[:990], 50 + rng.normal(size=(10, 5))]
    T2, P2 = np.r_[T, 50 + rng.normal(size=(30, 5))], np.r_[P, 50 + rng.normal(size=(30, 5))]
    r = data_copying_test(T2, P2, lopsided, k=6)
    far = [c for c in r["cells"] if c["n_generated"] == 10]
    assert len(far) == 1 and not far[0]["used"] and "tau" in far[0]["skipped"]


def test_memorisation_ratio_and_near_copies():
    rng = np.random.default_rng(0)
    T, H = torch.from_numpy(rng.random((50, 16))), torch.from_numpy(rng.random((50, 16)))
    m = memorisation(T[:20] + 1e-4, T, H)["summary"]
    assert m["n_near_copies"] == 20 and m["ratio_quantiles"]["q50"] < 0.01 and m["n_below_heldout_p1"] == 20
    m = memorisation(torch.from_numpy(rng.random((200, 16))), T, H)["summary"]
    assert m["n_near_copies"] == 0 and 0.7 < m["ratio_quantiles"]["q50"] < 1.4
    with pytest.raises(ValueError):
        memorisation(T, T, H[:10])


# ---------------------------------------------------------------------------- which images
def test_members_and_heldout_splits_members_from_held_out():
    from ganvae.data import DataConfig, load_data

    d = members_and_heldout(DataConfig(source="digits", limit=64))
    ref = load_data(DataConfig(source="digits", limit=64), progress=False)
    assert torch.equal(d["train"].images, ref.train.images) and len(d["train"]) == 64
    # held out: the 180-image seeded test split plus the 1617 - 64 training-split images the limit dropped
    assert len(d["heldout"]) == 180 + 1617 - 64 and d["limit_left_out"] == 1553
    assert "left out by data.limit=64" in d["split"]
    full = load_data(DataConfig(source="digits"), progress=False)
    pool = {bytes(x.numpy()) for x in torch.cat([full.train.images, full.test.images])}
    assert all(bytes(x.numpy()) in pool for x in d["heldout"].images[::50])


def test_model_objects_gan_white_box_and_conditional_skip():
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 1, 8, 8, generator=gen) * 255).to(torch.uint8)
    held = (torch.rand(40, 1, 8, 8, generator=gen) * 255).to(torch.uint8)
    r = audit(tiny_model("mlp-gan"), data=(train, held), n_samples=60, features="pixels", write=False, log=None)
    assert {"d_logit", "mc_pixels", "nn_pixels"} <= set(r["attacks"])
    assert r["protocol"]["n_members"] == 40 and r["protocol"]["feature_space"] == "pixels"
    r = audit(tiny_model("cdcgan"), data=(train, held), n_samples=60, n_members=10, features="pixels",
              write=False, log=None)
    assert "d_logit" not in r["attacks"] and "labels" in r["white_box_skipped"]
    y = torch.randint(0, 3, (40,), generator=gen)
    r = audit(tiny_model("cvae"), data=(ImageData(train, y), ImageData(held, y.flip(0))), n_samples=60,
              n_members=10, features="pixels", write=False, log=None)
    assert {"elbo", "iw_bound_k32"} <= set(r["attacks"]) and r["white_box_skipped"] is None
    # below the api the audit takes the model and the images and returns the record and the pairs image
    r2, pairs = audit_module.audit(tiny_model("cvae"), ImageData(train, y), ImageData(held, y.flip(0)),
                                   n_samples=60, n_members=10, features="pixels", log=None)
    assert r2["mia_auc"] == r["mia_auc"] and pairs.shape == (3 * audit_module.PAIRS_SHOWN, 1, 8, 8)


# ----------------------------------------------------------------------------- trained runs
def test_overfit_model_is_flagged_via_cli(overfit_run, capsys):
    assert main(["audit", str(overfit_run), "--n-samples", "2000"]) == 0
    text = capsys.readouterr().out
    assert "LEAKS" in text and "Z_U" in text and "near-copies" in text
    r = json.loads((overfit_run / "audit.json").read_text())
    for key in ("mia_auc", "mia_tpr_at_1pct_fpr", "z_u", "n_near_copies", "attacks", "memorisation",
                "data_copying", "protocol", "verdict"):
        assert key in r
    p = r["protocol"]
    assert p["n_members"] == p["n_nonmembers"] == 64 and p["feature_space"] == "mnist" and p["seed"] == 0
    assert {"elbo", "iw_bound_k32", "mc_pixels", "nn_mnist"} <= set(r["attacks"])
    assert r["mia_auc"] >= 0.9
    assert r["z_u"] < -3
    assert r["n_near_copies"] > 20
    assert r["verdict"].startswith("leaks")
    assert (overfit_run / "audit_pairs.png").stat().st_size > 500
    assert main(["report", str(overfit_run)]) == 0
    page = (overfit_run / "report.html").read_text()
    assert "<h2>Leakage audit</h2>" in page and "alt='closest pairs'" in page


def test_normally_trained_model_is_not_flagged(normal_run):
    r = audit(normal_run, n_samples=2000, write=False, log=None)
    assert r["protocol"]["n_members"] == 180  # as many as the held-out split has
    assert abs(r["mia_auc"] - 0.5) <= 0.15
    assert r["z_u"] > -3
    assert r["n_near_copies"] <= 0.01 * 2000
    assert r["verdict"] == "no sign of leakage"


def test_bad_input_is_one_line_exit_2(tmp_path, overfit_run, capsys):
    for args, needle in [
        (["audit", str(tmp_path / "missing")], "no such run folder"),
        (["audit", str(overfit_run), "--n-members", "65"], "more than the data has"),
        (["audit", str(overfit_run), "--n-samples", "5"], "--n-samples 5"),
        (["audit", str(overfit_run), "--features", "nope"], "nope"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err

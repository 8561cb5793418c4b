"""MIG and DCI on constructed codes with known answers, a hand-computed MI, and `ganvae eval --metrics mig,dci`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.metrics.mig import (dci, dci_from_importance, discretize_factor, entropy, histogram_bins, mig,
                                mutual_information)
from helpers import train_tiny

N = 4000


def _factors(n=N, seed=0):
    """A discrete factor with 3 values and two continuous uniform factors, independent."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 3, n), rng.uniform(0.5, 1.0, n), rng.uniform(0, 2 * math.pi, n)], 1)


def test_mutual_information_by_hand():
    # joint over (a, b): (0,0) 1/2, (1,0) 1/4, (1,1) 1/4
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 0, 0, 1])
    pa, pb = {0: 0.5, 1: 0.5}, {0: 0.75, 1: 0.25}
    joint = {(0, 0): 0.5, (1, 0): 0.25, (1, 1): 0.25}
    expected = sum(p * math.log(p / (pa[x] * pb[y])) for (x, y), p in joint.items())
    assert mutual_information(a, b) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.75 * math.log(4 / 3), rel=1e-12)  # = 0.5 ln 4/3 + 0.25 ln 2/3 + 0.25 ln 2
    assert mutual_information(a, a) == pytest.approx(entropy(a)) == pytest.approx(math.log(2))
    assert mutual_information(a, np.zeros(4, dtype=np.int64)) == 0.0


def test_binning():
    v = np.linspace(0, 1, 41)
    b = histogram_bins(v, 20)
    assert b.min() == 0 and b.max() == 19 and np.bincount(b, minlength=20).min() >= 2
    assert (histogram_bins(np.full(5, 3.0), 20) == 0).all()
    np.testing.assert_array_equal(discretize_factor(np.array([2.0, 0.5, 2.0, 7.0])), [1, 0, 1, 2])  # categories
    assert discretize_factor(np.random.default_rng(0).uniform(size=500)).max() == 19  # continuous: 20 bins


def test_codes_equal_to_factors_give_mig_near_one():
    """One latent per factor, equal to it: the latent's 20 bins reproduce the factor's discretisation
    exactly (same equal-width bins for continuous factors; distinct bins for the 3 categories), so
    I(z_k; v_k) = H(v_k) and MIG_k = 1 - max_{j != k} I(z_j; v_k) / H(v_k): exactly 1 minus the plug-in
    MI of independent variables, a positive bias of about (bins_j - 1)(bins_k - 1) / (2N) nats."""
    f = _factors()
    r = mig(f, f)
    vb = [discretize_factor(f[:, k]) for k in range(3)]
    for k in range(3):
        h = entropy(vb[k])
        second = max(mutual_information(histogram_bins(f[:, j]), vb[k]) for j in range(3) if j != k)
        assert r["per_factor"][k] == pytest.approx(1 - second / h, rel=1e-12)
        assert r["mi"][k][k] == pytest.approx(1.0, rel=1e-12)
        bias_bound = 3 * 19 * 19 / (2 * N) / h  # a loose multiple of the expected bias
        assert 1 - bias_bound < r["per_factor"][k] < 1
    assert r["mig"] > 0.95


def test_extra_noise_latents_and_permutations_keep_mig_high():
    f = _factors()
    rng = np.random.default_rng(1)
    codes = np.concatenate([rng.normal(size=(N, 2)), f[:, ::-1] * 3.0 - 1.0], 1)  # scaled, reordered, padded
    assert mig(codes, f)["mig"] > 0.95


def test_random_codes_give_mig_near_zero():
    f = _factors()
    codes = np.random.default_rng(2).normal(size=(N, 6))
    r = mig(codes, f)
    assert 0 <= r["mig"] < 0.02


def test_two_latents_copying_one_factor_leave_no_gap():
    f = _factors()
    codes = np.stack([f[:, 1], f[:, 1], f[:, 0], f[:, 2]], 1)
    r = mig(codes, f)
    assert r["per_factor"][1] == pytest.approx(0.0, abs=1e-12)  # the top two latents tie
    assert r["per_factor"][0] > 0.95 and r["per_factor"][2] > 0.95
    assert r["mig"] == pytest.approx((r["per_factor"][0] + r["per_factor"][2]) / 3, rel=1e-12)


def test_one_latent_coding_two_factors_fools_mig_but_not_dci():
    """z_0 = 4 v_0 + v_1 (both with 4 values, 16 combinations, each in its own bin) carries both factors
    whole: MIG, a per-factor score, is 1 - bias for both; DCI disentanglement sees one code used for two
    factors and drops."""
    rng = np.random.default_rng(3)
    f = np.stack([rng.integers(0, 4, N), rng.integers(0, 4, N)], 1).astype(float)
    entangled = np.stack([4 * f[:, 0] + f[:, 1], rng.normal(size=N)], 1)
    assert mig(entangled, f)["mig"] > 0.98
    separate = f + 0.01 * rng.normal(size=f.shape)
    d_ent, d_sep = dci(entangled, f, n_estimators=10), dci(separate, f, n_estimators=10)
    assert d_sep["disentanglement"] > 0.9 and d_sep["completeness"] > 0.9
    assert d_ent["disentanglement"] < 0.2
    assert d_sep["informativeness"] > 0.99 and d_ent["informativeness"] > 0.9  # v_1 = z_0 mod 4: harder for trees


def test_dci_from_importance_closed_forms():
    assert dci_from_importance(np.eye(3)) == {"disentanglement": 1.0, "completeness": 1.0}
    uniform = dci_from_importance(np.ones((3, 3)))
    assert uniform["disentanglement"] == pytest.approx(0.0, abs=1e-12)
    assert uniform["completeness"] == pytest.approx(0.0, abs=1e-12)
    # one code splits 50/50 over 2 factors (H_2 = 1), the other is unused: disentanglement 0;
    # each factor sits on one code: completeness 1
    r = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert dci_from_importance(r) == {"disentanglement": 0.0, "completeness": 1.0}


def test_bad_inputs():
    f = _factors(50)
    with pytest.raises(GanvaeError, match="codes but"):
        mig(f[:10], f)
    with pytest.raises(GanvaeError, match="constant"):
        mig(f, np.zeros((50, 2)))
    with pytest.raises(GanvaeError, match="NaN"):
        mig(np.full((50, 2), np.nan), f)


# ----------------------------------------------------------------------------- ganvae eval

@pytest.fixture(scope="module")
def shapes_vae(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("mig") / "vae", "mlp-vae", "shapes", steps=20, batch_size=32,
                      latent_dim=4, more=["data.n=400", "data.image_size=16"]).path


@pytest.fixture(scope="module")
def digits_vae(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("mig") / "dvae", "mlp-vae", steps=5, batch_size=32, latent_dim=4).path


def test_eval_mig_and_dci_on_shapes(shapes_vae, capsys):
    from ganvae.api import evaluate

    recs = {r["metric"]: r for r in evaluate(shapes_vae, "mig,dci", n=40, write=False, log=None)}
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert key in recs, key
        assert recs[key]["n_reference"] == 40 and recs[key]["real_data"] is None
        assert recs[key]["untrained"] is not None  # the untrained encoder
    assert 0 <= recs["mig"]["value"] <= 1


def test_eval_reference_factors_match_the_images(shapes_vae, monkeypatch):
    """The factors handed to the metric are those of the seeded subset of reference images (same indices)."""
    import torch

    from ganvae.data.shapes import render
    from ganvae.api import evaluate
    from ganvae.metrics import mig as mig_module

    seen = {}

    def fake_encode(model, images):
        seen["images"] = images
        return torch.zeros(images.shape[0], 4)

    def fake_mig(codes, factors):
        seen["factors"] = factors
        return {"mig": 0.0}

    monkeypatch.setattr(mig_module, "encode_means", fake_encode)
    monkeypatch.setattr(mig_module, "mig", fake_mig)
    evaluate(shapes_vae, "mig", n=30, seed=5, write=False, log=None, baselines=False)
    assert seen["factors"].shape == (30, 6) and seen["images"].shape[0] == 30
    assert len(set(seen["factors"][:, 3].tolist())) == 30  # distinct images, not the first rows repeated
    again = render(seen["factors"].numpy(), 16).float() / 255  # re-render the factors: the same pictures
    assert (again - seen["images"]).abs().max() < 1e-6


@pytest.mark.parametrize("metric", ["mig", "dci"])
def test_eval_mig_needs_factors_and_a_vae(digits_vae, metric, capsys):
    assert main(["eval", str(digits_vae), "--metrics", metric, "--n", "20", "--no-baselines"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ground-truth factors" in err[0]


def test_eval_mig_on_a_gan_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "gan"
    train_tiny(out, "mlp-gan", "shapes", steps=2, latent_dim=4, g_hidden=[16], d_hidden=[16],
               more=["data.n=100", "data.image_size=8"])
    assert main(["eval", str(out), "--metrics", "mig", "--n", "10", "--no-baselines"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a VAE" in err[0]

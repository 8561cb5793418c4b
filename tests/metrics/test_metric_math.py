"""The metric math on feature arrays: closed forms, hand-computed cases, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.metrics.frechet import fid, frechet_distance, gaussian_stats
from ganvae.metrics.inception_score import inception_score
from ganvae.metrics.kid import kid, kid_subset_values, mmd2_unbiased
from ganvae.metrics.modes import class_histogram, conditional_accuracy, mode_coverage
from ganvae.metrics.prdc import prdc


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


# ---------------------------------------------------------------- Fréchet / FID


def test_gaussian_stats_uses_ddof_1():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, ddof=1))
    assert sigma[0, 0] == pytest.approx(4.0)  # ((-2)^2 + 0 + 2^2) / (3 - 1)


def test_frechet_1d_by_hand():
    # N(1, 4) vs N(3, 9): (1-3)^2 + 4 + 9 - 2*sqrt(36) = 4 + 13 - 12 = 5
    for method in ("sqrtm", "eigh"):
        assert frechet_distance(1.0, 4.0, 3.0, 9.0, method=method) == pytest.approx(5.0, rel=1e-12)


def test_frechet_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([4.0, 0.5, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    for method in ("sqrtm", "eigh"):
        got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2), method=method)
        assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_methods_agree_on_random_spd():
    rng = np.random.default_rng(0)
    for d in (2, 5, 16):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=3.0)
        a = frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
        b = frechet_distance(mu1, s1, mu2, s2, method="eigh")
        assert a == pytest.approx(b, rel=1e-8)
        # symmetric in its two arguments
        assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(a, rel=1e-8)


def test_fid_identical_sets_is_zero_and_torch_input_matches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)) * 3 + 1
    scale = np.trace(gaussian_stats(x)[1])
    assert fid(x, x) <= 1e-6 * scale
    assert fid(x, x, method="eigh") <= 1e-6 * scale
    y = rng.normal(size=(400, 8))
    assert fid(torch.from_numpy(x).float(), y) == pytest.approx(fid(x.astype(np.float32), y), rel=1e-12)
    assert fid(x, y) == pytest.approx(fid(y, x), rel=1e-8)


def test_fid_of_samples_close_to_closed_form():
    rng = np.random.default_rng(2)
    d, n = 4, 20000
    mu1, mu2 = np.zeros(d), np.array([1.0, -1.0, 0.5, 2.0])
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=2.0)
    exact = frechet_distance(mu1, s1, mu2, s2)
    a = rng.multivariate_normal(mu1, s1, size=n)
    b = rng.multivariate_normal(mu2, s2, size=n)
    assert fid(a, b) == pytest.approx(exact, rel=0.03)


def test_fid_rejects_bad_shapes():
    with pytest.raises(GanvaeError):
        fid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(GanvaeError):
        fid(np.zeros(10), np.zeros(10))


# ---------------------------------------------------------------------- KID


def test_kid_matches_hand_computed_unbiased_mmd():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [-1.0, 0.5]])
    y = np.array([[0.5, 0.5], [1.0, 2.0], [0.0, -1.0], [3.0, 1.0]])
    m, d = 4, 2

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    expected = xx + yy - 2 * xy
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    out = kid(x, y, n_subsets=1, subset_size=m)
    assert out["kid"] == pytest.approx(expected, rel=1e-12)
    assert out["kid_std"] == 0.0
    assert set(out) == {"kid", "kid_std"} and all(type(v) is float for v in out.values())


def test_kid_unbiased_for_same_distribution_and_not_clipped():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1500, 8))
    b = rng.normal(size=(1500, 8))
    vals = kid_subset_values(a, b, n_subsets=60, subset_size=150, seed=0)
    assert (vals < 0).any() and (vals > 0).any()
    out = kid(a, b, n_subsets=60, subset_size=150, seed=0)
    assert out["kid"] == pytest.approx(vals.mean())
    assert abs(out["kid"]) < out["kid_std"]


def test_kid_positive_for_shifted_distribution():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(1000, 8))
    b = rng.normal(size=(1000, 8)) + 0.5
    out = kid(a, b, n_subsets=30, subset_size=200, seed=0)
    assert out["kid"] > 5 * out["kid_std"] > 0


def test_kid_deterministic_for_seed_and_torch_input():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 0.2
    r1 = kid(a, b, n_subsets=10, subset_size=100, seed=7)
    r2 = kid(torch.from_numpy(a), torch.from_numpy(b), n_subsets=10, subset_size=100, seed=7)
    r3 = kid(a, b, n_subsets=10, subset_size=100, seed=8)
    assert r1 == r2
    assert r1 != r3


def test_kid_too_few_samples_is_a_clear_error():
    with pytest.raises(GanvaeError) as e:
        kid(np.zeros((50, 3)), np.zeros((80, 3)), subset_size=100)
    msg = str(e.value)
    assert "100" in msg and "50" in msg and "80" in msg and "--n" in msg and "\n" not in msg


# --------------------------------------------------------------------- PRDC


def naive_prdc(real, fake, k):
    """The reference formulas on the full distance matrices (numpy, no chunks)."""
    def dists(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rr, ff, rf = dists(real, real), dists(fake, fake), dists(real, fake)
    r_real = np.sort(rr, axis=1)[:, k]
    r_fake = np.sort(ff, axis=1)[:, k]
    return {
        "precision": (rf < r_real[:, None]).any(axis=0).mean(),
        "recall": (rf < r_fake[None, :]).any(axis=1).mean(),
        "density": (rf < r_real[:, None]).sum(axis=0).mean() / k,
        "coverage": (rf.min(axis=1) < r_real).mean(),
    }


def test_prdc_hand_example_1d():
    # real radii (k=1): all 1; fake radii: 9.5 and 9.5.
    # precision: 0.5 is within 1 of real 0 and 1; 10 is 7 from real 3 -> 1/2
    # recall: every real point is within 9.5 of fake 0.5 -> 1
    # density: fake 0.5 lies in the balls of real 0 and 1 (2), fake 10 in none -> (2 + 0) / (1 * 2) = 1
    # coverage: nearest fake of real 0, 1, 2, 3 is at 0.5, 0.5, 1.5, 2.5 vs radius 1 -> 2/4
    out = prdc([0.0, 1.0, 2.0, 3.0], [0.5, 10.0], k=1)
    assert out == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def test_prdc_identical_sets():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 5))
    for k in (1, 5):
        out = prdc(x, x.copy(), k=k, chunk_size=64)
        # exactly 1 for density too: strict "<" and no duplicate points
        assert out == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_prdc_disjoint_sets_are_zero():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(200, 4))
    fake = rng.normal(size=(150, 4)) + 1000.0
    assert prdc(real, fake, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_matches_naive_formulas_across_chunk_sizes():
    rng = np.random.default_rng(8)
    real = rng.normal(size=(257, 6))
    fake = torch.from_numpy(rng.normal(size=(190, 6)) * 1.3 + 0.3)
    expected = naive_prdc(real, fake.numpy(), k=3)
    for chunk in (1000, 50, 7):
        out = prdc(real, fake, k=3, chunk_size=chunk)
        assert out.keys() == expected.keys()
        for key in out:
            assert type(out[key]) is float
            assert out[key] == pytest.approx(expected[key], abs=1e-12), key


def test_prdc_mode_collapse_high_precision_low_recall():
    rng = np.random.default_rng(9)
    d, modes = 10, 10
    centers = 50.0 * np.eye(d)[:modes]
    real = centers[rng.integers(0, modes, 1000)] + rng.normal(size=(1000, d))
    fake = centers[rng.integers(0, 2, 500)] + rng.normal(size=(500, d))  # only 2 of 10 modes
    out = prdc(real, fake, k=5)
    assert out["precision"] > 0.9
    assert out["recall"] < 0.3
    assert out["coverage"] < 0.3


def test_prdc_k_too_large_is_an_error():
    with pytest.raises(GanvaeError):
        prdc(np.zeros((5, 2)), np.ones((10, 2)), k=5)


# ----------------------------------------------------------- Inception Score


def test_is_uniform_predictions_give_one():
    out = inception_score(np.full((100, 7), 1 / 7), splits=10)
    assert out["is"] == pytest.approx(1.0, abs=1e-12) and out["is_std"] == pytest.approx(0.0, abs=1e-12)
    assert inception_score(np.zeros((100, 7)), splits=10)["is"] == pytest.approx(1.0, abs=1e-12)  # logits


def test_is_one_hot_spread_over_classes_gives_c():
    c, splits = 10, 5
    labels = np.arange(c * splits * 4) % c  # every split holds each class equally often
    probs = np.eye(c)[labels]
    out = inception_score(probs, splits=splits)
    assert out["is"] == pytest.approx(c, rel=1e-12) and out["is_std"] == pytest.approx(0.0, abs=1e-9)
    # the same through (very confident) logits, and as a torch tensor
    out = inception_score(torch.from_numpy(probs * 50.0), splits=splits)
    assert out["is"] == pytest.approx(c, rel=1e-9)


def test_is_one_hot_single_class_gives_one():
    probs = np.eye(6)[np.full(60, 2)]
    assert inception_score(probs, splits=3) == {"is": 1.0, "is_std": 0.0}


def test_is_logits_and_probs_agree():
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(103, 5)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    a = inception_score(logits, splits=4)
    b = inception_score(probs, splits=4)
    c = inception_score(logits, splits=4, from_logits=True)
    assert a["is"] == pytest.approx(b["is"], rel=1e-10) and a == c
    assert 1.0 < a["is"] < 5.0
    with pytest.raises(GanvaeError):
        inception_score(logits[:3], splits=4)


# --------------------------------------------------------------------- modes


def test_class_histogram_and_mode_coverage_by_hand():
    labels = [0, 0, 0, 1, 2, 2, 0, 1]  # counts 4, 2, 2, 0 over 4 classes
    assert class_histogram(labels, 4) == [0.5, 0.25, 0.25, 0.0]
    out = mode_coverage(labels, 4, reference=[1, 1, 1, 1])
    # KL(p || U) = 0.5 log 2 + 2 * 0.25 log 1 = 0.5 log 2 ; TV = 0.5 (0.25 + 0 + 0 + 0.25) = 0.25
    assert out["modes_covered"] == 3 and type(out["modes_covered"]) is int
    assert out["kl_to_uniform"] == pytest.approx(0.5 * math.log(2), rel=1e-12)
    assert out["tv_to_reference"] == pytest.approx(0.25, rel=1e-12)
    assert "tv_to_reference" not in mode_coverage(labels, 4)
    assert mode_coverage(labels, 4, min_share=0.3)["modes_covered"] == 1


def test_mode_coverage_default_threshold_and_extremes():
    # 10 classes -> default min_share 0.01; class 9 has 1/200 = 0.005 -> not a mode
    labels = torch.tensor(np.concatenate([np.repeat(np.arange(9), 22), [0, 9]]))  # 200 samples
    hist = class_histogram(labels, 10)
    assert hist[9] == pytest.approx(1 / 200)
    assert mode_coverage(labels, 10)["modes_covered"] == 9
    assert mode_coverage(labels, 10, min_share=0)["modes_covered"] == 10
    uniform = mode_coverage(np.arange(40) % 4, 4)
    assert uniform["modes_covered"] == 4 and uniform["kl_to_uniform"] == pytest.approx(0.0, abs=1e-15)
    single = mode_coverage([3] * 5, 4, reference=[0.25] * 4)
    assert single["modes_covered"] == 1
    assert single["kl_to_uniform"] == pytest.approx(math.log(4))
    assert single["tv_to_reference"] == pytest.approx(0.75)


def test_conditional_accuracy_and_label_errors():
    assert conditional_accuracy([0, 1, 2, 2, 1], [0, 1, 1, 2, 0]) == pytest.approx(0.6)
    assert conditional_accuracy(torch.tensor([3, 3]), np.array([3, 3])) == 1.0
    with pytest.raises(GanvaeError):
        conditional_accuracy([0, 1], [0])
    with pytest.raises(GanvaeError):
        class_histogram([0, 4], 4)
    with pytest.raises(GanvaeError):
        class_histogram([0.5, 1], 4)

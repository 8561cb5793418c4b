"""DP-MERF (ganvae.objectives.merf, ganvae.models.dpmerf, ganvae.privacy.merf): the random-feature kernel
against its closed form, the embedding's sensitivity, the loss by hand, the one release's privacy cost against
the accountant and by hand, training, exact resume without a second release, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import ganvae
from ganvae.cli import main
from ganvae.objectives.merf import class_sum, embedding_distance, features, normalise, rff_frequencies
from ganvae.privacy import PrivacyConfig
from ganvae.privacy.accounting import epsilon_for
from ganvae.privacy.merf import EmbeddingRelease
from ganvae.training import checkpoint as ckpt
from helpers import assert_same_state, tiny_set

SET = tiny_set("dp-merf", more=["model.rff_freqs=64", "train.log_every=2", "train.checkpoint_every=2"])


# ----------------------------------------------------------------------------- the objective
def test_features_have_unit_norm_and_the_kernel_of_their_closed_form():
    d, length, w = 4, 1.5, 0.8
    W = rff_frequencies(200_000, d, length, seed=0)
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, -0.3, 1.0, 0.0], [2.0, 2.0, -1.0, 0.5]])
    f = features(x, W, w).double()
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-5)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        exact = w * math.exp(-float(((x[i] - x[j]) ** 2).sum()) / (2 * length ** 2)) + (1 - w)
        assert abs(float(f[i] @ f[j]) - exact) < 0.01, (i, j)


def test_features_stay_float32_under_bf16_autocast():
    W = rff_frequencies(64, 16, 0.5, seed=0)
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f = features(x, W, 0.9)
    assert f.dtype == torch.float32
    torch.testing.assert_close(f, features(x, W, 0.9), rtol=0, atol=0)


def test_frequencies_are_seeded_and_data_independent():
    assert torch.equal(rff_frequencies(8, 3, 2.0, 5), rff_frequencies(8, 3, 2.0, 5))
    assert not torch.equal(rff_frequencies(8, 3, 2.0, 5), rff_frequencies(8, 3, 2.0, 6))
    W = rff_frequencies(100_000, 2, 2.0, 0)
    assert abs(float(W.std()) - 0.5) < 0.01  # rows from N(0, I / length^2)


def test_class_sum_normalise_and_distance_by_hand():
    f = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [2.0, 2.0, 0.5]])
    y = torch.tensor([0, 1, 1])
    S = class_sum(f, y, 2)
    torch.testing.assert_close(S, torch.tensor([[1.0, 2.0], [0.0, 3.0], [0.5, 1.0]]))
    # w = 0.75: the count row is sqrt(0.25) = 0.5 per image, so the counts read back are 1 and 2
    target, props = normalise(S, 0.75)
    torch.testing.assert_close(props, torch.tensor([1 / 3, 2 / 3]))
    torch.testing.assert_close(target, S / 3)
    # a negative noisy count is read as 0
    _, props = normalise(torch.tensor([[1.0, 1.0], [-0.2, 0.5]]), 0.75)
    torch.testing.assert_close(props, torch.tensor([0.0, 1.0]))
    # the loss: || target - class_sum(fake) / B ||^2
    fake = torch.tensor([[1.0, 1.0, 0.5], [0.0, 0.0, 0.5]])
    yf = torch.tensor([0, 0])
    expected = ((target - torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.5, 0.0]])) ** 2).sum()
    torch.testing.assert_close(embedding_distance(target, fake, yf), expected)


def test_one_image_changes_the_class_sum_by_norm_exactly_one():
    """Sensitivity 1 under add/remove: the noise std is the noise multiplier itself."""
    model = ganvae.models.build("dp-merf", ganvae.models.MODELS.get("dp-merf").config_class(
        image_size=8, channels=1, num_classes=3, g_width=8, rff_freqs=256))
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 3
    for extra in (torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), x[:1]):
        for cls in range(3):
            diff = model.embed_sum(torch.cat([x, extra]), torch.cat([y, torch.tensor([cls])])) - model.embed_sum(x, y)
            assert abs(float(diff.norm()) - 1.0) < 1e-12


# ----------------------------------------------------------------------------- the privacy cost
def _gaussian_epsilon_by_hand(sigma: float, delta: float) -> float:
    """One Gaussian mechanism (sensitivity 1, no subsampling): RDP alpha / (2 sigma^2) at Opacus's orders,
    converted with Opacus's rule eps = rdp - (log delta + log alpha) / (alpha - 1) + log((alpha - 1) / alpha)."""
    from opacus.accountants.rdp import RDPAccountant

    best = math.inf
    for a in RDPAccountant.DEFAULT_ALPHAS:
        rdp = a / (2 * sigma ** 2)
        best = min(best, rdp - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a))
    return best


@pytest.mark.parametrize("epsilon", [1.0, 10.0])
def test_release_cost_is_the_accountants_for_one_gaussian_step(epsilon):
    p = PrivacyConfig(epsilon=epsilon, delta=1e-5)
    plugin = EmbeddingRelease(p, None, None)
    sigma = plugin.noise_multiplier()
    assert plugin.history() == [(sigma, 1.0, 1)]
    assert plugin.epsilon() == pytest.approx(epsilon_for([(sigma, 1.0, 1)], 1e-5), rel=1e-12)
    assert plugin.epsilon() == pytest.approx(_gaussian_epsilon_by_hand(sigma, 1e-5), rel=1e-6)
    assert epsilon * 0.97 <= plugin.epsilon() <= epsilon  # calibrated to the target, not above it


def test_given_noise_multiplier_and_no_privacy():
    plugin = EmbeddingRelease(PrivacyConfig(noise_multiplier=2.0, delta=1e-5), None, None)
    assert plugin.noise_multiplier() == 2.0
    assert plugin.epsilon() == pytest.approx(_gaussian_epsilon_by_hand(2.0, 1e-5), rel=1e-6)
    off = EmbeddingRelease(PrivacyConfig(), None, None)
    assert off.noise_multiplier() == 0.0 and off.history() == [] and off.name == "release"


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("merf")
    kw = dict(batch_size=16, seed=2, progress=False, log=lambda *a: None)
    ganvae.train("dp-merf", "digits", out=root / "a", steps=6, set=SET + ["privacy.epsilon=2"], **kw)
    ganvae.train("dp-merf", "digits", out=root / "b", steps=3, set=SET + ["privacy.epsilon=2"], **kw)
    ganvae.train(out=root / "b", resume=True, steps=6, progress=False, log=lambda *a: None)
    ganvae.train("dp-merf", "digits", out=root / "plain", steps=2, set=SET, **kw)
    return root


def test_private_run_records_its_guarantee(runs):
    rec = json.loads((runs / "a" / "run.json").read_text())["privacy"]
    assert rec["mechanism"] == "gaussian release" and rec["steps"] == 1 and rec["released_images"] == 1617
    assert rec["epsilon"] <= 2.0 and rec["epsilon"] == pytest.approx(
        epsilon_for([(rec["noise_multiplier"], 1.0, 1)], 1e-5), rel=1e-5)
    eps = [r["dp/epsilon"] for r in map(json.loads, (runs / "a" / "metrics.jsonl").read_text().splitlines())
           if "dp/epsilon" in r]
    assert eps and len(set(eps)) == 1  # training steps cost nothing after the release


def test_resume_is_bit_identical_and_releases_once(runs, monkeypatch):
    sa = ckpt.load_state(runs / "a" / "checkpoints" / "latest.pt")
    sb = ckpt.load_state(runs / "b" / "checkpoints" / "latest.pt")
    assert_same_state(sa, sb)
    assert sa["model"]["target.released"].item() == 1
    calls = []
    monkeypatch.setattr(EmbeddingRelease, "release", lambda self: calls.append(1))
    ganvae.train(out=runs / "b", resume=True, steps=8, progress=False, log=lambda *a: None)
    assert calls == []  # the checkpoint holds the release: a resume never releases (and pays) again


def test_non_private_release_is_the_exact_normalised_embedding(runs):
    from ganvae.data import DataConfig, load_data
    from ganvae.export import load_model

    state = ckpt.load_state(runs / "plain" / "checkpoints" / "latest.pt")["model"]
    model = load_model(runs / "plain")
    train = load_data(DataConfig(source="digits", image_size=8, channels=1)).train
    exact = model.embed_sum(train.images.float() / 255, train.labels)
    target, props = normalise(exact, model.config.feature_weight)
    torch.testing.assert_close(state["target.embedding"], target.float(), rtol=1e-5, atol=1e-7)
    counts = np.bincount(train.labels.numpy(), minlength=10)
    torch.testing.assert_close(state["target.props"], torch.tensor(counts / counts.sum(), dtype=torch.float32))
    assert "privacy" not in json.loads((runs / "plain" / "run.json").read_text())


def test_training_lowers_the_embedding_distance(tmp_path):
    run = ganvae.train("dp-merf", "digits", out=tmp_path / "r", steps=60, batch_size=64, seed=0, progress=False,
                       log=lambda *a: None, set=SET + ["train.log_every=10", "model.lr=0.005"])
    mmd = [r["mmd2"] for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines()) if "mmd2" in r]
    assert mmd[-1] < 0.5 * mmd[0]


@pytest.mark.parametrize("model", ["dp-merf", "dp-mepf"])
def test_unlabelled_data_is_one_line_and_exit_2(tmp_path, capsys, model):
    from PIL import Image

    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(12):
        Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    argv = ["train", "--model", model, "--data", str(folder), "--steps", "2", "--quiet", "--out",
            str(tmp_path / "r"), "--dp-epsilon", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{model} is class-conditional" in err and "class labels" in err, err


# ----------------------------------------------------------------------------- DP-MEPF: perceptual features
def test_perceptual_features_by_hand():
    from ganvae.objectives.merf import perceptual_features

    a1 = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    a2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    f = perceptual_features([a1, a2], 0.5)
    s = math.sqrt(0.5 / 2)  # sqrt(w / L)
    torch.testing.assert_close(f[0], torch.tensor([0.6 * s, 0.8 * s, s, 0.0, 0.0, math.sqrt(0.5)]))
    torch.testing.assert_close(f[1], torch.tensor([0.0, 0.0, 0.0, s, 0.0, math.sqrt(0.5)]))  # a zero layer: zeros
    assert abs(float(f[0].norm()) - 1.0) < 1e-6 and float(f[1].norm()) < 1.0


@pytest.fixture(scope="module")
def mepf():
    return ganvae.models.build("dp-merf", ganvae.models.MODELS.get("dp-merf").config_class(
        image_size=8, channels=1, num_classes=3, g_width=8, features="effnet", feature_size=32))


def test_perceptual_net_is_frozen_outside_the_state_and_differentiable(mepf):
    from ganvae.nets.pretrained import EFFNET_LITE0_WIDTHS

    mepf.featurize(torch.rand(1, 1, 8, 8))  # loads the net on first use
    net = mepf._perceptual[0]
    assert tuple(net.widths()) == EFFNET_LITE0_WIDTHS
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    layers = net(x)
    assert [t.shape[1] for t in layers] == net.widths() and sum(net.widths()) + 1 == mepf.target.embedding.shape[0]
    layers[-1].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0  # a generator can learn through it
    assert not any(p.requires_grad for p in net.parameters())
    mepf.train()
    net.train()
    assert not net.training and not net.net.training  # frozen BatchNorm statistics, always
    assert not any(k.startswith(("_perceptual", "net.")) for k in mepf.state_dict())  # not in checkpoints/exports


def test_perceptual_class_sum_has_sensitivity_one(mepf):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 3
    for extra in (torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), x[:1]):
        diff = mepf.embed_sum(torch.cat([x, extra]), torch.cat([y, torch.tensor([1])])) - mepf.embed_sum(x, y)
        assert abs(float(diff.norm()) - 1.0) < 1e-6


def test_dp_mepf_trains_privately_and_lowers_the_distance(tmp_path):
    sets = SET + ["model.features=effnet", "model.feature_size=32", "train.log_every=5", "model.lr=0.005"]
    run = ganvae.train("dp-merf", "digits", out=tmp_path / "r", steps=25, batch_size=32, seed=0, progress=False,
                       log=lambda *a: None, set=sets + ["privacy.epsilon=10", "privacy.delta=1e-5"])
    mmd = [r["mmd2"] for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines()) if "mmd2" in r]
    assert mmd[-1] < 0.7 * mmd[0]
    rj = json.loads((run.path / "run.json").read_text())["privacy"]
    assert rj["epsilon"] <= 10.0 and rj["steps"] == 1
    assert (tmp_path / "r" / "model").is_dir()
    assert main(["sample", str(tmp_path / "r"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize("bad,words", [("model.features=vgg", ("model.features", "effnet")),
                                       ("model.feature_size=48", ("model.feature_size", "multiple of 32")),
                                       ("model.feature_grid=0", ("model.feature_grid", "1 to 64"))])
def test_bad_feature_map_is_one_line_and_exit_2(tmp_path, capsys, bad, words):
    argv = ["train", "--model", "dp-merf", "--data", "digits", "--steps", "1", "--quiet", "--out",
            str(tmp_path / "r"), "--set", bad]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err


def test_feature_grid_sizes_the_released_embedding_and_keeps_sensitivity_one():
    from ganvae.nets.pretrained import perceptual_sizes

    model = ganvae.models.build("dp-merf", ganvae.models.MODELS.get("dp-merf").config_class(
        image_size=8, channels=1, num_classes=3, g_width=8, features="effnet", feature_size=32, feature_grid=4))
    assert model.target.embedding.shape == (sum(perceptual_sizes(32, 4)) + 1, 3)
    assert model.target.embedding.shape[0] > 2 * (sum(perceptual_sizes(32, 1)) + 1)  # the layout adds numbers
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 1])
    diff = model.embed_sum(x, y) - model.embed_sum(x[:3], y[:3])  # one image more: a change of norm 1
    assert abs(float(diff.norm()) - 1.0) < 1e-6


@pytest.mark.parametrize("image_size,net", [(8, 32), (28, 32), (32, 32), (64, 64), (100, 128), (1024, 512)])
def test_dp_mepf_sees_the_image_size_rounded_up_to_a_multiple_of_32(image_size, net):
    from ganvae.nets.pretrained import perceptual_sizes

    cfg = ganvae.models.MODELS.get("dp-mepf").config_class(image_size=image_size, channels=1, num_classes=2)
    assert (cfg.features, cfg.feature_grid, cfg.net_size()) == ("effnet", 16, net)
    cfg.feature_size = 64  # an explicit size wins
    assert cfg.net_size() == 64
    if image_size <= 64:
        model = ganvae.models.build("dp-mepf", cfg)
        assert model.target.embedding.shape == (sum(perceptual_sizes(64, 16)) + 1, 2)

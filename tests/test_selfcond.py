"""sc-dcgan: the clusters, the cluster drawn from z_0, fakes of the real batch's clusters, the fit in the loop."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ganvae
from ganvae.errors import GanvaeError
from ganvae.models import Batch
from ganvae.models.selfcond import Clusters, _kmeans, _thresholds, mode_seeking
from ganvae.training import checkpoint as ckpt
from ganvae.training.datafit import DataFitPlugin
from helpers import assert_same_state, tiny_model, train_tiny


def three_groups(n_each=40, size=8, seed=0):
    """Images of three well-separated kinds (dark, bright top half, bright left half) with a little noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(3, 1, size, size)
    base[1, :, : size // 2] = 1
    base[2, :, :, : size // 2] = 1
    y = torch.arange(3).repeat_interleave(n_each)
    x = (base[y] + 0.05 * torch.randn(len(y), 1, size, size, generator=g)).clamp(0, 1)
    return x, y


def test_kmeans_recovers_separated_groups_and_is_seeded():
    x, y = three_groups()
    c = Clusters(3, 4, 1, 8)
    c.fit(x, n=10_000, iters=10, seed=0)
    a = c.assign(x)
    # one cluster per group (a permutation of the labels)
    assert {(int(y[i]), int(a[i])) for i in range(len(y))} == {(k, int(a[y == k][0])) for k in range(3)}
    assert len(set(a.tolist())) == 3
    assert c.counts.tolist() == [40.0, 40.0, 40.0] and int(c.fitted) == 1
    d = Clusters(3, 4, 1, 8)
    d.fit(x, n=10_000, iters=10, seed=0)
    assert_same_state(c.state_dict(), d.state_dict())
    # uint8 images give the same clusters as the same images in [0, 1]
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(c.assign(u8), a)


def test_kmeans_centroids_are_the_cluster_means_by_hand():
    p = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 2.0]])
    c = _kmeans(p, 2, iters=5, g=torch.Generator().manual_seed(0))
    got = sorted(map(tuple, c.tolist()))
    assert got == [(0.0, 0.5), (10.0, 1.0)]
    with pytest.raises(GanvaeError, match="model.clusters=5: the data has only 4 images"):
        _kmeans(p, 5, iters=1, g=torch.Generator())


def test_large_images_are_pooled_before_clustering():
    c = Clusters(2, 8, 3, 64)
    assert c.factor == 2 and c.mean.shape == (3 * 32 * 32,)
    assert Clusters(2, 8, 1, 28).factor == 1


def test_thresholds_by_hand_and_the_cluster_frequencies_of_z0():
    t = _thresholds(torch.tensor([2.0, 5.0, 3.0]))  # cumulative 0.2, 0.7
    torch.testing.assert_close(t, torch.tensor([-0.841621, 0.524401]), rtol=0, atol=1e-5)
    m = tiny_model("sc-dcgan")
    m.G.thresholds.copy_(t)
    z = torch.randn(200_000, m.config.latent_dim, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(m.G.cluster(z), minlength=3).double() / len(z)
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), rtol=0, atol=0.004)
    # an empty cluster (frequency 0) is never drawn
    m.G.thresholds.copy_(_thresholds(torch.tensor([1.0, 0.0, 1.0])))
    assert set(m.G.cluster(z).tolist()) == {0, 2}


def test_fakes_of_a_given_cluster_and_truncation_keeps_the_cluster():
    m = tiny_model("sc-dcgan")
    m.G.thresholds.copy_(_thresholds(torch.tensor([0.1, 0.6, 0.3])))
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2] * 200)
    z = m.latent(len(y), gen)
    code = m.G.code_for(y, z, gen)
    assert torch.equal(m.G.cluster(code), y)
    assert torch.equal(code[:, 1:], z[:, 1:])
    tr = m.truncate(code, 0.5)
    assert torch.equal(m.G.cluster(tr), y) and torch.equal(tr[:, 1:], z[:, 1:] * 0.5)


def test_fit_sets_g_frequencies_and_the_loop_fits_once(tmp_path, monkeypatch):
    run = train_tiny(tmp_path / "a", "sc-dcgan", steps=6, seed=3, checkpoint_every=2, log_every=2,
                     clusters=10)
    state = ckpt.load_state(run.path / "checkpoints" / "latest.pt")["model"]
    counts = state["clusters.counts"]
    assert counts.sum().item() == 1617 and int(state["clusters.fitted"]) == 1
    torch.testing.assert_close(state["G.thresholds"], _thresholds(counts))
    fit = json.loads((run.path / "run.json").read_text())["fit"]
    assert fit["clusters"] == 10 and fit["empty"] == int((counts == 0).sum())
    assert math.isclose(fit["largest_share"], float(counts.max() / 1617), rel_tol=1e-5)
    # exact resume: the checkpoint holds the clusters, a resume fits nothing and ends bit-identical
    train_tiny(tmp_path / "b", "sc-dcgan", steps=3, seed=3, checkpoint_every=2, log_every=2, clusters=10)
    calls = []
    real_fit = DataFitPlugin.before_run
    monkeypatch.setattr(DataFitPlugin, "before_run", lambda self, tr, n: (calls.append(self.model.fitted),
                                                                          real_fit(self, tr, n)))
    train_tiny(tmp_path / "b", steps=6, resume=True)
    assert calls == [True]
    assert_same_state(ckpt.load_state(run.path / "checkpoints" / "latest.pt"),
                      ckpt.load_state(tmp_path / "b" / "checkpoints" / "latest.pt"))


def test_sampling_and_scoring_need_no_labels(tmp_path):
    run = train_tiny(tmp_path / "r", "sc-dcgan", steps=4, seed=0, clusters=5)
    model = ganvae.load(run.path)
    assert not model.conditional
    x = model.sample(8, seed=1)
    assert x.shape == (8, 1, 8, 8)
    with pytest.raises(GanvaeError, match="not conditional"):
        model.sample(2, seed=0, labels=1)


def test_private_training_is_refused(tmp_path, capsys):
    from ganvae.cli import main

    code = main(["train", "--model", "sc-dcgan", "--data", "digits", "--out", str(tmp_path / "r"), "--steps", "2",
                 "--dp-epsilon", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "sc-dcgan" in err[0] and "without noise" in err[0]


def test_bad_cluster_options_are_one_line(tmp_path, capsys):
    from ganvae.cli import main

    code = main(["train", "--model", "sc-dcgan", "--data", "digits", "--out", str(tmp_path / "r"), "--steps", "2",
                 "--set", "model.clusters=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model.clusters: expected >= 2, got 1" in err[0]


def test_mode_seeking_by_hand():
    x1, x2 = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    z1, z2 = torch.zeros(2, 3), torch.full((2, 3), 2.0)
    torch.testing.assert_close(mode_seeking(x1, x2, z1, z2), torch.tensor(1 / (0.25 + 1e-5)))


def test_g_phase_pairs_codes_of_one_cluster_and_adds_the_term():
    m = tiny_model("sc-dcgan")
    seen = []

    class D(torch.nn.Module):
        def forward(self, x, y):
            seen.append(y)
            return x.flatten(1).mean(1)

    m.D = D()
    terms = m.g_phase(Batch(None, None, n=9), torch.Generator().manual_seed(0))
    y = seen[0]
    assert len(y) == 9 and torch.equal(y[:4], y[4:8])  # pairs (i, i + 4) share their cluster; the odd one is free
    assert terms["loss/G/ms"] > 0
    torch.testing.assert_close(terms["loss"], terms["loss/G/adv"] + terms["loss/G/ms"])
    m.config.ms_weight = 0.0
    assert "loss/G/ms" not in m.g_phase(Batch(None, None, n=9), torch.Generator().manual_seed(0))

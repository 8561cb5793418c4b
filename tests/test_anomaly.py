"""Anomaly scores (`ganvae score`): AUROC against hand-computed values, scores on tiny runs, the CSV, bad input."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch
from helpers import train_tiny

import ganvae.api as api
from ganvae.apps.anomaly import anomaly_scores, available
from ganvae.apps.encoder import penultimate
from ganvae.cli import main
from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError
from ganvae.metrics.auroc import auroc
from ganvae.training.checkpoint import load_state


# ------------------------------------------------------------------------------------------------- AUROC
def test_auroc_hand_computed():
    # anomalies {0.4, 0.8} vs normal {0.1, 0.35}: all 4 pairs ordered -> 1
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 1, 0, 1]) == 1.0
    # anomalies {2, 3} vs normal {1, 2}: 2>1, 2=2 (one half), 3>1, 3>2 -> 3.5 / 4
    assert auroc([1, 2, 2, 3], [0, 1, 0, 1]) == 0.875
    # anomalies {1} vs normal {2, 3}: none above -> 0; all tied -> 0.5
    assert auroc([1, 2, 3], [1, 0, 0]) == 0.0
    assert auroc([5, 5, 5, 5], [1, 0, 1, 0]) == 0.5
    # anomalies {1, 3} vs normal {2, 2, 4}: 1: 0 of 3; 3: above both 2s -> 2 of 3; total 2 / 6
    assert auroc([1, 3, 2, 2, 4], [1, 1, 0, 0, 0]) == pytest.approx(2 / 6)


def test_auroc_matches_pairwise_count_with_ties():
    g = np.random.default_rng(0)
    s, y = g.integers(0, 5, 40), g.integers(0, 2, 40).astype(bool)
    pos, neg = s[y], s[~y]
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    assert auroc(s, y) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_auroc_needs_both_classes():
    with pytest.raises(GanvaeError, match="both normal and anomalous"):
        auroc([1, 2], [0, 0])


# ------------------------------------------------------------------------------------------------- tiny runs
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tiny VAE trained on digits (8x8 grey) long enough to tell digits from noise; and a noise .npz."""
    root = tmp_path_factory.mktemp("anomaly")
    train_tiny(root / "vae", "vae", "digits", steps=200, batch_size=64)
    digits = load_data(DataConfig(source="digits", cache="off"), progress=False).test.images
    noise = (torch.rand(digits.shape, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    np.savez(root / "noise.npz", images=noise.numpy())
    np.savez(root / "digits.npz", images=digits.numpy())
    return root


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("anomaly_gan")
    train_tiny(root / "gan", "dcgan", "digits", steps=6, batch_size=16)
    return root / "gan"


def test_vae_scores_noise_higher_than_digits(vae_run):
    normal = api.score(vae_run / "vae", str(vae_run / "digits.npz"), out=vae_run / "a.csv", log=None)
    odd = api.score(vae_run / "vae", str(vae_run / "noise.npz"), out=vae_run / "b.csv", log=None)
    assert list(normal["scores"]) == ["neg_elbo", "neg_iwae", "recon"]
    for name in normal["scores"]:
        a, b = normal["scores"][name], odd["scores"][name]
        flags = np.r_[np.zeros(len(a)), np.ones(len(b))]
        assert auroc(np.r_[a, b], flags) > 0.95, name
    # L_k >= ELBO estimate from the same samples, so -L_k <= -ELBO for every image
    assert (normal["scores"]["neg_iwae"] <= normal["scores"]["neg_elbo"] + 1e-9).all()


def test_scores_are_seeded(vae_run):
    a = api.score(vae_run / "vae", str(vae_run / "digits.npz"), out=vae_run / "s1.csv", scores="neg_iwae", log=None)
    b = api.score(vae_run / "vae", str(vae_run / "digits.npz"), out=vae_run / "s2.csv", scores="neg_iwae", log=None)
    assert (vae_run / "s1.csv").read_text() == (vae_run / "s2.csv").read_text()
    assert np.array_equal(a["scores"]["neg_iwae"], b["scores"]["neg_iwae"])


def test_csv_columns(vae_run):
    out = vae_run / "cols.csv"
    assert main(["score", str(vae_run / "vae"), "--images", str(vae_run / "noise.npz"), "--out", str(out),
                 "--scores", "recon,neg_elbo", "--k", "4"]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["index", "recon", "neg_elbo"]
    assert len(rows) == 1 + 180 and rows[1][0] == "0" and float(rows[1][1]) > 0
    # a labelled source gets a label column
    r = api.score(vae_run / "vae", "digits", out=vae_run / "lab.csv", scores="recon", log=None)
    assert (vae_run / "lab.csv").read_text().splitlines()[0] == "index,label,recon"
    assert r["n"] == 1797  # digits has no test split of its own: every image


def _npz(path, shape):
    np.savez(path, images=np.zeros(shape, dtype=np.uint8))
    return str(path)


@pytest.mark.parametrize("shape,got", [((4, 1, 16, 16), "1x16x16"), ((4, 3, 8, 8), "3x8x8")])
def test_wrong_size_or_channels_is_one_line_exit_2(vae_run, capsys, shape, got):
    bad = _npz(vae_run / f"bad_{got}.npz", shape)
    assert main(["score", str(vae_run / "vae"), "--images", bad, "--out", str(vae_run / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"images are {got}" in err and "this run expects 1x8x8" in err


def test_unreadable_images_and_bad_options(vae_run, capsys):
    junk = vae_run / "junk.npz"
    junk.write_bytes(b"not a zip file")
    assert main(["score", str(vae_run / "vae"), "--images", str(junk), "--out", str(vae_run / "x.csv")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(GanvaeError, match="--scores disc: needs a model with a discriminator"):
        api.score(vae_run / "vae", "digits", out=vae_run / "x.csv", scores="disc", log=None)
    with pytest.raises(GanvaeError, match="--scores nope: unknown score"):
        api.score(vae_run / "vae", "digits", out=vae_run / "x.csv", scores="nope", log=None)
    with pytest.raises(GanvaeError, match="expected a .csv"):
        api.score(vae_run / "vae", "digits", out=vae_run / "x.txt", log=None)


def test_gan_scores_use_the_checkpoint_discriminator(gan_run):
    from ganvae.api.score import scoring_model

    model = scoring_model(gan_run, "cpu")
    assert available(model) == ["disc", "fanogan"]
    ckpt = load_state(gan_run / "checkpoints" / "latest.pt")["model"]
    d_keys = [k for k in ckpt if k.split(".", 1)[0] not in model.meta["parts"]]  # what the export leaves out
    assert d_keys and all(torch.equal(model.state_dict()[k], ckpt[k]) for k in d_keys)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    logits, feats = penultimate(model, x)
    assert torch.equal(logits, model.discriminate(x).flatten())
    assert feats is not None and feats.shape[0] == 5 and feats.shape[1] > 1
    assert np.allclose(anomaly_scores(model, x, ["disc"])["disc"], -logits.double().detach().numpy())


def test_fanogan_encoder_trained_once_and_reused(gan_run):
    a = api.score(gan_run, "digits", out=gan_run / "f1.csv", scores="fanogan", encoder_steps=5, log=None)
    info = gan_run / "anomaly" / "encoder.json"
    assert info.is_file() and (gan_run / "anomaly" / "encoder.safetensors").is_file()
    stamp = info.stat().st_mtime_ns
    b = api.score(gan_run, "digits", out=gan_run / "f2.csv", scores="fanogan", encoder_steps=5, log=None)
    assert info.stat().st_mtime_ns == stamp  # reused, not retrained
    assert np.array_equal(a["scores"]["fanogan"], b["scores"]["fanogan"])
    assert (a["scores"]["fanogan"] > 0).all()


def test_folder_images_are_resized_but_channels_must_match(vae_run):
    from PIL import Image

    grey, rgb = vae_run / "grey", vae_run / "rgb"
    grey.mkdir(exist_ok=True)
    rgb.mkdir(exist_ok=True)
    g = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(g.integers(0, 255, (20, 24), dtype=np.uint8)).save(grey / f"p{i}.png")
        Image.fromarray(g.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(rgb / f"p{i}.png")
    r = api.score(vae_run / "vae", str(grey), out=vae_run / "folder.csv", scores="recon", log=None)
    assert r["n"] == 3 and r["scores"]["recon"].shape == (3,)
    with pytest.raises(GanvaeError, match="images are 3x8x8 .* this run expects 1x8x8"):
        api.score(vae_run / "vae", str(rgb), out=vae_run / "folder.csv", log=None)


class _ShiftModel(torch.nn.Module):
    """A stand-in GAN: G(z) = z + 0.1 (as an image), D a linear layer on the flattened image (so f(x) = x)."""

    has_discriminator, conditional = True, False

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def decode_latent(self, z):
        return (z + 0.1).view(-1, 1, 2, 2)

    def discriminate(self, x, labels=None):
        return self.lin(x.flatten(1)).flatten()


def test_fanogan_residual_closed_form():
    from ganvae.apps.encoder import residual_score

    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    encoder = lambda im: im.flatten(1)  # noqa: E731  E(x) = x, so G(E(x)) = x + 0.1
    model = _ShiftModel()
    # pixels: mean (0.1)^2 = 0.01; features f = the flattened image: also 0.01, weighted by kappa
    assert torch.allclose(residual_score(model, encoder, x, 0.0, True), torch.full((3,), 0.01))
    assert torch.allclose(residual_score(model, encoder, x, 2.0, True), torch.full((3,), 0.03))
    assert torch.allclose(residual_score(model, encoder, x, 2.0, False), torch.full((3,), 0.01))

"""Short real training runs on `digits` learn something, measured honestly (each well under a minute)."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression

import ganvae
from ganvae.data import DataConfig, load_data
from ganvae.models import Batch, build


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(source="digits"), progress=False)


def heldout_elbo(model, images) -> float:
    """Mean ELBO (nats per image) of the held-out split, one fixed posterior sample."""
    model.eval()
    with torch.no_grad():
        return model.loss(Batch(images.float() / 255), torch.Generator().manual_seed(0))["elbo"].item()


@pytest.mark.parametrize("name, sets", [
    ("vae", ["model.latent_dim=8", "model.width=16"]),
    ("mlp-vae", ["model.latent_dim=8", "model.enc_hidden=[128]", "model.dec_hidden=[128]"]),
])
def test_vae_heldout_elbo_improves_by_30_percent_in_300_steps(tmp_path, digits, name, sets):
    run = ganvae.train(name, "digits", out=tmp_path / "r", steps=300, batch_size=64, progress=False, set=sets)
    torch.manual_seed(0)
    untrained = build(name, run.config.model)
    before = heldout_elbo(untrained, digits.test.images)
    after = heldout_elbo(ganvae.load(run.path), digits.test.images)
    improvement = (after - before) / abs(before)
    print(f"{name}: held-out ELBO {before:.2f} -> {after:.2f} nats ({improvement:.0%})")
    assert improvement >= 0.30


def test_gan_samples_become_digit_like(tmp_path, digits):
    """A logistic regression fit on real digits is confident on real test digits (about 0.88 mean
    max-probability), unsure on an untrained generator's output (about 0.4), and should be fairly
    sure on a trained generator's samples."""
    x = (digits.train.images.float() / 255).flatten(1).numpy()
    clf = LogisticRegression(max_iter=5000, C=0.5).fit(x, digits.train.labels.numpy())

    def confidence(images: torch.Tensor) -> float:
        return float(clf.predict_proba(images.flatten(1).numpy()).max(1).mean())

    real = confidence(digits.test.images.float() / 255)
    sets = ["model.latent_dim=32", "model.g_hidden=[256,512]", "model.d_hidden=[512,256]",
            "model.lr_g=5e-4", "model.lr_d=5e-4", "train.ema_kimg=2"]
    run = ganvae.train("mlp-gan", "digits", out=tmp_path / "g", steps=3000, batch_size=64, progress=False,
                       set=sets)
    torch.manual_seed(0)
    before = confidence(build("mlp-gan", run.config.model).sample(500, seed=0))
    after = confidence(ganvae.load(run.path).sample(500, seed=0))
    print(f"classifier confidence: untrained G {before:.3f}, trained G {after:.3f}, real test {real:.3f}")
    assert before < 0.5
    assert after > 0.75
    assert after > 0.85 * real

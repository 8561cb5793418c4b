"""The ELBO and the importance-weighted bound against a likelihood computed by quadrature."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ganvae.metrics.likelihood import vae_bounds
from ganvae.objectives.vae import LIKELIHOODS


MU, SD = 0.1, 0.9  # close to the posteriors, so importance sampling converges fast


class ToyVAE(nn.Module):
    """One latent dimension, one pixel: q(z|x) = N(MU, SD^2), p(x=1|z) = sigmoid(2z - 0.5)."""

    def __init__(self):
        super().__init__()
        self.encoder = _Const(torch.tensor([MU, math.log(SD ** 2)]))
        self.decoder = _Affine(2.0, -0.5)
        self.likelihood = LIKELIHOODS.get("bernoulli")()

    def bound_parts(self, labels=None):  # what every model with an encoder gives the bounds
        return self.encoder, self.decoder, self.likelihood


class _Const(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.register_buffer("v", v)

    def forward(self, x):
        return self.v.expand(x.shape[0], 2)


class _Affine(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return (self.a * z + self.b).view(-1, 1, 1, 1)


def exact_log_px(x: float) -> float:
    z = np.linspace(-10, 10, 200_001)
    p1 = 1 / (1 + np.exp(-(2 * z - 0.5)))
    prior = np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)
    px = np.trapezoid((p1 if x == 1 else 1 - p1) * prior, z)
    return math.log(px)


def exact_elbo(x: float) -> float:
    z = np.linspace(MU - 10 * SD, MU + 10 * SD, 200_001)
    q = np.exp(-0.5 * ((z - MU) / SD) ** 2) / (SD * math.sqrt(2 * math.pi))
    logit = 2 * z - 0.5
    log_lik = -np.logaddexp(0, -logit) if x == 1 else -np.logaddexp(0, logit)
    kl = 0.5 * (MU ** 2 + SD ** 2 - 1 - math.log(SD ** 2))
    return float(np.trapezoid(q * log_lik, z)) - kl


def test_bounds_match_quadrature_and_order():
    model = ToyVAE()
    for x in (0.0, 1.0):
        images = torch.full((2000, 1, 1, 1), x)
        lp, elbo = exact_log_px(x), exact_elbo(x)
        k1 = vae_bounds(model, images, k=1, seed=1)
        kbig = vae_bounds(model, images[:200], k=2000, seed=1)
        assert abs(k1["elbo"] - elbo) < 0.02          # Monte-Carlo ELBO over 200 x 1 draws
        assert abs(kbig["elbo"] - elbo) < 0.002
        assert abs(kbig["log_px_bound"] - lp) < 0.002  # L_k -> log p(x)
        assert elbo < lp
        assert kbig["elbo"] <= kbig["log_px_bound"] <= lp + 1e-3
        assert math.isclose(kbig["nll_bits_per_dim"], -kbig["log_px_bound"] / math.log(2), rel_tol=1e-9)


def test_bound_rises_with_k_and_is_deterministic():
    model = ToyVAE()
    images = torch.cat([torch.zeros(2000, 1, 1, 1), torch.ones(2000, 1, 1, 1)])
    l1 = vae_bounds(model, images, k=1, seed=0)["log_px_bound"]
    l100 = vae_bounds(model, images, k=100, seed=0)["log_px_bound"]
    assert l1 < l100 - 0.01
    assert vae_bounds(model, images, k=100, seed=0)["log_px_bound"] == l100


def test_binarized_protocol_samples_bernoulli_pixels():
    model = ToyVAE()
    grey = torch.full((4000, 1, 1, 1), 0.25)
    b = vae_bounds(model, grey, k=50, seed=0, binarize=True)
    expected = 0.25 * exact_log_px(1.0) + 0.75 * exact_log_px(0.0)
    assert abs(b["log_px_bound"] - expected) < 0.03

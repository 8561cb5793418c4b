"""The beta-weighted ELBO, the diagonal Gaussian posterior, and pixel likelihoods.

loss = -E_q[log p(x | z)] + beta * KL(q(z | x) || N(0, I)),
summed over pixels and latent dimensions, averaged over the batch (nats per image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

LOGVAR_RANGE = (-30.0, 20.0)  # clamp for numerical safety; far outside what training reaches


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))); ``mean``, ``logvar``: (B, D)."""

    def __init__(self, params: torch.Tensor):
        self.mean, logvar = params.chunk(2, dim=1)
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (differentiable in mean and logvar)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self) -> torch.Tensor:
        """Closed-form KL(q || N(0, I)) per example, summed over dimensions: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) per example: (B,)."""
        return (-0.5 * ((z - self.mean) ** 2 / self.logvar.exp() + self.logvar + math.log(2 * math.pi))).sum(1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (z.pow(2) + math.log(2 * math.pi))).sum(dim=1)


LIKELIHOODS: Registry[type["Likelihood"]] = Registry("likelihood")


class Likelihood(nn.Module):
    """p(x | z) given the decoder output; x in [0, 1], shape (B, C, H, W)."""

    out_factor = 1  # decoder output channels per image channel

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Per example, summed over pixels: (B,)."""
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The image the decoder predicts, in [0, 1]."""
        raise NotImplementedError


@LIKELIHOODS.register("bernoulli")
class Bernoulli(Likelihood):
    """Bernoulli on logits (the standard choice for MNIST-like data; x may be grey in [0, 1])."""

    def __init__(self, sigma: float | None = None, channels: int = 1):
        super().__init__()  # no parameters: sigma and channels are accepted for a uniform signature

    def log_prob(self, x, out):
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)

    def mean(self, out):
        return torch.sigmoid(out)


@LIKELIHOODS.register("gaussian")
class Gaussian(Likelihood):
    """N(x; sigmoid(out), sigma^2) per pixel. ``sigma=None`` learns one log-sigma per channel."""

    def __init__(self, sigma: float | None = None, channels: int = 1):
        super().__init__()
        if sigma is None:
            self.log_sigma = nn.Parameter(torch.full((channels,), math.log(0.1)))
        else:
            self.register_buffer("log_sigma", torch.full((channels,), math.log(sigma)))

    def log_prob(self, x, out):
        log_sigma = self.log_sigma.view(1, -1, 1, 1).expand_as(x)
        mu = torch.sigmoid(out)
        lp = -0.5 * ((x - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return lp.flatten(1).sum(1)

    def mean(self, out):
        return torch.sigmoid(out)


class BetaELBO:
    """The beta-VAE objective (Higgins et al. 2017); beta = 1 is the plain VAE (Kingma & Welling 2014)."""

    def __init__(self, beta: float = 1.0):
        self.beta = beta

    def __call__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        q = DiagonalGaussian(encoder(x))
        z = q.sample(generator)
        recon = -likelihood.log_prob(x, decoder(z)).mean()  # nats per image
        kl = q.kl().mean()
        return {
            "loss": recon + self.beta * kl,
            "loss/recon": recon,
            "loss/kl": kl,
            "elbo": -(recon + kl).detach(),
        }

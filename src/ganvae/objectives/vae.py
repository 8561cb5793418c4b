"""The beta-weighted ELBO, the diagonal Gaussian posterior, and pixel likelihoods.

loss = -E_q[log p(x | z)] + beta * KL(q(z | x) || N(0, I)),
summed over pixels and latent dimensions, averaged over the batch (nats per image).
:class:`BetaTCELBO` (beta-TCVAE) splits the KL into index-code MI, total correlation
and dimension-wise KL and weights each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .. import rng

LOGVAR_RANGE = (-30.0, 20.0)  # clamp for numerical safety; far outside what training reaches


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))); ``mean``, ``logvar``: (B, D)."""

    def __init__(self, params: torch.Tensor):
        self.mean, logvar = params.chunk(2, dim=1)
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (differentiable in mean and logvar)."""
        eps = rng.randn(self.mean.shape, generator, device=self.mean.device, dtype=self.mean.dtype)
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


# ----------------------------------------------------------------------------- beta-TCVAE

def log_density_matrix(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``out[i, j, d] = log q(z_i[d] | x_j)`` for diagonal Gaussians: (B, B, D)."""
    z, mean, logvar = z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0)
    return -0.5 * ((z - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def mss_log_weights(batch_size: int, dataset_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Log importance weights (B, B) of minibatch stratified sampling (Chen et al. 2018, appendix C.2).

    Row i estimates q(z_i) = sum_j w_ij q(z_i | x_j) with M = B - 1 other points:
    w_ii = 1/N for the point z_i came from, (N - M) / (N M) for one other point
    (the next one, cyclically) and 1/M for the remaining B - 2; each row sums to 1.
    ``dataset_size`` below B is raised to B (every batch is then the whole data).
    B = 1 gives the single weight 1/N (an estimate with nothing to compare against).
    """
    b, n = batch_size, max(int(dataset_size), batch_size)
    if b == 1:
        return torch.full((1, 1), -math.log(n), device=device, dtype=dtype)
    m = b - 1
    w = torch.full((b, b), 1.0 / m, device=device, dtype=torch.float64)
    idx = torch.arange(b, device=device)
    w[idx, idx] = 1.0 / n
    w[idx, (idx + 1) % b] = (n - m) / (n * m)
    return w.log().to(dtype)


def tc_decomposition(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                     dataset_size: int) -> dict[str, torch.Tensor]:
    """Per-example log densities for the KL decomposition, each (B,).

    ``log_qz_x`` = log q(z|x), ``log_qz`` = log q(z) and ``log_qz_prod`` = sum_d log q(z_d)
    (both by minibatch stratified sampling), ``log_pz`` = log N(z; 0, I). Then
    MI = E[log_qz_x - log_qz], TC = E[log_qz - log_qz_prod], DWKL = E[log_qz_prod - log_pz],
    and MI + TC + DWKL = E[log_qz_x - log_pz], the one-sample estimate of KL(q(z|x) || p(z)).
    """
    mat = log_density_matrix(z, mean, logvar)                      # (B, B, D)
    logw = mss_log_weights(z.shape[0], dataset_size, z.device, z.dtype)
    return {
        "log_qz_x": mat.diagonal(dim1=0, dim2=1).sum(0),
        "log_qz": torch.logsumexp(logw + mat.sum(2), dim=1),
        "log_qz_prod": torch.logsumexp(logw.unsqueeze(2) + mat, dim=1).sum(1),
        "log_pz": standard_normal_log_prob(z),
    }


class BetaTCELBO:
    """The beta-TCVAE objective (Chen et al. 2018): the ELBO with its KL split into three weighted parts.

    loss = -E_q[log p(x|z)] + alpha * MI(x; z) + beta * TC(z) + gamma * sum_d KL(q(z_d) || p(z_d)),
    the aggregate-posterior terms estimated on the minibatch by minibatch stratified sampling,
    which needs the data set size N (``dataset_size``; None: the batch size, a rough stand-in
    that training never uses because it fills N from the data). alpha = beta = gamma = 1 is the
    ELBO with a one-sample KL. Reports ``loss/recon``, ``loss/kl`` (closed form, as BetaELBO),
    ``loss/mi``, ``loss/tc``, ``loss/dwkl`` and ``elbo`` (with the closed-form KL).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0, dataset_size: int | None = None):
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.dataset_size = dataset_size

    def __call__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        q = DiagonalGaussian(encoder(x))
        z = q.sample(generator)
        recon = -likelihood.log_prob(x, decoder(z)).mean()
        d = tc_decomposition(z, q.mean, q.logvar, self.dataset_size or x.shape[0])
        mi = (d["log_qz_x"] - d["log_qz"]).mean()
        tc = (d["log_qz"] - d["log_qz_prod"]).mean()
        dwkl = (d["log_qz_prod"] - d["log_pz"]).mean()
        kl = q.kl().mean()
        return {
            "loss": recon + self.alpha * mi + self.beta * tc + self.gamma * dwkl,
            "loss/recon": recon,
            "loss/kl": kl,
            "loss/mi": mi,
            "loss/tc": tc,
            "loss/dwkl": dwkl,
            "elbo": -(recon + kl).detach(),
        }


# ----------------------------------------------------------------------------- importance weighting, mixture priors

LOG_2PI = math.log(2 * math.pi)
MIXTURE_CHUNK = 2 ** 22  # elements of (rows, K, D) computed at once by mixture_log_prob


def mixture_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mean_k, diag(exp(logvar_k))) per row: z (N, D), mean and logvar (K, D) -> (N,).

    The equal-weight mixture of diagonal Gaussians, e.g. the VampPrior (Tomczak & Welling 2018), whose
    components are the posteriors of K pseudo-inputs. Computed directly (not by expanding the square,
    which loses float32 precision for narrow components), in row chunks of at most MIXTURE_CHUNK elements.
    """
    k, d = mean.shape
    inv_var, norm = torch.exp(-logvar), (logvar + LOG_2PI).sum(1)            # (K, D), (K,)
    rows = max(1, MIXTURE_CHUNK // (k * d))
    out = []
    for s in range(0, z.shape[0], rows):
        diff = z[s:s + rows].unsqueeze(1) - mean                              # (n, K, D)
        log_comp = -0.5 * ((diff * diff * inv_var).sum(2) + norm)             # (n, K)
        out.append(torch.logsumexp(log_comp, dim=1) - math.log(k))
    return torch.cat(out) if out else z.new_zeros((0,))


class IWAE:
    """The importance-weighted bound (Burda et al. 2016), k samples per image:

        L_k = log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),   loss = -mean_B L_k.

    L_1 is the ELBO with a one-sample KL; L_k rises with k towards log p(x). ``beta`` weights the prior
    ratio inside each weight, log w_i = log p(x | z_i) + beta * (log p(z_i) - log q(z_i | x)): 1 (the
    default) is the bound; with k = 1 it is the beta-VAE loss with a sampled KL. ``log_prior(z)``, a call
    argument, is the model's prior log density ((N, D) -> (N,)); None is N(0, I).

    Each image's loss depends only on that image, and the decoder is called once per importance sample on
    B rows, so per-sample gradient hooks (Opacus, for DP) see one row per image. Terms: ``loss``,
    ``loss/recon`` (-log p(x | z) averaged over the k samples), ``loss/kl`` (closed form under N(0, I),
    else the sampled log q - log p), ``elbo`` (-(recon + kl): the same quantity as :class:`BetaELBO`'s)
    and ``iwae`` (mean L_k).
    """

    def __init__(self, k: int = 5, beta: float = 1.0):
        self.k, self.beta = k, beta

    def __call__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, x: torch.Tensor,
                 generator: torch.Generator | None = None, log_prior=None) -> dict[str, torch.Tensor]:
        q = DiagonalGaussian(encoder(x))
        b, d = q.mean.shape
        # (B, k, D): row i holds image i's k draws; k = 1 draws exactly what DiagonalGaussian.sample draws
        eps = rng.randn((b, self.k, d), generator, device=q.mean.device, dtype=q.mean.dtype)
        return self.terms(q, decoder, likelihood, x, eps, log_prior)

    def log_weights(self, q: DiagonalGaussian, decoder, likelihood: Likelihood, x: torch.Tensor,
                    eps: torch.Tensor, log_prior=None) -> tuple[torch.Tensor, ...]:
        """(log p(x | z), log p(z), log q(z | x)), each (B, k), for z = mean + std * eps, eps (B, k, D)."""
        z = q.mean.unsqueeze(1) + q.std.unsqueeze(1) * eps                      # (B, k, D)
        log_px = torch.stack([likelihood.log_prob(x, decoder(z[:, i])) for i in range(eps.shape[1])], 1)
        prior = standard_normal_log_prob if log_prior is None else log_prior
        log_pz = prior(z.flatten(0, 1)).view(z.shape[:2])
        log_qz = (-0.5 * (eps * eps + q.logvar.unsqueeze(1) + LOG_2PI)).sum(2)  # exact: (z - mean) / std = eps
        return log_px, log_pz, log_qz

    def terms(self, q: DiagonalGaussian, decoder, likelihood: Likelihood, x: torch.Tensor, eps: torch.Tensor,
              log_prior=None) -> dict[str, torch.Tensor]:
        log_px, log_pz, log_qz = self.log_weights(q, decoder, likelihood, x, eps, log_prior)
        bound = torch.logsumexp(log_px + self.beta * (log_pz - log_qz), dim=1) - math.log(eps.shape[1])  # (B,)
        recon = -log_px.mean()
        kl = q.kl().mean() if log_prior is None else (log_qz - log_pz).mean()
        return {
            "loss": -bound.mean(),
            "loss/recon": recon,
            "loss/kl": kl,
            "elbo": -(recon + kl).detach(),
            "iwae": bound.mean().detach(),
        }

"""VAE likelihood bounds on held-out images: the ELBO and the importance-weighted bound.

For each image x, draw k codes z_i ~ q(z | x) and form the log weights
log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x). Then

    ELBO  = mean_i log w_i                      (an unbiased estimate of the ELBO)
    L_k   = logsumexp_i log w_i - log k         (Burda et al. 2016; L_k <= log p(x), rising with k)

Both in nats per image, and in bits per dimension (nats / (C*H*W * ln 2)). The
literature protocol (dynamically binarised MNIST, Bernoulli decoder, k = 5000):
VAE 86.76 and IWAE (k = 50) 84.78 nats (Burda et al. 2016, table 1, one stochastic layer).
"""

from __future__ import annotations

import math
import time

import torch

from ..objectives.vae import DiagonalGaussian, standard_normal_log_prob
from ..util.modes import eval_mode


@torch.no_grad()
def log_weights(parts, x: torch.Tensor, k: int, generator: torch.Generator, chunk: int = 1000,
                on_chunk=None) -> torch.Tensor:
    """x (B, C, H, W) in [0, 1] -> log w (B, k).

    ``parts``: ``(encoder, decoder, likelihood[, log_prior])``, what ``model.bound_parts(labels)`` gives;
    ``log_prior(z)`` ((N, D) -> (N,)) is the model's prior log density, N(0, I) when absent. ``on_chunk(units)``:
    called after each chunk of importance samples with the image-samples it evaluated (B * chunk), for timing.
    """
    encoder, decoder, likelihood = parts[:3]
    log_prior = parts[3] if len(parts) > 3 else standard_normal_log_prob  # the model's prior; N(0, I) default
    q = DiagonalGaussian(encoder(x))
    out = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn((m,) + tuple(q.mean.shape), generator=generator, device=x.device)  # (m, B, D)
        z = q.mean + q.std * eps
        zf = z.reshape(-1, z.shape[-1])                                     # (m*B, D)
        xr = x.unsqueeze(0).expand(m, *x.shape).reshape(-1, *x.shape[1:])  # (m*B, C, H, W)
        log_px = likelihood.log_prob(xr, decoder(zf))                      # (m*B,)
        log_pz = log_prior(zf)
        log_qz = (-0.5 * (eps ** 2 + q.logvar + math.log(2 * math.pi))).sum(-1).reshape(-1)
        out.append((log_px + log_pz - log_qz).view(m, -1).T)                # (B, m)
        if on_chunk is not None:
            if start == 0 and x.device.type == "cuda":  # time finished work, not queued kernels
                torch.cuda.synchronize(x.device)
            on_chunk(m * x.shape[0])
    return torch.cat(out, dim=1)


@torch.no_grad()
def vae_bounds(model, images: torch.Tensor, k: int = 5000, batch_size: int | None = None, seed: int = 0,
               binarize: bool = False, progress=None) -> dict[str, float]:
    """Mean ELBO and L_k over ``images`` (uint8 (N, C, H, W) or float in [0, 1]).

    ``binarize``: evaluate on a fixed Bernoulli(x) sample of the images (seeded), the
    dynamically binarised MNIST protocol. ``progress``: a :class:`~ganvae.metrics.progress.Bar` over the
    images; its first chunk of importance samples (image-samples as units) times the run.
    """
    with eval_mode(model):
        return _bounds(model, images, k, batch_size, seed, binarize, progress)


def _bounds(model, images, k, batch_size, seed, binarize, progress=None) -> dict[str, float]:
    dev = next(model.parameters()).device
    parts = model.bound_parts()
    gen = torch.Generator(device=dev).manual_seed(seed)
    bin_gen = torch.Generator().manual_seed(seed + 7919)
    n = images.shape[0]
    dims = math.prod(images.shape[1:])
    # keep each decoder call around 64k images
    batch_size = batch_size or max(1, min(256, 65536 // max(1, min(k, 1000))))
    t0 = time.perf_counter()
    tot_elbo = tot_lk = 0.0
    for i in range(0, n, batch_size):
        x = images[i:i + batch_size]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if binarize:
            x = torch.bernoulli(x, generator=bin_gen)
        lw = log_weights(parts, x.to(dev), k, gen, on_chunk=None if progress is None else progress.measure)
        if progress is not None:
            progress.update(x.shape[0], units=x.shape[0] * k)
        tot_elbo += lw.mean(dim=1).sum().item()
        tot_lk += (torch.logsumexp(lw, dim=1) - math.log(k)).sum().item()
    elbo, lk = tot_elbo / n, tot_lk / n
    return {
        "elbo": elbo,
        "log_px_bound": lk,
        "nll": -lk,
        "nll_bits_per_dim": -lk / (dims * math.log(2)),
        "k": k,
        "n": n,
        "seconds": time.perf_counter() - t0,
    }

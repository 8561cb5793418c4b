"""The importance-weighted bound and the VampPrior (ganvae.objectives.vae IWAE / mixture_log_prob,
ganvae.models.vae_plus): against quadrature and hand-computed densities, and end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ganvae
from ganvae.errors import GanvaeError
from ganvae.metrics.likelihood import log_weights, vae_bounds
from ganvae.models import MODELS, VAE, Batch
from ganvae.objectives import vae as objectives
from ganvae.objectives.vae import IWAE, LIKELIHOODS, BetaELBO, DiagonalGaussian, mixture_log_prob
from ganvae.training import checkpoint as ckpt
from helpers import assert_same_state, tiny_config, tiny_model, train_tiny

MU, SD = 0.1, 0.9  # q(z | x) of the 1-d toy: near its posteriors, so the bounds sit close to log p(x)


class _Const(nn.Module):
    """The 1-d toy's encoder: q(z | x) = N(MU, SD^2) for every x."""

    def __init__(self):
        super().__init__()
        self.register_buffer("v", torch.tensor([MU, math.log(SD ** 2)]))

    def forward(self, x):
        return self.v.expand(x.shape[0], 2)


def _toy_decoder(z):  # p(x = 1 | z) = sigmoid(2z - 0.5), one pixel
    return (2.0 * z - 0.5).view(-1, 1, 1, 1)


def _toy_log_w(z, x: float):
    """log p(x | z) + log N(z; 0, 1) - log q(z | x) on a numpy grid."""
    logit = 2 * z - 0.5
    log_lik = -np.logaddexp(0, -logit) if x == 1 else -np.logaddexp(0, logit)
    log_q = -0.5 * ((z - MU) / SD) ** 2 - math.log(SD) - 0.5 * math.log(2 * math.pi)
    return log_lik - 0.5 * z ** 2 - 0.5 * math.log(2 * math.pi) - log_q


def _toy_quadrature(x: float) -> tuple[float, float, float]:
    """(ELBO, L_2, log p(x)) of the 1-d toy: 1-d and 2-d trapezoid rules over q."""
    z = np.linspace(MU - 9 * SD, MU + 9 * SD, 1501)
    q = np.exp(-0.5 * ((z - MU) / SD) ** 2) / (SD * math.sqrt(2 * math.pi))
    lw = _toy_log_w(z, x)
    elbo, log_px = np.trapezoid(q * lw, z), math.log(np.trapezoid(q * np.exp(lw), z))
    l2 = np.logaddexp(lw[:, None], lw[None, :]) - math.log(2)        # log (w1 + w2) / 2 on the grid
    inner = np.trapezoid(q[None, :] * l2, z, axis=1)
    return float(elbo), float(np.trapezoid(q * inner, z)), log_px


def test_iwae_bound_matches_quadrature_on_a_1d_toy():
    enc, lik = _Const(), LIKELIHOODS.get("bernoulli")()
    for x in (0.0, 1.0):
        elbo, l2, log_px = _toy_quadrature(x)
        assert elbo < l2 < log_px
        images = torch.full((20_000, 1, 1, 1), x)
        gen = torch.Generator().manual_seed(0)
        t1 = IWAE(k=1)(enc, _toy_decoder, lik, images, gen)
        t2 = IWAE(k=2)(enc, _toy_decoder, lik, images, gen)
        tk = IWAE(k=500)(enc, _toy_decoder, lik, images[:1000], gen)
        # Monte-Carlo means over 20k images: sd about 0.007 (L_1) and 0.004 (L_2); L_2 - L_1 is 0.18
        assert abs(t1["iwae"].item() - elbo) < 0.03
        assert abs(t2["iwae"].item() - l2) < 0.015
        assert abs(tk["iwae"].item() - log_px) < 0.005   # L_k -> log p(x) (sd 0.001); L_2 is 0.15 below
        assert abs(t2["elbo"].item() - elbo) < 0.03      # the ELBO term: closed-form KL, sampled recon
        assert t2["loss"].item() == -t2["iwae"].item()


def test_iwae_with_one_sample_is_the_elbo_with_the_same_noise():
    m = tiny_model("vae")
    x = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    ref = BetaELBO()(m.encoder, m.decoder, m.likelihood, x, torch.Generator().manual_seed(5))
    got = IWAE(k=1)(m.encoder, m.decoder, m.likelihood, x, torch.Generator().manual_seed(5))
    for key in ("loss/recon", "loss/kl", "elbo"):  # the same draws: the same numbers, to the bit
        assert torch.equal(ref[key], got[key]), key
    q = DiagonalGaussian(m.encoder(x))
    z = q.sample(torch.Generator().manual_seed(5))
    one_sample = m.likelihood.log_prob(x, m.decoder(z)) + objectives.standard_normal_log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(got["iwae"], one_sample.mean().detach())
    sampled_kl = (q.log_prob(z) - objectives.standard_normal_log_prob(z)).mean()
    torch.testing.assert_close(got["loss"], ref["loss/recon"] + sampled_kl)


def _mixture_by_hand(z, means, sds):
    """log (1/K) sum_k prod_d N(z_d; m_kd, s_kd^2), each density written out."""
    out = []
    for row in z.tolist():
        total = 0.0
        for m, s in zip(means, sds):
            dens = 1.0
            for zd, md, sd in zip(row, m, s):
                dens *= math.exp(-0.5 * ((zd - md) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            total += dens / len(means)
        out.append(math.log(total))
    return torch.tensor(out, dtype=torch.float64)


def test_mixture_log_prob_is_a_two_component_gaussian_mixture(monkeypatch):
    means, sds = [[0.0, 1.0], [2.0, -1.0]], [[1.0, 0.5], [0.3, 2.0]]
    mean, logvar = torch.tensor(means, dtype=torch.float64), 2 * torch.tensor(sds, dtype=torch.float64).log()
    z = torch.tensor([[0.0, 0.0], [2.0, -1.0], [1.0, 3.0], [-4.0, 0.5], [50.0, 0.0]], dtype=torch.float64)
    want = _mixture_by_hand(z[:4], means, sds)
    torch.testing.assert_close(mixture_log_prob(z, mean, logvar)[:4], want, rtol=0, atol=1e-12)
    assert torch.isfinite(mixture_log_prob(z, mean, logvar)[4])  # far out: logsumexp, no underflow to -inf
    monkeypatch.setattr(objectives, "MIXTURE_CHUNK", 4)  # row chunks of 1: the same numbers
    torch.testing.assert_close(mixture_log_prob(z, mean, logvar)[:4], want, rtol=0, atol=1e-12)
    assert mixture_log_prob(z[:0], mean, logvar).shape == (0,)


def test_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    m = tiny_model("mlp-vamp-vae", components=2, latent_dim=3).double()
    with torch.no_grad():
        comp = DiagonalGaussian(m.encoder(torch.sigmoid(m.pseudo_inputs.logits)))
        z = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        want = _mixture_by_hand(z, comp.mean.tolist(), comp.std.tolist())
        torch.testing.assert_close(m.log_prior(z), want, rtol=0, atol=1e-10)
        # the codes sample() decodes come from that mixture: each is near one of the two component means
        codes = m.latent(4000, torch.Generator().manual_seed(1))
        torch.testing.assert_close(codes.mean(0), comp.mean.mean(0), rtol=0, atol=0.1)


def test_vamp_scoring_uses_its_prior():
    """The unchanged IWAE scoring of a VampPrior model -> log p(x) by quadrature over a 1-d latent."""
    torch.manual_seed(0)
    cfg = tiny_config("mlp-vamp-vae", image_size=4, latent_dim=1, components=2, enc_hidden=(8,), dec_hidden=(8,))
    m = MODELS.get("mlp-vamp-vae").model_class(cfg).eval()
    with torch.no_grad():  # two distinct pseudo-inputs, narrower posteriors: a prior clearly not N(0, 1)
        m.pseudo_inputs.logits[0], m.pseudo_inputs.logits[1] = 4.0, -4.0
        m.encoder.body[-1].weight[0] *= 8
        m.encoder.body[-1].bias[1] = -1.5
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    with torch.no_grad():
        grid = torch.linspace(-12, 12, 24_001).view(-1, 1)
        log_pz = m.log_prior(grid)
        exact = sum(torch.logsumexp(m.likelihood.log_prob(xi.expand(len(grid), -1, -1, -1), m.decoder(grid)) + log_pz,
                                    0).item() + math.log(24 / 24_000) for xi in x) / 3
    got = vae_bounds(m, x, k=5000, seed=0)["log_px_bound"]
    assert abs(got - exact) < 0.01
    lw = log_weights(VAE.bound_parts(m), x, 5000, torch.Generator().manual_seed(0))  # scored under N(0, I)
    assert abs((torch.logsumexp(lw, 1) - math.log(5000)).mean().item() - exact) > 0.05


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # the images need no gradient: harmless
def test_iwae_per_sample_gradients_under_opacus():
    """DP needs each image's gradient alone: Opacus's hooks, with k decoder calls, give exactly those."""
    from opacus import GradSampleModule

    m = tiny_model("mlp-iwae", k=3)
    nets = nn.ModuleList([m.encoder, m.decoder])
    for mod in nets.modules():
        if getattr(mod, "inplace", False):
            mod.inplace = False
    gsm = GradSampleModule(nets)
    x = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    eps = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(1))
    obj = m.config.make_objective()

    def loss(xs, es):
        return obj.terms(DiagonalGaussian(m.encoder(xs)), m.decoder, m.likelihood, xs, es)["loss"]

    loss(x, eps).backward()
    params = list(nets.parameters())
    samples = [p.grad_sample.clone() for p in params]
    gsm.disable_hooks()
    for i in range(4):
        alone = torch.autograd.grad(loss(x[i:i + 1], eps[i:i + 1]), params)
        for gs, g in zip(samples, alone):
            torch.testing.assert_close(gs[i], g, rtol=1e-4, atol=1e-6)


def test_defaults_validation_and_privacy():
    assert MODELS.get("iwae").config_class().k == 5 and MODELS.get("mlp-iwae").config_class().k == 5
    vamp = MODELS.get("vamp-vae").config_class()
    assert (vamp.k, vamp.components, vamp.beta) == (1, 100, 1.0)
    for name, field in (("iwae", "k"), ("vamp-vae", "components"), ("mlp-vamp-vae", "k")):
        with pytest.raises(GanvaeError, match=f"model.{field}"):
            MODELS.get(name).config_class(**{field: 0}).validate()
    iw = MODELS.get("iwae")
    assert iw.model_class.private_config(iw.config_class(), "iwae").k == 5
    vp = MODELS.get("vamp-vae")
    with pytest.raises(GanvaeError, match="'vamp-vae' cannot be trained privately"):
        vp.model_class.private_config(vp.config_class(), "vamp-vae")
    m = tiny_model("vamp-vae")
    assert "pseudo_inputs" in m.inference_modules()
    terms = m.loss(Batch(torch.rand(4, 1, 8, 8)), torch.Generator().manual_seed(0))
    assert {"loss", "loss/recon", "loss/kl", "elbo", "iwae"} <= terms.keys()


@pytest.mark.parametrize("name", ["iwae", "vamp-vae"])
def test_trains_and_scores_through_the_api(tmp_path, name):
    run = train_tiny(tmp_path / name, name, "digits", steps=4, k=2, log_every=2)
    last = [json.loads(ln) for ln in (run.path / "metrics.jsonl").read_text().splitlines()][-1]
    assert all(math.isfinite(last[k]) for k in ("loss/VAE", "loss/recon", "loss/kl", "elbo", "iwae")), last
    assert last["elbo"] <= last["iwae"] + 1e-4 and last["loss/VAE"] == -last["iwae"]
    rec = {r["metric"]: r["value"] for r in ganvae.evaluate(run.path, metrics="nll", n=40, k=16, baselines=False,
                                                              write=False, log=None, progress=False)}
    assert math.isfinite(rec["nll"]) and rec["elbo"] <= -rec["nll"]


def test_vamp_iwae_resume_is_bit_identical(tmp_path):
    loop = dict(seed=3, k=2, components=5, log_every=2, sample_every=4, checkpoint_every=2)
    straight = train_tiny(tmp_path / "a", "mlp-vamp-vae", steps=5, **loop)
    train_tiny(tmp_path / "b", "mlp-vamp-vae", steps=2, **loop)
    resumed = train_tiny(tmp_path / "b", steps=5, resume=True)
    assert straight.step == resumed.step == 5
    sa, sb = (ckpt.load_state(tmp_path / r / "checkpoints" / "latest.pt") for r in "ab")
    assert_same_state(sa, sb)
    assert any(k.startswith("pseudo_inputs.") for k in load_file(tmp_path / "a" / "model" / "model.safetensors"))


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_iwae_trains_privately(tmp_path):
    from ganvae.privacy import PrivacyConfig
    from ganvae.privacy.dp import DPPlugin
    from ganvae.training import TrainConfig, Trainer

    model = tiny_model("iwae", k=3)
    images = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8)
    cfg = TrainConfig(steps=2, batch_size=16, seed=0, device="cpu", tensorboard=False, report=False)
    dp = DPPlugin(PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5))
    tr = Trainer(model, cfg, images, None, tmp_path, torch.device("cpu"), plugins=[dp])
    terms = tr.train_step()
    assert torch.isfinite(terms["loss/VAE"]) and dp.accountant.history == [(1.0, 16 / 200, 1)]

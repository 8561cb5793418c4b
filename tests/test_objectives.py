"""Every loss against a hand-computed value or a closed form."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganvae.objectives import GAN_OBJECTIVES, LIKELIHOODS, BetaELBO, DiagonalGaussian
from ganvae.objectives.gan import value


def _logit_D(x):
    """A stand-in discriminator: the logit is the first value of each image."""
    return x.flatten(1)[:, 0]


def _as_images(logits):
    return torch.tensor(logits, dtype=torch.float64).view(-1, 1, 1, 1)


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_minimax_value_at_half_is_minus_two_log_two():
    zeros = torch.zeros(7, dtype=torch.float64)
    assert math.isclose(value(zeros, zeros).item(), -2 * math.log(2), rel_tol=1e-12)
    out = GAN_OBJECTIVES.get("minimax")().d_loss(_logit_D, _as_images([0.0] * 4), _as_images([0.0] * 4))
    assert math.isclose(out["loss"].item(), 2 * math.log(2), rel_tol=1e-12)  # D minimises -L


def test_d_loss_matches_hand_computation():
    r, f = [1.0, -2.0], [0.5, 3.0]
    expected = -(sum(math.log(sig(v)) for v in r) / 2 + sum(math.log(1 - sig(v)) for v in f) / 2)
    for name in ("minimax", "nonsaturating"):
        out = GAN_OBJECTIVES.get(name)().d_loss(_logit_D, _as_images(r), _as_images(f))
        assert math.isclose(out["loss"].item(), expected, rel_tol=1e-12)
        assert math.isclose(out["loss/D/real"].item(), -sum(math.log(sig(v)) for v in r) / 2, rel_tol=1e-12)
        assert math.isclose(out["D/real_prob"].item(), (sig(1) + sig(-2)) / 2, rel_tol=1e-12)


def test_generator_losses_match_hand_computation():
    f = [0.5, -3.0, 2.0]
    minimax = GAN_OBJECTIVES.get("minimax")().g_loss(_logit_D, _as_images(f))["loss"].item()
    nonsat = GAN_OBJECTIVES.get("nonsaturating")().g_loss(_logit_D, _as_images(f))["loss"].item()
    assert math.isclose(minimax, sum(math.log(1 - sig(v)) for v in f) / 3, rel_tol=1e-12)
    assert math.isclose(nonsat, -sum(math.log(sig(v)) for v in f) / 3, rel_tol=1e-12)


def test_losses_stay_finite_for_extreme_logits():
    big = _as_images([80.0, -80.0])
    for name in GAN_OBJECTIVES:
        obj = GAN_OBJECTIVES.get(name)()
        assert torch.isfinite(obj.d_loss(_logit_D, big, big)["loss"])
        assert torch.isfinite(obj.g_loss(_logit_D, big)["loss"])


def test_kl_closed_form_by_hand():
    q = DiagonalGaussian(torch.tensor([[1.0, 0.0, 0.0, math.log(4.0)]]))  # mean (1, 0), var (1, 4)
    expected = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 4 - 1 - math.log(4))
    assert math.isclose(q.kl().item(), expected, rel_tol=1e-6)


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    params = torch.cat([torch.randn(3, 4, generator=g, dtype=torch.float64),
                        torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.5], dim=1)
    q = DiagonalGaussian(params)
    n = 200_000
    z = q.mean + q.std * torch.randn(n, 3, 4, generator=g, dtype=torch.float64)  # (n, B, D)
    log_q = (-0.5 * ((z - q.mean) ** 2 / q.logvar.exp() + q.logvar + math.log(2 * math.pi))).sum(-1)
    log_p = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(-1)
    mc = (log_q - log_p).mean(0)
    torch.testing.assert_close(mc, q.kl(), rtol=0.02, atol=0.01)


def test_reparameterised_sample_has_the_right_moments_and_gradients():
    params = torch.tensor([[2.0, -1.0, math.log(0.25), math.log(9.0)]], requires_grad=True)
    q = DiagonalGaussian(params.expand(50_000, 4))
    z = q.sample(torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), torch.tensor([2.0, -1.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 3.0]), atol=0.05, rtol=0)
    z.sum().backward()
    assert params.grad is not None and params.grad[0, 0].item() > 0


def test_bernoulli_matches_bce_with_logits():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 4, 4, generator=g)
    out = torch.randn(3, 1, 4, 4, generator=g)
    lp = LIKELIHOODS.get("bernoulli")().log_prob(x, out)
    expected = -F.binary_cross_entropy_with_logits(out, x, reduction="sum") / 1
    torch.testing.assert_close(lp.sum(), expected)
    assert lp.shape == (3,)


def test_gaussian_matches_torch_normal():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g)
    out = torch.randn(2, 3, 4, 4, generator=g)
    lik = LIKELIHOODS.get("gaussian")(sigma=0.2, channels=3)
    expected = torch.distributions.Normal(torch.sigmoid(out), 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(x, out), expected)
    learned = LIKELIHOODS.get("gaussian")(sigma=None, channels=3)
    assert sum(p.numel() for p in learned.parameters()) == 3


def test_beta_elbo_terms():
    x = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)

    def enc(_):  # mean 0.5, var 1 -> KL = 0.125 over one latent dim
        return torch.tensor([[0.5, 0.0]])

    def dec(z):  # logits ignore z: recon = bce(2, 1) + bce(-1, 0)
        return torch.tensor([[[[2.0, -1.0]]]]).expand(z.shape[0], 1, 1, 2)

    lik = LIKELIHOODS.get("bernoulli")()
    recon = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
    terms = BetaELBO(beta=4.0)(enc, dec, lik, x, torch.Generator().manual_seed(0))
    assert math.isclose(terms["loss/recon"].item(), recon, rel_tol=1e-6)
    assert math.isclose(terms["loss/kl"].item(), 0.125, rel_tol=1e-6)
    assert math.isclose(terms["loss"].item(), recon + 4 * 0.125, rel_tol=1e-6)
    assert math.isclose(terms["elbo"].item(), -(recon + 0.125), rel_tol=1e-6)


# ----------------------------------------------------------------------------- beta-TCVAE

def _normal_pdf(v, mu, var):
    return math.exp(-0.5 * (v - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_mss_weights_rows_sum_to_one_and_match_the_paper():
    from ganvae.objectives.vae import mss_log_weights

    n, b = 100, 4
    w = mss_log_weights(b, n, dtype=torch.float64).exp()
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64))
    m = b - 1
    expected = torch.full((b, b), 1 / m, dtype=torch.float64)
    for i in range(b):
        expected[i, i] = 1 / n
        expected[i, (i + 1) % b] = (n - m) / (n * m)
    torch.testing.assert_close(w, expected)
    assert mss_log_weights(1, n).exp().item() == pytest.approx(1 / n)
    # N below the batch size is raised to it
    torch.testing.assert_close(mss_log_weights(4, 2), mss_log_weights(4, 4))


def test_tc_decomposition_by_hand_on_two_points():
    """B = 2: q(z_0) = 1/N q(z_0|x_0) + (N-1)/N q(z_0|x_1), per dimension for the product of marginals."""
    from ganvae.objectives.vae import tc_decomposition

    n = 10
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    var = torch.tensor([[1.0, 0.25], [4.0, 1.0]], dtype=torch.float64)
    z = torch.tensor([[0.5, 0.5], [1.0, -2.0]], dtype=torch.float64)
    d = tc_decomposition(z, mean, var.log(), n)
    for i in range(2):
        j = 1 - i
        p = [[_normal_pdf(z[i, k].item(), mean[r, k].item(), var[r, k].item()) for k in range(2)] for r in range(2)]
        qz_x = p[i][0] * p[i][1]
        qz = qz_x / n + (n - 1) / n * p[j][0] * p[j][1]
        qz_prod = math.prod(p[i][k] / n + (n - 1) / n * p[j][k] for k in range(2))
        pz = _normal_pdf(z[i, 0].item(), 0, 1) * _normal_pdf(z[i, 1].item(), 0, 1)
        assert d["log_qz_x"][i].item() == pytest.approx(math.log(qz_x), rel=1e-12)
        assert d["log_qz"][i].item() == pytest.approx(math.log(qz), rel=1e-12)
        assert d["log_qz_prod"][i].item() == pytest.approx(math.log(qz_prod), rel=1e-12)
        assert d["log_pz"][i].item() == pytest.approx(math.log(pz), rel=1e-12)


def _tc_setup(params, seed=0):
    x = torch.rand(params.shape[0], 1, 2, 2, generator=torch.Generator().manual_seed(seed))

    def enc(_):
        return params

    def dec(z):
        return z[:, :1, None, None].expand(-1, 1, 2, 2)

    return x, enc, dec, LIKELIHOODS.get("bernoulli")()


def test_tc_terms_sum_to_the_sampled_kl_and_weights_apply():
    from ganvae.objectives import BetaTCELBO
    from ganvae.objectives.vae import standard_normal_log_prob

    g = torch.Generator().manual_seed(1)
    params = torch.cat([torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g) * 0.5 - 1], 1)
    x, enc, dec, lik = _tc_setup(params)
    t = BetaTCELBO(1, 1, 1, dataset_size=1000)(enc, dec, lik, x, torch.Generator().manual_seed(0))
    # the same sample z, redrawn with the same generator
    q = DiagonalGaussian(params)
    z = q.sample(torch.Generator().manual_seed(0))
    kl_mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean()
    total = t["loss/mi"] + t["loss/tc"] + t["loss/dwkl"]
    torch.testing.assert_close(total, kl_mc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t["loss"], t["loss/recon"] + kl_mc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t["loss/kl"], q.kl().mean())
    assert t["elbo"].item() == pytest.approx(-(t["loss/recon"] + t["loss/kl"]).item(), rel=1e-6)
    w = BetaTCELBO(2.0, 6.0, 0.5, dataset_size=1000)(enc, dec, lik, x, torch.Generator().manual_seed(0))
    expected = w["loss/recon"] + 2 * w["loss/mi"] + 6 * w["loss/tc"] + 0.5 * w["loss/dwkl"]
    torch.testing.assert_close(w["loss"], expected)
    assert t["loss/mi"].item() > 0  # posteriors far apart: the code tells the examples apart


def test_tc_mi_and_tc_vanish_when_the_encoder_ignores_x():
    """Identical factorised posteriors: q(z) = q(z|x) = prod_d q(z_d) exactly (MSS weights sum to one)."""
    from ganvae.objectives import BetaTCELBO

    params = torch.tensor([[0.3, -0.7, 1.2, math.log(0.5), 0.0, math.log(2.0)]]).expand(8, 6).double()
    x, enc, dec, lik = _tc_setup(params)
    t = BetaTCELBO(dataset_size=50)(enc, dec, lik, x.double(), torch.Generator().manual_seed(0))
    assert abs(t["loss/mi"].item()) < 1e-10 and abs(t["loss/tc"].item()) < 1e-10
    assert t["loss/dwkl"].item() == pytest.approx((t["loss"] - t["loss/recon"]).item(), rel=1e-9)


def test_tcvae_and_beta_vae_defaults():
    from ganvae.models import MODELS

    assert MODELS.get("beta-vae").config_class().beta == 4.0
    assert MODELS.get("vae").config_class().beta == 1.0
    c = MODELS.get("tcvae").config_class()
    assert (c.alpha, c.beta, c.gamma, c.dataset_size) == (1.0, 6.0, 1.0, None)


def test_training_fills_tcvae_dataset_size_from_the_data():
    import ganvae

    cfg = ganvae.train("tcvae", "digits", dry_run=True, progress=False, log=lambda *_: None)
    assert cfg.model.dataset_size is not None and cfg.model.dataset_size > 100
    cfg = ganvae.train("tcvae", "digits", dry_run=True, progress=False, log=lambda *_: None,
                       set=["model.dataset_size=5000"])
    assert cfg.model.dataset_size == 5000  # an explicit N is kept

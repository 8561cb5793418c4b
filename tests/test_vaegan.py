"""VAE-GAN: its feature-matching term against a hand computation, and which phase trains what."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers import tiny_model
from ganvae.models import Batch


def test_feature_matching_is_half_mean_squared_feature_error():
    m = tiny_model("vae-gan", image_size=8)
    m.eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert m._llike(x, x).item() == 0.0
    fx, fy = m.D.features(x * 2 - 1), m.D.features(y * 2 - 1)
    expected = 0.5 * ((fy - fx) ** 2).flatten(1).mean(1).mean()
    torch.testing.assert_close(m._llike(x, y), expected)
    m.config.fm_weight = 3.0
    torch.testing.assert_close(m._llike(x, y), 3 * expected)


def test_phase_losses_are_the_papers():
    """D: the GAN value on reals vs both fakes; E: beta*KL + llike (no GAN term); G: gamma*llike + adv."""
    m = tiny_model("vae-gan", image_size=8, beta=2.0, gamma=0.5)
    m.eval()  # no BatchNorm batch statistics: the forward passes below are comparable
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    b = Batch(x)
    e = m.e_phase(b, torch.Generator().manual_seed(3))
    torch.testing.assert_close(e["loss"], 2.0 * e["loss/kl"] + e["loss/llike"])
    g = m.g_phase(b, torch.Generator().manual_seed(3))
    torch.testing.assert_close(g["loss"], 0.5 * g["loss/G/llike"] + g["loss/G/adv"])
    # the same noise gives the same reconstruction in both phases, so the same feature-matching term
    torch.testing.assert_close(g["loss/G/llike"], e["loss/llike"])
    # G's adversarial term by hand, from the same draws
    gen = torch.Generator().manual_seed(3)
    q = m.encode(x)
    x_rec = torch.sigmoid(m.decoder(q.sample(gen)))
    x_p = torch.sigmoid(m.decoder(m.latent(6, gen)))
    adv = F.softplus(-m.D(x_rec * 2 - 1)).mean() + F.softplus(-m.D(x_p * 2 - 1)).mean()
    torch.testing.assert_close(g["loss/G/adv"], adv)
    d = m.d_phase(b, torch.Generator().manual_seed(3))
    torch.testing.assert_close(d["loss"], d["loss/D/real"] + d["loss/D/recon"] + d["loss/D/prior"])


def test_phases_train_disjoint_networks():
    m = tiny_model("vae-gan")
    owners = {ph.name: {id(p) for p in ph.parameters()} for ph in m.phases()}
    assert owners["E"] == {id(p) for p in m.encoder.parameters()}
    assert owners["G"] == {id(p) for p in m.decoder.parameters()}
    assert owners["D"] == {id(p) for p in m.D.parameters()}

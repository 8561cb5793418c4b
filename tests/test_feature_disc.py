"""A GAN discriminator on frozen ImageNet features (``model.d_features=effnet``): what it computes, what trains,
what is saved, and its config errors. Its DP mechanics (the real half clipped per sample) are in test_privacy.py."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_model
from ganvae.errors import GanvaeError
from ganvae.models import MODELS
from ganvae.nets.pretrained import FeatureDiscriminator, perceptual_net_size, perceptual_sizes


@pytest.fixture(scope="module")
def disc():
    torch.manual_seed(0)
    return FeatureDiscriminator(28, hidden=16, grid=2)


def test_features_are_the_unit_normalised_frozen_layers_through_the_trained_layer(disc):
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    layers = disc.frozen(x.device)((x + 1) / 2)
    assert [a.shape[1] for a in layers] == perceptual_sizes(32, 2)
    by_hand = torch.cat([a / a.norm(dim=1, keepdim=True) for a in layers], dim=1)
    expected = torch.nn.functional.leaky_relu(by_hand @ disc.body.weight.T + disc.body.bias, 0.2)
    torch.testing.assert_close(disc.features(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(disc(x), (expected @ disc.head.weight.T + disc.head.bias).flatten(),
                               rtol=1e-5, atol=1e-6)
    assert disc(x).shape == (3,) and disc.feature_dim == 16


def test_only_the_two_linear_layers_are_state_and_train_and_the_images_get_gradients(disc):
    assert set(disc.state_dict()) == {"body.weight", "body.bias", "head.weight", "head.bias"}
    assert sum(p.numel() for p in disc.parameters()) == (sum(perceptual_sizes(32, 2)) + 1) * 16 + 17
    x = (torch.rand(2, 1, 28, 28) * 2 - 1).requires_grad_()
    disc(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G is trained through it
    assert all(p.grad is None for p in disc.frozen(x.device).parameters())  # the public net stays frozen
    assert disc.body.weight.grad is not None


def test_d_step_path_without_graph_matches_and_bf16_is_close(disc):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with_graph = disc.features(x.clone().requires_grad_())  # G's path: a graph through the frozen net
    torch.testing.assert_close(disc.features(x), with_graph.detach(), rtol=0, atol=0)
    fast = FeatureDiscriminator(28, hidden=16, grid=2, bf16=True)
    fast.load_state_dict(disc.state_dict())
    low = fast.features(x)
    assert low.dtype == torch.float32 and not torch.equal(low, with_graph.detach())  # bf16 ran
    torch.testing.assert_close(low, with_graph.detach(), rtol=0.05, atol=0.02)
    g = fast.features(x.clone().requires_grad_())  # G's path stays float32 with bf16 asked
    torch.testing.assert_close(g, with_graph, rtol=0, atol=0)


def test_net_size_rounds_up_to_a_multiple_of_32():
    assert [perceptual_net_size(s) for s in (8, 28, 32, 33, 64, 1000)] == [32, 32, 32, 64, 64, 512]


def test_conditional_gan_with_feature_d_uses_the_label_and_saves_no_public_weights():
    m = tiny_model("cdcgan", d_features="effnet", d_feature_grid=1)
    assert isinstance(m.D.net, FeatureDiscriminator) and m.D.embed.weight.shape == (3, 4 * 8)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        m.D.embed.weight.normal_()
    a, b = m.discriminate(x, torch.zeros(4, dtype=torch.long)), m.discriminate(x, torch.full((4,), 2))
    assert not torch.allclose(a, b)  # the projection term: another class, another logit
    assert not any("_frozen" in k or "_blocks" in k for k in m.state_dict())


@pytest.mark.parametrize("over,message", [
    ({"d_features": "vgg"}, "model.d_features: expected one of pixels, effnet"),
    ({"d_features": "effnet", "d_mbstd": 4}, "model.d_mbstd"),
    ({"d_features": "effnet", "d_feature_grid": 0}, "model.d_feature_grid"),
    ({"d_features": "effnet", "d_feature_precision": "fp16"}, "model.d_feature_precision: expected fp32 or bf16"),
])
def test_bad_feature_d_settings_are_one_clear_error(over, message):
    cls = MODELS.get("cdcgan").config_class
    with pytest.raises(GanvaeError, match=message):
        cls(image_size=28, channels=1, num_classes=10, **over).validate()

"""The minibatch standard deviation in D (``model.d_mbstd``): by hand, its grouping, and where it is refused."""

from __future__ import annotations

import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.models import MODELS
from ganvae.nets.dcgan import DCGANDiscriminator, minibatch_std
from helpers import tiny_config


def test_minibatch_std_by_hand():
    h = torch.tensor([0.0, 2.0, 4.0, 8.0]).reshape(4, 1, 1, 1)
    out = minibatch_std(h, 2)  # groups {0, 2} and {1, 3}: population std 2 and 3
    assert out.shape == (4, 2, 1, 1) and torch.equal(out[:, :1], h)
    torch.testing.assert_close(out[:, 1].flatten(), torch.tensor([2.0, 3.0, 2.0, 3.0]), rtol=0, atol=1e-6)
    # the mean over features and positions (two channels, a 1 x 2 map), a zero std counted as sqrt(1e-8)
    h2 = torch.stack([torch.tensor([[[0.0, 0.0]], [[1.0, 3.0]]]), torch.tensor([[[2.0, 0.0]], [[1.0, 7.0]]])])
    torch.testing.assert_close(minibatch_std(h2, 4)[:, 2], torch.full((2, 1, 2), (1 + 1e-4 + 1e-4 + 2) / 4),
                               rtol=0, atol=1e-6)


def test_group_is_the_largest_divisor_of_the_batch():
    h = torch.arange(6.0).reshape(6, 1, 1, 1)
    # group 4 on a batch of 6: groups of 3 ({0, 2, 4}, {1, 3, 5}): population std sqrt(8/3) for both
    torch.testing.assert_close(minibatch_std(h, 4)[:, 1].flatten(), torch.full((6,), (8 / 3) ** 0.5), rtol=0,
                               atol=1e-6)
    one = minibatch_std(torch.ones(1, 3, 2, 2), 4)
    torch.testing.assert_close(one[:, 3], torch.full((1, 2, 2), 1e-4), rtol=1e-3, atol=0)


def test_discriminator_sees_a_collapsed_batch():
    D = DCGANDiscriminator(1, 16, width=8, norm="none", mbstd_group=4)
    varied = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    same = varied[:1].expand(8, -1, -1, -1)
    assert D.head.in_channels == 17  # 16 features + the std
    assert (D.features(same)[:, -1] < 1e-3).all() and (D.features(varied)[:, -1] > 1e-3).all()
    assert D(varied).shape == (8,)


def test_privacy_turns_it_off_and_wgan_gp_refuses_it():
    cfg = tiny_config("sc-dcgan")
    assert cfg.d_mbstd == 4 and tiny_config("dcgan").d_mbstd == 0
    cls = MODELS.get("dcgan").model_class
    assert cls.private_config(tiny_config("dcgan", d_mbstd=4)).d_mbstd == 0
    with pytest.raises(GanvaeError, match="model.d_mbstd > 0"):
        tiny_config("dcgan", d_mbstd=4, objective="wgan-gp", d_norm="layer").validate()
    with pytest.raises(GanvaeError, match="model.d_mbstd: expected >= 0"):
        tiny_config("dcgan", d_mbstd=-1).validate()

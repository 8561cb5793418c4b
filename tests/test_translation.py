"""Translation building blocks against hand-computed values: the loss terms (L1, cycle, identity), the
PatchGAN's output shape and receptive field, the U-Net at odd sizes, and the history buffer."""

from __future__ import annotations

import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.models import MODELS, Batch, build
from ganvae.models.cyclegan import CycleGANConfig
from ganvae.models.pix2pix import Pix2PixConfig
from ganvae.models.translation import ImagePool, cycle_terms, identity_terms, l1
from ganvae.nets.patchgan import PatchGANDiscriminator, patch_layers, patch_output_size, receptive_field
from ganvae.nets.unet import UNetGenerator, unet_depth


def const(v, c=1, s=2, n=1):
    return torch.full((n, c, s, s), float(v))


# ---------------------------------------------------------------- loss terms

def test_l1_is_the_mean_absolute_difference():
    a = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    b = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    assert l1(a, b).item() == pytest.approx((1 + 0 + 2 + 0.5) / 4)


def test_cycle_terms_by_hand():
    # |a_rec - a| = 0.5 everywhere, |b_rec - b| = 0.25 everywhere; weight 10 -> 5 + 2.5
    t = cycle_terms(const(0), const(0.5), const(1, c=3), const(0.75, c=3), 10.0)
    assert t["loss/G/cycle_a"].item() == pytest.approx(5.0)
    assert t["loss/G/cycle_b"].item() == pytest.approx(2.5)
    assert t["loss"].item() == pytest.approx(7.5)


def test_identity_terms_by_hand():
    t = identity_terms(const(0.2), const(-0.2), const(1), const(1), 5.0)
    assert t["loss/G/identity_a"].item() == pytest.approx(2.0)
    assert t["loss/G/identity_b"].item() == 0.0
    assert CycleGANConfig(channels=1).identity_weight == 5.0       # the paper: 0.5 * 10
    assert CycleGANConfig(channels=1, channels_b=3).identity_weight == 0.0  # needs equal channels


def tiny_pix2pix(**kw):
    torch.manual_seed(0)
    return build("pix2pix", Pix2PixConfig(image_size=8, channels=1, g_width=4, d_width=4, g_dropout=0, **kw))


def test_pix2pix_g_loss_is_adv_plus_weighted_l1():
    m = tiny_pix2pix(l1_weight=7.0)
    x, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    t = m.g_phase(Batch(x, b=b), torch.Generator())
    fake = m.G(x * 2 - 1)
    assert t["loss/G/l1"].item() == pytest.approx(7.0 * (fake - (b * 2 - 1)).abs().mean().item(), rel=1e-5)
    logits = m.D(torch.cat([x * 2 - 1, fake], 1))
    adv = torch.nn.functional.softplus(-logits).mean()  # the paper's (nonsaturating) G term on D(a, G(a))
    assert t["loss/G/adv"].item() == pytest.approx(adv.item(), rel=1e-5)
    assert t["loss"].item() == pytest.approx(adv.item() + t["loss/G/l1"].item(), rel=1e-5)


def test_pix2pix_d_sees_the_input_beside_the_output():
    m = tiny_pix2pix()
    assert m.D.net[0].in_channels == 2  # A (1) + B (1)
    m3 = build("pix2pix", Pix2PixConfig(image_size=8, channels=1, channels_b=3, g_width=4, d_width=4))
    assert m3.D.net[0].in_channels == 4 and m3.translate(torch.rand(2, 1, 8, 8)).shape == (2, 3, 8, 8)


# ---------------------------------------------------------------- networks

@pytest.mark.parametrize("size,n_down,out", [(8, 1, 2), (28, 1, 12), (32, 1, 14), (64, 2, 14), (128, 3, 14),
                                             (256, 3, 30)])
def test_patchgan_output_shape(size, n_down, out):
    assert patch_layers(size) == n_down
    assert patch_output_size(size, n_down) == out  # floor(S / 2^n) - 2; 256 px: the paper's 30x30
    if size <= 64:
        D = PatchGANDiscriminator(4, size, width=4, norm="instance")
        assert D(torch.zeros(2, 4, size, size)).shape == (2, 1, out, out)


def test_patchgan_receptive_field_is_70_at_three_layers():
    assert [receptive_field(n) for n in (1, 2, 3)] == [16, 34, 70]


@pytest.mark.parametrize("size", [8, 28, 30, 32])
def test_unet_keeps_size_and_maps_channels(size):
    G = UNetGenerator(3, 1, size, width=4, norm="instance")
    assert G.depth == unet_depth(size)
    y = G(torch.rand(2, 3, size, size) * 2 - 1)
    assert y.shape == (2, 1, size, size) and y.abs().max() <= 1


def test_unet_skips_carry_the_input():
    """Zero the innermost weights: the output still depends on the input (through the skips)."""
    G = UNetGenerator(1, 1, 8, width=4, norm="none")
    with torch.no_grad():
        for p in G.up[0].parameters():
            p.zero_()
    x = torch.rand(1, 1, 8, 8)
    assert not torch.equal(G(x), G(x.flip(-1)))


# ---------------------------------------------------------------- history buffer

def test_pool_fills_then_swaps_half_the_time_seeded():
    pool = ImagePool(3, 1, 2)
    gen = torch.Generator().manual_seed(0)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    out = pool.query(first, gen)
    # the first 3 images fill the buffer and come back unchanged; the 4th meets a full buffer
    assert torch.equal(out[:3], first[:3]) and int(pool.count) == 3
    assert torch.equal(pool.images, first[:3])
    g = torch.Generator().manual_seed(0)
    u, slot = torch.rand(4, generator=g), torch.randint(0, 3, (4,), generator=g)
    if u[3] > 0.5:  # swapped: a stored image comes out, the new one takes its slot
        assert torch.equal(out[3], first[int(slot[3])]) and torch.equal(pool.images[int(slot[3])], first[3])
    else:
        assert torch.equal(out[3], first[3])
    # many more queries: about half are swaps, every output is a new image or one stored before
    new = torch.arange(10.0, 210.0).view(200, 1, 1, 1).expand(200, 1, 2, 2).clone()
    seen = set(first[:, 0, 0, 0].tolist())
    out = pool.query(new, gen)
    swapped = (out != new).flatten(1).any(1).float().mean().item()
    assert 0.35 < swapped < 0.65
    seen |= set(new[:, 0, 0, 0].tolist())
    assert set(out[:, 0, 0, 0].tolist()) <= seen
    assert int(pool.count) == 3


def test_pool_same_seed_same_result_and_state_in_state_dict():
    def run():
        pool, gen = ImagePool(4, 1, 2), torch.Generator().manual_seed(5)
        outs = [pool.query(torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(i)), gen) for i in range(4)]
        return pool, torch.cat(outs)
    (p1, o1), (p2, o2) = run(), run()
    assert torch.equal(o1, o2) and torch.equal(p1.images, p2.images)
    assert set(p1.state_dict()) == {"images", "count"}
    m = build("cyclegan", CycleGANConfig(image_size=8, channels=1, g_width=4, d_width=4, pool_size=5))
    assert {"pool_a.images", "pool_a.count", "pool_b.images", "pool_b.count"} <= set(m.state_dict())


def test_pool_size_zero_passes_through():
    x = torch.rand(3, 1, 2, 2)
    assert ImagePool(0, 1, 2).query(x, torch.Generator()) is x


# ---------------------------------------------------------------- configs and errors

@pytest.mark.parametrize("name,over,match", [
    ("pix2pix", {"l1_weight": -1}, "model.l1_weight"),
    ("pix2pix", {"norm": "layer"}, "model.norm"),
    ("pix2pix", {"objective": "wgan-gp"}, "wgan-gp"),
    ("cyclegan", {"pool_size": -1}, "model.pool_size"),
    ("cyclegan", {"channels_b": 2}, "model.channels_b"),
    ("cyclegan", {"image_size": 4}, "at least 8 px"),
])
def test_bad_options_are_one_line_errors(name, over, match):
    cfg = MODELS.get(name).config_class(**{"image_size": 8, "channels": 1, **over})
    with pytest.raises(GanvaeError, match=match) as e:
        cfg.validate()
    assert "\n" not in str(e.value)


def test_defaults_are_the_papers():
    p, c = Pix2PixConfig(), CycleGANConfig()
    assert (p.l1_weight, p.objective, p.lr_g, p.betas_g) == (100.0, "nonsaturating", 2e-4, (0.5, 0.999))
    assert (c.cycle_weight, c.identity_ratio, c.pool_size, c.objective) == (10.0, 0.5, 50, "least-squares")


def test_translate_refuses_wrong_channels_direction_and_sample():
    m = tiny_pix2pix()
    with pytest.raises(GanvaeError, match="1 channel"):
        m.translate(torch.rand(1, 3, 8, 8))
    with pytest.raises(GanvaeError, match="direction 'b2a'"):
        m.translate(torch.rand(1, 1, 8, 8), direction="b2a")
    with pytest.raises(GanvaeError, match="translate"):
        m.sample(2, seed=0)
    with pytest.raises(GanvaeError, match="paired data"):
        m.d_phase(Batch(torch.rand(2, 1, 8, 8)), torch.Generator())

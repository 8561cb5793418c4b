"""Ghost clipping (``privacy.clipping``): the clipped per-sample gradient sum without per-sample gradients, against
a per-sample loop of autograd calls, and the DP plugin's step with it against the same step with Opacus's hooks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ganvae.errors import GanvaeError
from ganvae.privacy import PrivacyConfig
from ganvae.privacy.dp import summary_text
from ganvae.privacy.ghost import GhostClipper, unsupported
from test_privacy import _trainer


class Net(nn.Module):
    """A Linear on (n, in), a Linear on (n, T, in) (a sequence axis), an Embedding with a padding row, a projection:
    each per-sample output depends on its own sample only; the loss is a mean of per-sample terms."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 5)
        self.seq = nn.Linear(3, 5, bias=True)
        self.embed = nn.Embedding(4, 5, padding_idx=3)
        self.head = nn.Linear(5, 1, bias=False)

    def forward(self, x, s, y):
        h = torch.tanh(self.body(x)) + self.seq(s).relu().mean(1)
        return self.head(h).flatten() + (self.embed(y) * h).sum(1)


def _loss(net, x, s, y):
    return torch.nn.functional.softplus(-net(x, s, y)).mean()


def _by_hand(net, x, s, y, C):
    """sum_i clip_C(grad of sample i's loss), one autograd call per sample."""
    params = list(net.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        g = torch.autograd.grad(_loss(net, x[i:i + 1], s[i:i + 1], y[i:i + 1]), params, allow_unused=True)
        g = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, g)]
        c = min(1.0, C / (torch.cat([gi.flatten() for gi in g]).norm().item() + 1e-6))
        total = [t + c * gi for t, gi in zip(total, g)]
    return total


@pytest.mark.parametrize("C", [1e-2, 1e6])  # every sample clipped; none clipped
def test_ghost_sum_equals_the_per_sample_loop(C):
    torch.manual_seed(0)
    net = Net()
    x, s, y = torch.randn(7, 6), torch.randn(7, 4, 3), torch.tensor([0, 1, 2, 3, 1, 3, 0])  # two padding rows
    ghost = GhostClipper(net, C)
    ghost.enable_hooks()
    _loss(net, x, s, y).backward()
    ghost.disable_hooks()
    got = ghost.clipped_sum(list(net.parameters()))
    for (name, _), g, e in zip(net.named_parameters(), got, _by_hand(net, x, s, y, C)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4, msg=name)
    assert ghost.records == {}  # consumed
    assert got[2].abs().sum() > 0 and got[4][3].abs().sum() == 0  # the padding row gets nothing


def test_nothing_is_recorded_with_hooks_off_and_an_empty_batch_sums_to_zero():
    net = Net()
    ghost = GhostClipper(net, 1.0)
    _loss(net, torch.randn(3, 6), torch.randn(3, 2, 3), torch.tensor([0, 1, 2])).backward()
    assert ghost.records == {}
    ghost.enable_hooks()
    _loss(net, torch.randn(0, 6), torch.randn(0, 2, 3), torch.zeros(0, dtype=torch.long)).backward()
    assert all(torch.equal(g, torch.zeros_like(p)) for g, p in zip(ghost.clipped_sum(list(net.parameters())),
                                                                    net.parameters()))


def test_a_layer_run_twice_in_one_pass_is_refused():
    lin = nn.Linear(3, 3)
    ghost = GhostClipper(lin, 1.0)
    ghost.enable_hooks()
    lin(torch.randn(2, 3))
    with pytest.raises(GanvaeError, match="ran twice"):
        lin(torch.randn(2, 3))


def test_which_nets_ghost_clipping_covers():
    assert unsupported(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Embedding(2, 3))) is None
    assert "Conv2d" in unsupported(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)))
    assert "GroupNorm" in unsupported(nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4)))
    assert "spectral" in unsupported(nn.utils.parametrizations.spectral_norm(nn.Linear(3, 4)))
    with pytest.raises(GanvaeError, match="privacy.clipping=ghost.*Conv2d"):
        GhostClipper(nn.Conv2d(1, 2, 3), 1.0)


# ----------------------------------------------------------------------------- in the DP plugin

@pytest.mark.parametrize("name,kw", [("mlp-gan", {}), ("cdcgan", {"d_features": "effnet"}),
                                     ("cdcgan", {"d_features": "effnet", "clip_fakes": True}), ("mlp-vae", {})])
def test_a_ghost_step_is_the_per_sample_step(tmp_path, name, kw):
    """Same seed, noise on (sigma 1, C small enough to clip): two private steps with ghost clipping leave the
    private nets where Opacus's per-sample hooks leave them, with the same accounting."""
    runs = {}
    for mode in ("ghost", "per-sample"):
        tr, dp = _trainer(tmp_path / mode, name, sigma=1.0, clip=0.05, clipping=mode, **kw)
        assert (dp.ghost is not None) == (mode == "ghost")
        for _ in range(2):
            tr.train_step()
        runs[mode] = (tr.model.state_dict(), list(dp.accountant.history), dp.summary()["clipping"])
    (ghost, h_ghost, said), (plain, h_plain, said_plain) = runs["ghost"], runs["per-sample"]
    assert h_ghost == h_plain == [(1.0, 16 / 200, 2)]
    assert said.startswith("ghost") and said_plain.startswith("per-sample")
    for k in plain:
        torch.testing.assert_close(ghost[k], plain[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("name,kw,ghost", [("mlp-gan", {}, True), ("cdcgan", {"d_features": "effnet"}, True),
                                           ("dcgan", {}, False), ("cdcgan", {}, False)])
def test_auto_uses_ghost_clipping_where_it_applies(tmp_path, name, kw, ghost):
    tr, dp = _trainer(tmp_path, name, sigma=1.0, clip=1.0, clipping="auto", **kw)
    assert (dp.ghost is not None) == ghost
    tr.train_step()
    assert dp.accountant.history == [(1.0, 16 / 200, 1)]
    assert summary_text(dp.summary())[1].endswith("ghost clipping" if ghost else "per-sample clipping")


def test_ghost_clipping_asked_for_a_conv_net_is_one_clear_error(tmp_path):
    with pytest.raises(GanvaeError, match="privacy.clipping=ghost: the private nets have a Conv2d"):
        _trainer(tmp_path, "dcgan", clipping="ghost")


def test_clipping_option_is_checked():
    with pytest.raises(GanvaeError, match="privacy.clipping 'fast': expected one of auto, ghost, per-sample"):
        dataclasses.replace(PrivacyConfig(epsilon=1.0), clipping="fast").validate()

"""The contract tests (tests/contract/test_models.py) adapted to the translation models: two-domain batches,
translate() in place of sample(). Save/load, determinism under a seed, one step lowers each phase loss,
well-formed phases, and the history buffer's part in the checkpoint."""

from __future__ import annotations

import pytest
import torch

from helpers import assert_one_step_lowers_each_phase_loss, tiny_model
from ganvae.export import load_model, save_model
from ganvae.models import MODELS, Batch

NAMES = [n for n in MODELS.names() if MODELS.get(n).model_class.translation]


def test_both_translation_models_are_registered():
    assert set(NAMES) == {"pix2pix", "cyclegan"}


def pair_batch(ca=1, cb=1, size=8, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, ca, size, size, generator=g) > 0.5).float() * 0.9 + 0.05
    b = torch.rand(n, cb, size, size, generator=g)
    return Batch(a, b=b)


def model(name, **kw):
    return tiny_model(name, **({"g_dropout": 0.0} if name == "pix2pix" else {}), **kw)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size,ca,cb", [(8, 1, 1), (16, 3, 1), (28, 1, 3)])
def test_translate_shapes_and_range(name, size, ca, cb):
    m = model(name, image_size=size, channels=ca, channels_b=cb)
    y = m.translate(torch.rand(3, ca, size, size))
    assert y.shape == (3, cb, size, size) and 0 <= y.min() and y.max() <= 1
    if "b2a" in m.directions:
        assert m.translate(torch.rand(2, cb, size, size), "b2a").shape == (2, ca, size, size)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_outputs(name):
    a, b = model(name, seed=3), model(name, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(a.translate(x), b.translate(x))
    ta = a.phases()[0].loss(pair_batch(), torch.Generator().manual_seed(1))
    tb = b.phases()[0].loss(pair_batch(), torch.Generator().manual_seed(1))
    assert torch.equal(ta["loss"], tb["loss"])


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    m = model(name, image_size=16, channels=3, channels_b=1)
    m.train()
    for ph in m.phases():  # move BatchNorm statistics and the history buffers away from their defaults
        ph.loss(pair_batch(3, 1, 16), torch.Generator().manual_seed(0))
    save_model(m, tmp_path / "model")
    save_model(m, tmp_path / "full" / "model", inference_only=False)
    x = torch.rand(3, 3, 16, 16)
    for folder, parts in ((tmp_path, m.inference_modules()), (tmp_path / "full", None)):
        loaded = load_model(folder)
        assert loaded.registered_name == name and loaded.config == m.config
        sd_a, sd_b = m.state_dict(), loaded.state_dict()
        saved = [k for k in sd_a if parts is None or k.split(".")[0] in parts]
        for k in saved:
            assert torch.equal(sd_a[k], sd_b[k]), k
        assert torch.equal(m.translate(x), loaded.translate(x))
        assert not any(p.suffix == ".pt" for p in (folder / "model").iterdir())
    full = load_model(tmp_path / "full").state_dict()
    for k in (k for k in full if "pool" in k):  # the history buffer travels with the full state
        assert torch.equal(full[k], m.state_dict()[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_one_step_lowers_each_phase_loss(name):
    m = model(name, **({"pool_size": 0} if name == "cyclegan" else {}))  # the buffer would change D's fakes
    m.train()
    batch = pair_batch()
    assert_one_step_lowers_each_phase_loss(m, batch)


@pytest.mark.parametrize("name", NAMES)
def test_phases_are_well_formed(name):
    m = model(name)
    phases = m.phases()
    assert phases and len({p.name for p in phases}) == len(phases)
    owned = {id(p) for ph in phases for p in ph.parameters()}
    assert owned == {id(p) for p in m.parameters()}, "every parameter is trained by some phase"
    assert phases[0].real_data and phases[1].reuse_batch  # both phases see the same pair batch


def test_cyclegan_terms_and_buffer_in_d_phase():
    m = model("cyclegan", pool_size=4)
    g = m.phases()[1].loss(pair_batch(), torch.Generator().manual_seed(0))
    assert {"loss/G/adv_ab", "loss/G/adv_ba", "loss/G/cycle_a", "loss/G/cycle_b", "loss/G/identity_a"} <= set(g)
    parts = sum(g[k] for k in ("loss/G/adv_ab", "loss/G/adv_ba", "loss/G/cycle_a", "loss/G/cycle_b",
                               "loss/G/identity_a", "loss/G/identity_b"))
    torch.testing.assert_close(g["loss"], parts)
    m.phases()[0].loss(pair_batch(n=3), torch.Generator().manual_seed(0))
    assert int(m.pool_a.count) == 3 and int(m.pool_b.count) == 3

"""Contract tests, written once, run over every registered model with tiny configs on CPU."""

from __future__ import annotations

import pytest
import torch

from helpers import assert_one_step_lowers_each_phase_loss, tiny_config, tiny_model
from ganvae.errors import GanvaeError
from ganvae.export import load_model, save_model
from ganvae.models import MODELS, Batch, build

# translation models (pix2pix, cyclegan) draw nothing from noise and need two-domain batches: their own contract
# tests, adapted, are in tests/test_translation_contract.py
NAMES = [n for n in MODELS.names() if not MODELS.get(n).model_class.translation]


def fixed_batch(channels=1, size=8, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    return Batch((x > 0.5).float() * 0.9 + 0.05, torch.arange(n) % 3)  # labels: conditional models use them


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (28, 1)])
def test_sample_shapes_and_range(name, size, channels):
    m = tiny_model(name, image_size=size, channels=channels)
    x = m.sample(5, seed=0)
    assert x.shape == (5, channels, size, size)
    assert x.dtype == torch.float32
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_samples(name):
    a, b = tiny_model(name, seed=3), tiny_model(name, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    torch.testing.assert_close(a.sample(6, seed=11), b.sample(6, seed=11), rtol=0, atol=0)
    assert not torch.equal(a.sample(6, seed=11), a.sample(6, seed=12))
    # sampling leaves the global RNG alone
    state = torch.get_rng_state()
    a.sample(3, seed=1)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    m = tiny_model(name, image_size=16, channels=3)
    m.train()
    for ph in m.phases():  # move BatchNorm statistics away from their defaults
        if ph.real_data:
            ph.loss(fixed_batch(3, 16), torch.Generator().manual_seed(0))
    save_model(m, tmp_path / "model", extra={"step": 7})  # the inference export: the model's inference_modules()
    save_model(m, tmp_path / "full" / "model", inference_only=False)  # everything, D included
    for folder, parts in ((tmp_path, m.inference_modules()), (tmp_path / "full", None)):
        loaded = load_model(folder)  # a "run folder" holding model/
        assert loaded.registered_name == name and loaded.config == m.config
        sd_a, sd_b = m.state_dict(), loaded.state_dict()
        assert sd_a.keys() == sd_b.keys()
        saved = [k for k in sd_a if parts is None or k.split(".")[0] in parts]
        assert set(loaded.meta["parts"]) == {k.split(".")[0] for k in saved}
        for k in saved:
            assert torch.equal(sd_a[k], sd_b[k]), k
        torch.testing.assert_close(m.sample(4, seed=5), loaded.sample(4, seed=5), rtol=0, atol=0)
        assert loaded.has_discriminator == (m.has_discriminator and parts is None)  # no D in the inference export
        assert not any(p.suffix == ".pt" for p in (folder / "model").iterdir())  # no pickle in the export
    assert load_model(tmp_path).meta["step"] == 7


@pytest.mark.parametrize("name", NAMES)
def test_one_step_lowers_each_phase_loss(name):
    m = tiny_model(name)
    m.train()
    batch = fixed_batch()
    assert_one_step_lowers_each_phase_loss(m, batch)


@pytest.mark.parametrize("name", NAMES)
def test_phases_are_well_formed(name):
    m = tiny_model(name)
    phases = m.phases()
    assert phases and len({p.name for p in phases}) == len(phases)
    owned = {id(p) for ph in phases for p in ph.parameters()}
    assert owned == {id(p) for p in m.parameters()}, "every parameter is trained by some phase"
    gen = m.generator_net()
    assert any(p is q for q in gen.parameters() for p in m.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_config_is_complete_and_rebuilds(name):
    cfg = tiny_config(name)
    assert MODELS.get(name).config_class is type(cfg)
    m = build(name, cfg)
    assert m.config is cfg and m.registered_name == name


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS.get(n).model_class.conditional])
def test_conditional_sampling_follows_the_label(name):
    m = tiny_model(name)
    a, b = m.sample(4, seed=1, labels=0), m.sample(4, seed=1, labels=2)
    torch.testing.assert_close(a, m.sample(4, seed=1, labels=[0, 0, 0, 0]), rtol=0, atol=0)
    assert not torch.equal(a, b)  # same noise, another class: other images
    with pytest.raises(GanvaeError, match="class 3"):
        m.sample(2, seed=0, labels=3)


@pytest.mark.parametrize("name", [n for n in NAMES if not MODELS.get(n).model_class.conditional])
def test_unconditional_models_refuse_labels(name):
    with pytest.raises(GanvaeError, match="not conditional"):
        tiny_model(name).sample(2, seed=0, labels=1)

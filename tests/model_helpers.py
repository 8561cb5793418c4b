"""Helpers the tests import (``from model_helpers import tiny_config, tiny_model``).

Kept out of conftest.py: ``tests/data/conftest.py`` also exists, and ``from conftest import``
would bind whichever conftest was imported first.
"""

from __future__ import annotations

import dataclasses

import torch

from ganvae.models import MODELS, build


def tiny_config(name: str, image_size: int = 8, channels: int = 1, **over):
    """The registered config of ``name`` shrunk generically: widths 8, hidden layers (32,), latent 8, 3 classes."""
    cls = MODELS.get(name).config_class
    kw = {"image_size": image_size, "channels": channels, "latent_dim": 8, "num_classes": 3}
    for f in dataclasses.fields(cls):
        if f.name.endswith("width"):
            kw[f.name] = 8
        elif f.name.endswith("hidden"):
            kw[f.name] = (32,)
    kw.update(over)
    return cls(**kw)


def tiny_model(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build(name, tiny_config(name, **kw))


def assert_same_state(a, b, path="state"):
    """Nested checkpoint states equal to the bit (tensors with their dtype); wall-clock seconds excepted."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif not path.endswith("train_seconds"):
        assert a == b, path

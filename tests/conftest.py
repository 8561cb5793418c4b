"""Shared fixtures: tiny configs that any registered model accepts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ganvae.models import MODELS, build


def tiny_config(name: str, image_size: int = 8, channels: int = 1, **over):
    """The registered config of ``name`` shrunk generically: widths 8, hidden layers (32,), latent 8."""
    cls = MODELS.get(name).config_class
    kw = {"image_size": image_size, "channels": channels, "latent_dim": 8}
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


@pytest.fixture
def digits_tiny_set():
    """Overrides that make any model tiny, as --set strings."""
    def make(name: str) -> list[str]:
        cls = MODELS.get(name).config_class
        out = ["model.latent_dim=8"]
        for f in dataclasses.fields(cls):
            if f.name.endswith("width"):
                out.append(f"model.{f.name}=8")
            elif f.name.endswith("hidden"):
                out.append(f"model.{f.name}=[32]")
        return out
    return make

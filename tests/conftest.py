"""Shared fixtures: tiny configs that any registered model accepts."""

from __future__ import annotations

import dataclasses

import pytest
from ganvae.models import MODELS
from model_helpers import tiny_config, tiny_model  # noqa: F401  (re-exported for old imports)


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

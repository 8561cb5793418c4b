"""The model registry: a name -> (model class, config class).

Adding a model is one config dataclass and one ``MODELS.add`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, standing_stats
from .gan import GAN, DCGANConfig, GANConfig, MLPGANConfig
from .vae import VAE, ConvVAEConfig, MLPVAEConfig, VAEConfig


@dataclass(frozen=True)
class ModelSpec:
    model_class: type[GenerativeModel]
    config_class: type
    summary: str


MODELS: Registry[ModelSpec] = Registry("model")
MODELS.add("dcgan", ModelSpec(GAN, DCGANConfig, "DCGAN-style convolutional GAN (the default)"))
MODELS.add("mlp-gan", ModelSpec(GAN, MLPGANConfig, "the founding document's dense GAN"))
MODELS.add("vae", ModelSpec(VAE, ConvVAEConfig, "convolutional VAE, beta-weighted ELBO"))
MODELS.add("mlp-vae", ModelSpec(VAE, MLPVAEConfig, "MLP VAE, beta-weighted ELBO"))


def build(name: str, config) -> GenerativeModel:
    """Instantiate registered model ``name`` from its (complete) config."""
    spec = MODELS.get(name)
    model = spec.model_class(config)
    model.registered_name = name
    return model


__all__ = ["MODELS", "ModelSpec", "build", "Batch", "Phase", "GenerativeModel", "ModelConfigBase",
           "standing_stats", "GAN", "VAE", "GANConfig", "DCGANConfig", "MLPGANConfig",
           "VAEConfig", "ConvVAEConfig", "MLPVAEConfig"]

"""The model registry: a name -> (model class, config class).

Adding a model is one config dataclass and one ``MODELS.add`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import Registry
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, check_base, standing_stats
from .gan import GAN, DCGANConfig, GANConfig, MLPGANConfig
from .conditional import CondDCGANConfig, ConditionalGAN, ConditionalVAE, CVAEConfig
from .vaegan import VAEGAN, VAEGANConfig
from .resgan import CondResGANConfig, ConditionalResGAN, ResGAN, ResGANConfig
from .vae import VAE, BetaVAEConfig, ConvVAEConfig, MLPVAEConfig, TCVAEConfig, VAEConfig
from .vae_plus import IWAEConfig, MLPIWAEConfig, MLPVampVAEConfig, VampVAE, VampVAEConfig
from .pix2pix import Pix2Pix, Pix2PixConfig
from .cyclegan import CycleGAN, CycleGANConfig
from .dpmerf import DPMERF, DPMEPFConfig, DPMERFConfig
from .selfcond import SCDCGANConfig, SelfConditionedGAN


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
MODELS.add("cdcgan", ModelSpec(ConditionalGAN, CondDCGANConfig,
                              "class-conditional DCGAN: label embedding in G, projection D"))
MODELS.add("cvae", ModelSpec(ConditionalVAE, CVAEConfig, "class-conditional convolutional VAE"))
MODELS.add("vae-gan", ModelSpec(VAEGAN, VAEGANConfig,
                               "VAE with a discriminator's feature-matching reconstruction (Larsen et al. 2016)"))
MODELS.add("beta-vae", ModelSpec(VAE, BetaVAEConfig, "convolutional VAE with beta=4 (Higgins et al. 2017)"))
MODELS.add("tcvae", ModelSpec(VAE, TCVAEConfig, "convolutional beta-TCVAE, TC weight 6 (Chen et al. 2018)"))
# VAEs for likelihood (models/vae_plus.py): the importance-weighted bound, the VampPrior
MODELS.add("iwae", ModelSpec(VAE, IWAEConfig, "convolutional VAE trained on the importance-weighted bound, "
                                              "k=5 (Burda et al. 2016)"))
MODELS.add("mlp-iwae", ModelSpec(VAE, MLPIWAEConfig, "MLP VAE trained on the importance-weighted bound, k=5"))
MODELS.add("vamp-vae", ModelSpec(VampVAE, VampVAEConfig, "convolutional VAE with a VampPrior of 100 learned "
                                                         "pseudo-inputs (Tomczak & Welling 2018)"))
MODELS.add("mlp-vamp-vae", ModelSpec(VampVAE, MLPVampVAEConfig, "MLP VAE with a VampPrior of 100 pseudo-inputs"))

# R3GAN (models/resgan.py): residual nets without normalisation, the relativistic pairing loss with R1 + R2
MODELS.add("resgan", ModelSpec(ResGAN, ResGANConfig, "residual GAN without normalisation, RpGAN loss + R1 + R2 "
                                                     "(R3GAN, Huang et al. 2024)"))
MODELS.add("cresgan", ModelSpec(ConditionalResGAN, CondResGANConfig,
                                "class-conditional resgan: label embedding in G, projection D"))
# self-conditioned GAN (models/selfcond.py): an unconditional DCGAN conditioned on k-means clusters of its data
MODELS.add("sc-dcgan", ModelSpec(SelfConditionedGAN, SCDCGANConfig, "unconditional DCGAN conditioned on k-means "
                                 "clusters of its training data (self-conditioned GAN, Liu et al. 2020)"))
# DP-MERF (models/dpmerf.py): a conditional generator matching one released random-feature mean embedding
MODELS.add("dp-merf", ModelSpec(DPMERF, DPMERFConfig, "class-conditional generator trained on one (private) "
                                                      "random-feature mean embedding (Harder et al. 2021)"))
MODELS.add("dp-mepf", ModelSpec(DPMERF, DPMEPFConfig, "dp-merf on the feature maps of a frozen ImageNet "
                                                      "EfficientNet-Lite0 (perceptual features: Harder et al. 2023)"))
# image-to-image translation (models/pix2pix.py, models/cyclegan.py): U-Net G, PatchGAN D, two-domain batches
MODELS.add("pix2pix", ModelSpec(Pix2Pix, Pix2PixConfig, "paired translation A -> B: U-Net G, conditional PatchGAN "
                                                        "D, GAN + 100 * L1 (Isola et al. 2017)"))
MODELS.add("cyclegan", ModelSpec(CycleGAN, CycleGANConfig, "unpaired translation A <-> B: two U-Nets, two "
                                                           "PatchGANs, LSGAN + cycle + identity (Zhu et al. 2017)"))


def footprint(name: str, config) -> tuple[int, bool]:
    """(bytes of parameters and buffers, whether it has BatchNorm) of model ``name``, built on the meta
    device: nothing is allocated, so absurd sizes can be refused before they are tried."""
    with torch.device("meta"):
        model = build(name, config)
    size = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return size, any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def build(name: str, config) -> GenerativeModel:
    """Instantiate registered model ``name`` from its (complete) config."""
    spec = MODELS.get(name)
    check_base(config)
    model = spec.model_class(config)
    model.registered_name = name
    return model


__all__ = ["MODELS", "ModelSpec", "build", "footprint", "Batch", "Phase", "GenerativeModel", "ModelConfigBase",
           "standing_stats", "GAN", "VAE", "ConditionalGAN", "ConditionalVAE", "VAEGAN", "VAEGANConfig", "CondDCGANConfig", "CVAEConfig", "GANConfig", "DCGANConfig", "MLPGANConfig",
           "VAEConfig", "ConvVAEConfig", "MLPVAEConfig", "BetaVAEConfig", "TCVAEConfig",
           "SCDCGANConfig", "SelfConditionedGAN"]

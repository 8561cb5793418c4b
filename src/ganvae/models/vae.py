"""VAEs: an encoder q(z | x), a decoder p(x | z), the beta-weighted ELBO (or beta-TCVAE); one phase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import GanvaeError
from ..nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from ..nets.dcgan import check_upsample
from ..objectives import LIKELIHOODS, BetaELBO, BetaTCELBO, DiagonalGaussian
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, check_betas


@dataclass
class VAEConfig(ModelConfigBase):
    latent_dim: int = 32              # size of z; prior N(0, I)
    likelihood: str = "bernoulli"     # p(x | z): bernoulli (on logits) or gaussian
    sigma: float | None = None        # gaussian only: fixed pixel std in [0,1] units; null learns it per channel
    beta: float = 1.0                 # weight of the KL term (1 = plain VAE; > 1 = beta-VAE)
    lr: float = 1e-3                  # Adam learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    per_sample_loss: ClassVar[bool] = True  # the loss is a mean of per-sample terms (needed by DP)

    def validate(self) -> None:
        LIKELIHOODS.get(self.likelihood)
        if self.beta < 0:
            raise GanvaeError(f"model.beta: expected >= 0, got {self.beta}")
        if self.sigma is not None and self.sigma <= 0:
            raise GanvaeError(f"model.sigma: expected > 0 or null, got {self.sigma}")
        if self.lr <= 0:
            raise GanvaeError(f"model.lr: expected > 0, got {self.lr}")
        check_betas(self.betas, "model.betas")
        if self.latent_dim < 1:
            raise GanvaeError(f"model.latent_dim: expected >= 1, got {self.latent_dim}")

    def make_objective(self):
        return BetaELBO(self.beta)


@dataclass
class ConvVAEConfig(VAEConfig):
    width: int = 32       # encoder channels at the highest resolution (doubled per halving); decoder mirrors
    max_width: int = 256  # cap on channels
    upsample: str = "transposed"  # how the decoder doubles its resolution: transposed, nearest or bilinear
                                  # (resize, then a 3x3 conv: no checkerboard)

    def validate(self) -> None:
        super().validate()
        check_upsample(self.upsample, "model.upsample")

    def decoder(self, latent_dim: int, out: int) -> nn.Module:
        return ConvDecoder(latent_dim, out, self.image_size, self.width, self.max_width, self.upsample)

    def build(self) -> tuple[nn.Module, nn.Module]:
        out = self.channels * LIKELIHOODS.get(self.likelihood).out_factor
        return (ConvEncoder(self.channels, self.image_size, self.latent_dim, self.width, self.max_width),
                self.decoder(self.latent_dim, out))


@dataclass
class MLPVAEConfig(VAEConfig):
    enc_hidden: tuple[int, ...] = (512, 256)  # encoder hidden layer sizes
    dec_hidden: tuple[int, ...] = (256, 512)  # decoder hidden layer sizes

    def build(self) -> tuple[nn.Module, nn.Module]:
        out = self.channels * LIKELIHOODS.get(self.likelihood).out_factor
        return (MLPEncoder(self.channels, self.image_size, self.latent_dim, self.enc_hidden),
                MLPDecoder(self.latent_dim, out, self.image_size, self.dec_hidden))


@dataclass
class BetaVAEConfig(ConvVAEConfig):
    """The convolutional VAE with beta = 4 (Higgins et al. 2017)."""

    beta: float = 4.0                 # weight of the KL term


@dataclass
class TCVAEConfig(ConvVAEConfig):
    """beta-TCVAE (Chen et al. 2018): the KL split into index-code MI, total correlation, dimension-wise KL."""

    alpha: float = 1.0                # weight of the index-code mutual information I(x; z)
    beta: float = 6.0                 # weight of the total correlation TC(z)
    gamma: float = 1.0                # weight of the dimension-wise KL sum_d KL(q(z_d) || p(z_d))
    dataset_size: int | None = None   # N for minibatch stratified sampling; training fills it from the data
    per_sample_loss: ClassVar[bool] = False  # the estimator couples the samples of a batch

    def validate(self) -> None:
        super().validate()
        for k in ("alpha", "gamma"):
            if getattr(self, k) < 0:
                raise GanvaeError(f"model.{k}: expected >= 0, got {getattr(self, k)}")
        if self.dataset_size is not None and self.dataset_size < 1:
            raise GanvaeError(f"model.dataset_size: expected >= 1 or null, got {self.dataset_size}")

    def make_objective(self):
        return BetaTCELBO(self.alpha, self.beta, self.gamma, self.dataset_size)


class VAE(GenerativeModel):
    family = "vae"
    generator_name = "decoder"
    ema_default = False
    has_encoder = True
    has_likelihood = True

    @classmethod
    def private_config(cls, config: VAEConfig, name: str = "") -> VAEConfig:
        """The whole VAE sees real data and is privatised: its loss must be a mean of per-sample terms."""
        if not config.per_sample_loss:
            raise GanvaeError(f"privacy: model {name or cls.__name__!r} cannot be trained privately: its objective "
                              "couples the samples of a batch (beta-TCVAE's minibatch-stratified estimator: no "
                              "per-sample gradients); use beta-vae")
        if config.likelihood == "gaussian" and config.sigma is None:
            raise GanvaeError("privacy: model.likelihood=gaussian with a learned sigma cannot be trained privately "
                              "(the sigma parameter has no per-sample gradient); set model.sigma (e.g. 0.1) or use "
                              "bernoulli")
        return config

    def bound_parts(self, labels=None):
        return self.encoder, self.decoder, self.likelihood

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.encoder, self.decoder = config.build()
        self.likelihood = LIKELIHOODS.get(config.likelihood)(sigma=config.sigma, channels=config.channels)
        self.objective = config.make_objective()

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, C, H, W) in [0, 1] -> q(z | x)."""
        return DiagonalGaussian(self.encoder(x))

    def decode_latent(self, z, net=None):
        return self.likelihood.mean((net if net is not None else self.decoder)(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: (B, C, H, W) in [0, 1]."""
        return self.decode_latent(self.encode(x).mean)

    def loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return self.objective(self.encoder, self.decoder, self.likelihood, batch.x, gen)

    def phases(self) -> list[Phase]:
        c = self.config
        return [Phase("VAE", [self.encoder, self.decoder, self.likelihood], c.lr, c.betas, self.loss)]

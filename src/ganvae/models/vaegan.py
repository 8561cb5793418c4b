"""VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction error is measured in a discriminator's features.

Networks: encoder E (q(z | x)), decoder/generator G (images from codes), discriminator D.
With x~ = G(z), z ~ q(z | x), and x_p = G(z_p), z_p ~ N(0, I), the paper's losses are

    L_prior  = KL(q(z | x) || p(z))
    L_llike  = -E_q log p(D_l(x) | z) = 1/2 ||D_l(x~) - D_l(x)||^2     (a unit Gaussian on D's features)
    L_GAN    = log D(x) + log(1 - D(x~)) + log(1 - D(x_p))

trained in three phases per step on the same real minibatch (counted once in images seen), each with its
own optimizer, as in the paper:

    D: maximise L_GAN (reals against both reconstructions and prior samples)
    E: minimise beta * L_prior + L_llike                   (the encoder never sees the GAN term)
    G: minimise gamma * L_llike - L_GAN                    (non-saturating: softplus(-l) on both fakes)

``D_l`` is D's last feature map before its logit (``DCGANDiscriminator.features``), averaged
over its elements (so its scale does not grow with the layer's size) and multiplied by
``fm_weight``; ``pixel_weight`` > 0 adds a Bernoulli pixel term for faster early progress
(0, the paper's setting, by default).

``augment`` (off by default) puts DiffAugment or ADA (``augment=ada``, ``ada_*`` as for the GANs) before D
wherever it discriminates (the GAN terms of the D and G phases); the feature-matching term compares D's
features of the image and its reconstruction unaugmented (a reconstruction error, not a discrimination).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import behind, build_augment, check_augment
from ..errors import GanvaeError
from ..nets import ConvDecoder, ConvEncoder, DCGANDiscriminator
from ..nets.dcgan import check_upsample
from ..objectives.vae import Bernoulli, DiagonalGaussian
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, check_betas


@dataclass
class VAEGANConfig(ModelConfigBase):
    latent_dim: int = 32              # size of z; prior N(0, I)
    width: int = 32                   # encoder/decoder channels at the highest resolution (doubled per halving)
    d_width: int = 32                 # D channels at the highest resolution
    max_width: int = 256              # cap on channels
    upsample: str = "transposed"      # how the decoder doubles its resolution: transposed, nearest or bilinear
    d_norm: str = "batch"             # normalisation in D: batch, group, layer, none
    beta: float = 1.0                 # weight of the KL term in E's loss
    gamma: float = 1.0                # G's weight on the feature-matching term against the GAN term (Larsen's gamma)
    fm_weight: float = 1.0            # scale of the feature-matching term (mean squared feature error per element)
    pixel_weight: float = 0.0         # optional Bernoulli pixel reconstruction term (nats per image) in E and G
    lr: float = 2e-4                  # Adam learning rate of E and G
    lr_d: float = 2e-4                # Adam learning rate of D
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (all three)
    augment: str = ""                 # before D's GAN terms: DiffAugment (translation, cutout, color) or ada
    ada_pipe: str = "bgc"             # ada: transformation groups, letters b (blit), g (geom), c (color)
    ada_p: float = 0.0                # ada: starting augmentation probability p (fixed if ada_kimg=0)
    ada_target: float = 0.6           # ada: target of r_t = E[sign(D(real))]
    ada_kimg: float = 100.0           # ada: thousands of real images for p to go 0 -> 1; 0: p fixed
    ada_interval: int = 4             # ada: training steps between updates of p

    def validate(self) -> None:
        for k in ("beta", "gamma", "fm_weight", "pixel_weight"):
            if getattr(self, k) < 0:
                raise GanvaeError(f"model.{k}: expected >= 0, got {getattr(self, k)}")
        for k in ("lr", "lr_d"):
            if getattr(self, k) <= 0:
                raise GanvaeError(f"model.{k}: expected > 0, got {getattr(self, k)}")
        if self.latent_dim < 1:
            raise GanvaeError(f"model.latent_dim: expected >= 1, got {self.latent_dim}")
        check_betas(self.betas, "model.betas")
        check_upsample(self.upsample, "model.upsample")
        check_augment(self)

    def build(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (ConvEncoder(self.channels, self.image_size, self.latent_dim, self.width, self.max_width),
                ConvDecoder(self.latent_dim, self.channels, self.image_size, self.width, self.max_width,
                            self.upsample),
                DCGANDiscriminator(self.channels, self.image_size, self.d_width, self.max_width, self.d_norm))


class VAEGAN(GenerativeModel):
    family = "vae"
    generator_name = "decoder"
    ema_default = False
    has_encoder = True
    has_discriminator = True
    has_likelihood = False  # its reconstruction is measured in D's features, not by a pixel likelihood

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x * 2 - 1).flatten()

    def bound_parts(self, labels=None):
        """The decoder's Bernoulli logits as a stand-in pixel likelihood (for attacks, not for a log p(x))."""
        return self.encoder, self.decoder, Bernoulli()

    def __init__(self, config: VAEGANConfig):
        super().__init__(config)
        self.encoder, self.decoder, self.D = config.build()
        self.augment = build_augment(config)  # ADA: a submodule whose buffers (p, r_t) are in the state dict

    # -- generation and coding
    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, C, H, W) in [0, 1] -> q(z | x)."""
        return DiagonalGaussian(self.encoder(x))

    def decode_latent(self, z, net=None):
        return torch.sigmoid((net if net is not None else self.decoder)(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.encode(x).mean)

    # -- the three phases
    def _forward(self, batch: Batch, gen: torch.Generator):
        q = self.encode(batch.x)
        z = q.sample(gen)
        logits = self.decoder(z)                              # Bernoulli logits of x~
        x_rec = torch.sigmoid(logits)
        x_p = torch.sigmoid(self.decoder(self.latent(batch.n, gen)))
        return q, logits, x_rec, x_p

    def _llike(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        f_real = self.D.features(x * 2 - 1).detach()
        f_rec = self.D.features(x_rec * 2 - 1)
        return 0.5 * self.config.fm_weight * (f_rec - f_real).pow(2).flatten(1).mean(1).mean()

    def _pixel(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.config.pixel_weight == 0:
            return logits.new_zeros(())
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
        return self.config.pixel_weight * nll

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, _, x_rec, x_p = self._forward(batch, gen)
        x_real = batch.x * 2 - 1
        D = behind(self.augment, self.D, gen, x_real)  # ADA: records D's logits on the reals for its r_t
        l_real, l_rec, l_p = D(x_real), D(x_rec * 2 - 1), D(x_p * 2 - 1)
        real, rec, prior = F.softplus(-l_real).mean(), F.softplus(l_rec).mean(), F.softplus(l_p).mean()
        return {"loss": real + rec + prior, "loss/D/real": real, "loss/D/recon": rec, "loss/D/prior": prior,
                "D/real_prob": torch.sigmoid(l_real).mean().detach()}

    def e_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        q, logits, x_rec, _ = self._forward(batch, gen)
        kl, llike, pixel = q.kl().mean(), self._llike(batch.x, x_rec), self._pixel(batch.x, logits)
        return {"loss": self.config.beta * kl + llike + pixel, "loss/kl": kl, "loss/llike": llike,
                "loss/pixel": pixel}

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        _, logits, x_rec, x_p = self._forward(batch, gen)
        llike, pixel = self._llike(batch.x, x_rec), self._pixel(batch.x, logits)
        D = behind(self.augment, self.D, gen)
        adv = F.softplus(-D(x_rec * 2 - 1)).mean() + F.softplus(-D(x_p * 2 - 1)).mean()
        return {"loss": self.config.gamma * llike + pixel + adv, "loss/G/adv": adv, "loss/G/llike": llike}

    def phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("D", [self.D], c.lr_d, c.betas, self.d_phase),
            Phase("E", [self.encoder], c.lr, c.betas, self.e_phase, reuse_batch=True),  # one minibatch per step,
            Phase("G", [self.decoder], c.lr, c.betas, self.g_phase, reuse_batch=True),  # as in Larsen et al.
        ]

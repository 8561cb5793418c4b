"""Class-conditional GAN and VAE: ``cdcgan`` (label embedding in G, projection D) and ``cvae``.

A conditional model's latent code carries its class: :meth:`latent` returns
``(n, latent_dim + 1)`` with the label (as a float) in the last column, so every generic
path (``sample()``, the loop's grids, EMA and standing statistics) works unchanged;
``model.sample(n, labels=7)`` or ``labels=[...]`` fixes the classes, otherwise they are drawn
uniformly from the sampling generator. Training draws fake labels uniformly (each class
equally often in expectation) and uses the real batch's labels for real images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanvaeError
from ..nets import ConvEncoder
from ..nets.conditional import (ConditionalDecoder, ConditionalEncoder, ConditionalGenerator,
                                ProjectionDiscriminator)
from ..objectives import LIKELIHOODS
from ..objectives.vae import DiagonalGaussian
from .base import Batch
from .gan import GAN, DCGANConfig
from .vae import VAE, ConvVAEConfig
from .. import rng


def _need_classes(cfg, name: str) -> int:
    if not cfg.num_classes or cfg.num_classes < 2:
        raise GanvaeError(f"{name} is class-conditional: the data needs integer class labels with at least 2 "
                          f"classes (got num_classes={cfg.num_classes}); use a labelled source such as mnist, "
                          "digits or a folder: with one subfolder per class")
    return cfg.num_classes


def check_embed_dim(cfg) -> None:
    """A conditional GAN config's label embedding size (G's ``embed_dim``)."""
    if cfg.embed_dim < 1:
        raise GanvaeError(f"model.embed_dim: expected >= 1, got {cfg.embed_dim}")


class _Conditional:
    """Latent codes that carry the label in their last column."""

    conditional = True

    def latent(self, n, generator=None, labels=None):
        dev = self.device
        z = rng.randn((n, self.config.latent_dim), generator, device=dev)
        if labels is None:
            labels = rng.randint(0, self.config.num_classes, (n,), generator, device=dev)
        else:
            labels = torch.as_tensor(labels, dtype=torch.long, device=dev)
            bad = (labels < 0) | (labels >= self.config.num_classes)
            if bad.any():
                raise GanvaeError(f"class {int(labels[bad][0])}: expected 0..{self.config.num_classes - 1}")
        return torch.cat([z, labels.to(z.dtype)[:, None]], dim=1)

    def truncate(self, code: torch.Tensor, psi: float) -> torch.Tensor:
        """The noise toward the prior's mean (the same for every class: 0); the class column kept."""
        return torch.cat([code[:, :-1] * psi, code[:, -1:]], dim=1)

    @staticmethod
    def split(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return code[:, :-1], code[:, -1].round().long()

    def _labels(self, batch: Batch) -> torch.Tensor:
        if batch.y is None:
            raise GanvaeError(f"{self.registered_name or 'a conditional model'} needs labelled data")
        y = batch.y
        if y.dim() != 1:
            raise GanvaeError("conditional models need one integer class per image (the data has a factor matrix)")
        return y.long()


# ---------------------------------------------------------------------------------------------- GAN
@dataclass
class CondDCGANConfig(DCGANConfig):
    embed_dim: int = 32        # size of the label embedding concatenated to z in G
    aux_weight: float = 0.0    # AC-GAN: weight of an auxiliary class head's cross-entropy in D (real images) and
                               # G (its fakes' classes); a label signal that survives DP's noise (0: off)

    def validate(self) -> None:
        super().validate()
        check_embed_dim(self)
        if self.aux_weight < 0:
            raise GanvaeError(f"model.aux_weight: expected >= 0 (0: off), got {self.aux_weight}")

    def build(self) -> tuple[nn.Module, nn.Module]:
        c = _need_classes(self, "cdcgan")
        G = self.build_g(self.latent_dim + self.embed_dim)
        D, width = self.build_d()
        return (ConditionalGenerator(G, c, self.embed_dim),
                ProjectionDiscriminator(D, c, width, spectral_norm=self.d_spectral_norm,
                                        aux_classifier=self.aux_weight > 0))


class ConditionalGAN(_Conditional, GAN):
    """Class-conditional DCGAN: G(z, y) with a label embedding, D(x, y) with a projection (Miyato & Koyama 2018)."""

    def decode_latent(self, z, net=None):
        return ((net if net is not None else self.G)(z) + 1) / 2  # the packed code carries the label

    @property
    def aux_weight(self) -> float:
        return getattr(self.config, "aux_weight", 0.0)

    def _aux(self, terms: dict, who: str, logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``terms`` with the auxiliary head's cross-entropy (``loss/D/aux`` or ``loss/G/aux``) added."""
        ce = F.cross_entropy(logits.float(), y)
        terms["loss"] = terms["loss"] + self.aux_weight * ce
        terms[f"loss/{who}/aux"] = ce
        return terms

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        real, y = batch.x * 2 - 1, self._labels(batch)
        with torch.no_grad():
            fake = self.G(self.latent(real.shape[0], gen, labels=y))  # fakes of the real batch's classes
        terms = self.d_terms(functools.partial(self.D, y=y), real, fake, gen)
        if self.aux_weight > 0:  # the class head learns from real images only
            terms = self._aux(terms, "D", self.critic(self.D.classify, gen)(real), y)
        return terms

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        code = self.latent(batch.n, gen)
        _, y = self.split(code)
        fake = self.G(code)
        terms = self.g_terms(functools.partial(self.D, y=y), fake, gen)
        if self.aux_weight > 0:  # G: fakes the class head takes for their labels
            terms = self._aux(terms, "G", self.critic(self.D.classify, gen)(fake), y)
        return terms

    def d_real_terms(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        y = self._labels(batch)
        if self.aux_weight <= 0:
            return self.objective.d_real(self.critic(functools.partial(self.D, y=y), gen), batch.x * 2 - 1)
        kept = []  # one pass through D for both heads: the per-sample gradients (DP) see each image once

        def both(x):
            logit, classes = self.D.both(x, y)
            kept.append(classes)
            return logit

        terms = self.objective.d_real(self.critic(both, gen), batch.x * 2 - 1)
        return self._aux(terms, "D", kept[0], y)

    def d_fake_terms(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` fakes with labels drawn uniformly (not the real batch's: independent of the real data)."""
        with torch.no_grad():
            code = self.latent(n, gen)
            fake = self.G(code)
        return self.objective.d_fake(self.critic(functools.partial(self.D, y=self.split(code)[1]), gen), fake)

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise GanvaeError("a conditional discriminator needs the images' class labels")
        return self.D(x * 2 - 1, labels.to(x.device)).flatten()


# ---------------------------------------------------------------------------------------------- VAE
@dataclass
class CVAEConfig(ConvVAEConfig):
    def build(self) -> tuple[nn.Module, nn.Module]:
        c = _need_classes(self, "cvae")
        out = self.channels * LIKELIHOODS.get(self.likelihood).out_factor
        enc = ConvEncoder(self.channels + c, self.image_size, self.latent_dim, self.width, self.max_width)
        dec = self.decoder(self.latent_dim + c, out)
        return ConditionalEncoder(enc, c), ConditionalDecoder(dec, c)


class ConditionalVAE(_Conditional, VAE):
    """Conditional VAE (Sohn et al. 2015): q(z | x, y), p(x | z, y), prior N(0, I) for every class."""

    def encode(self, x: torch.Tensor, y: torch.Tensor | int | None = None) -> DiagonalGaussian:
        if y is None:
            raise GanvaeError("cvae: encode(x, y) needs the images' class labels")
        y = torch.as_tensor(y, dtype=torch.long, device=x.device).flatten()
        if y.numel() == 1:
            y = y.expand(x.shape[0])
        return DiagonalGaussian(self.encoder(x, y))

    def decode_latent(self, z, net=None):
        dec = net if net is not None else self.decoder
        zz, y = self.split(z)
        return self.likelihood.mean(dec(zz, y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        q = self.encode(x, y)
        labels = torch.as_tensor(y, dtype=torch.long, device=x.device).flatten().expand(x.shape[0])
        return self.likelihood.mean(self.decoder(q.mean, labels))

    def bound_parts(self, labels=None):
        if labels is None:
            raise GanvaeError("cvae: the bound of log p(x | y) needs the images' class labels")
        y = labels.to(self.device)
        return (lambda a: self.encoder(a, y), lambda z: self.decoder(z, y.repeat(z.shape[0] // y.shape[0])),
                self.likelihood)

    def loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        y = self._labels(batch)
        return self.objective(functools.partial(self.encoder, y=y), functools.partial(self.decoder, y=y),
                              self.likelihood, batch.x, gen)

"""Class-conditional networks: a label-embedding generator, a projection discriminator, conditional VAE nets.

* :class:`ConditionalGenerator`: G(z, y) = G'([z, e(y)]) with a learned label embedding ``e``
  concatenated to the latent code (Mirza & Osindero 2014's conditioning of G).
* :class:`ProjectionDiscriminator`: D(x, y) = psi(phi(x)) + <e(y), sum_pool(phi(x))>
  (Miyato & Koyama 2018): the unconditional logit of the wrapped discriminator plus the
  inner product of a label embedding with its pooled last feature map.
* :class:`ConditionalEncoder` / :class:`ConditionalDecoder`: a conditional VAE (Sohn et al. 2015)
  with one-hot labels as extra input planes of the encoder and extra inputs of the decoder.

Labels are int64 class indices in ``[0, num_classes)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalGenerator(nn.Module):
    """(z (B, latent_dim), y (B,)) -> image; wraps a generator built for ``latent_dim + embed_dim`` inputs."""

    def __init__(self, net: nn.Module, num_classes: int, embed_dim: int):
        super().__init__()
        self.net, self.num_classes = net, num_classes
        self.embed = nn.Embedding(num_classes, embed_dim)
        nn.init.normal_(self.embed.weight, 0.0, 1.0)  # on the scale of z ~ N(0, I)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y=None``: ``z`` is a packed code, the label (as a float) in its last column."""
        if y is None:
            z, y = z[:, :-1], z[:, -1].round().long()
        return self.net(torch.cat([z, self.embed(y)], dim=1))


class ProjectionDiscriminator(nn.Module):
    """(x, y) -> logit (B,). ``net`` must offer ``features(x)`` and ``head`` (as the DCGAN and MLP ones do).

    ``aux_classifier``: also a linear class head on the pooled features, AC-GAN style (Odena et al. 2017):
    :meth:`classify` gives class logits, :meth:`both` the logit and the class logits of one pass."""

    def __init__(self, net: nn.Module, num_classes: int, feature_dim: int, spectral_norm: bool = False,
                 aux_classifier: bool = False):
        super().__init__()
        self.net, self.num_classes = net, num_classes
        self.embed = nn.Embedding(num_classes, feature_dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        # registered only when asked, so models saved without it load unchanged
        self.aux = nn.Linear(feature_dim, num_classes) if aux_classifier else None
        if spectral_norm:
            from torch.nn.utils.parametrizations import spectral_norm as sn
            sn(self.embed)
            if self.aux is not None:
                sn(self.aux)

    def _parts(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        h = self.net.features(x)                                  # (B, C, h, w) or (B, C)
        pooled = h.flatten(2).sum(-1) if h.dim() == 4 else h      # (B, C)
        if y is None:
            return None, pooled
        out = self.net.head(h).flatten()                          # the unconditional term psi(phi(x))
        return out + (self.embed(y) * pooled).sum(dim=1), pooled

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._parts(x, y)[0]

    def both(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit (B,), class logits (B, num_classes)) from one pass through ``net``."""
        logit, pooled = self._parts(x, y)
        return logit, self.aux(pooled)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of the auxiliary head."""
        return self.aux(self._parts(x, None)[1])


def one_hot_planes(y: torch.Tensor, num_classes: int, size: int) -> torch.Tensor:
    """Labels (B,) -> (B, num_classes, size, size) one-hot planes."""
    oh = F.one_hot(y, num_classes).to(torch.float32)
    return oh[:, :, None, None].expand(-1, -1, size, size)


class ConditionalEncoder(nn.Module):
    """(x, y) -> encoder(concat(x, one-hot planes)); ``net`` takes ``channels + num_classes`` channels."""

    def __init__(self, net: nn.Module, num_classes: int):
        super().__init__()
        self.net, self.num_classes = net, num_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        planes = one_hot_planes(y, self.num_classes, x.shape[-1]).to(x.dtype)
        return self.net(torch.cat([x, planes], dim=1))


class ConditionalDecoder(nn.Module):
    """(z, y) -> decoder(concat(z, one-hot(y))); ``net`` takes ``latent_dim + num_classes`` inputs."""

    def __init__(self, net: nn.Module, num_classes: int):
        super().__init__()
        self.net, self.num_classes = net, num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1))

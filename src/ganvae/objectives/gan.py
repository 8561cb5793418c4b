"""GAN objectives, computed on discriminator logits.

With D(x) = sigmoid(l(x)):  log D(x) = -softplus(-l),  log(1 - D(x)) = -softplus(l).
Each objective returns a dict of named terms; ``"loss"`` is what the phase minimises.
Adding an objective means one class here and a registry line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

GAN_OBJECTIVES: Registry[type["GANObjective"]] = Registry("GAN objective")


class GANObjective:
    """Owns how D is called on real and generated batches and what each phase minimises."""

    def d_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """D phase. ``real``, ``fake``: (B, C, H, W) in [-1, 1]; ``fake`` is detached."""
        raise NotImplementedError

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """G phase. ``fake`` carries the generator's graph."""
        raise NotImplementedError


def value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The seed's value function L(G, D) = E[log D(x)] + E[log(1 - D(G(z)))] from logits."""
    return -F.softplus(-real_logits).mean() - F.softplus(fake_logits).mean()


def _d_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """D maximises the value function, i.e. minimises -L = softplus(-l_real) + softplus(l_fake)."""
    real = F.softplus(-real_logits).mean()
    fake = F.softplus(fake_logits).mean()
    return {
        "loss": real + fake,
        "loss/D/real": real,
        "loss/D/fake": fake,
        "D/real_prob": torch.sigmoid(real_logits).mean().detach(),
        "D/fake_prob": torch.sigmoid(fake_logits).mean().detach(),
    }


@GAN_OBJECTIVES.register("minimax")
class Minimax(GANObjective):
    """Goodfellow et al. 2014 exactly: G minimises E[log(1 - D(G(z)))] = -E[softplus(l_fake)]."""

    def d_loss(self, D, real, fake):
        return _d_terms(D(real), D(fake))

    def g_loss(self, D, fake):
        adv = -F.softplus(D(fake)).mean()
        return {"loss": adv, "loss/G/adv": adv}


@GAN_OBJECTIVES.register("nonsaturating")
class NonSaturating(GANObjective):
    """The paper's practical variant: G maximises E[log D(G(z))], i.e. minimises softplus(-l_fake)."""

    def d_loss(self, D, real, fake):
        return _d_terms(D(real), D(fake))

    def g_loss(self, D, fake):
        adv = F.softplus(-D(fake)).mean()
        return {"loss": adv, "loss/G/adv": adv}

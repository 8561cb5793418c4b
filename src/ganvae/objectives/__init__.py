"""Objectives: what each phase minimises, returned as named terms."""

from .gan import GAN_OBJECTIVES, GANObjective, Minimax, NonSaturating
from .vae import LIKELIHOODS, BetaELBO, DiagonalGaussian, Likelihood

__all__ = [
    "GAN_OBJECTIVES", "GANObjective", "Minimax", "NonSaturating",
    "LIKELIHOODS", "Likelihood", "BetaELBO", "DiagonalGaussian",
]

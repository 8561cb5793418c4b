"""Objectives: what each phase minimises, returned as named terms."""

from .gan import (GAN_OBJECTIVES, WGANGP, GANObjective, Hinge, LeastSquares, Minimax, NonSaturating,
                  gradient_penalty, r1_penalty)
from .vae import LIKELIHOODS, BetaELBO, BetaTCELBO, DiagonalGaussian, Likelihood

__all__ = [
    "GAN_OBJECTIVES", "GANObjective", "Minimax", "NonSaturating", "Hinge", "LeastSquares", "WGANGP",
    "gradient_penalty", "r1_penalty",
    "LIKELIHOODS", "Likelihood", "BetaELBO", "BetaTCELBO", "DiagonalGaussian",
]

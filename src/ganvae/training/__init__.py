"""The one phase-driven training loop, its checkpoints and the generator EMA."""

from .loop import DivergenceError, TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer", "DivergenceError"]

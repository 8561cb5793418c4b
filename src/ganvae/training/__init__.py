"""The one phase-driven training loop, its config, checkpoints, the generator EMA and plugins."""

from .config import PRECISIONS, TrainConfig
from .loop import DivergenceError, Trainer
from .plugins import TrainerPlugin

__all__ = ["TrainConfig", "Trainer", "TrainerPlugin", "DivergenceError", "PRECISIONS"]

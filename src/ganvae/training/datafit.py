"""A model fitted to its training images once, before the first step, as a loop plugin.

A model with ``needs_fit`` (``sc-dcgan``: k-means clusters of its data) offers ``fitted`` and
``fit_data(images, seed)``. This plugin calls it in :meth:`before_run` unless the model is already fitted (the
fit is model state, in every checkpoint: a resumed run fits nothing), and under torchrun hands rank 0's fit to
every process. ``run.json`` records the model's ``fit_summary()`` and how long the fit took (under ``fit``).
"""

from __future__ import annotations

import time

import torch

from . import distributed
from .plugins import TrainerPlugin


class DataFitPlugin(TrainerPlugin):
    name = "fit"

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.seconds: float | None = None

    def attach(self, trainer) -> None:
        self.model, self.seed, self.world = trainer.model, trainer.cfg.seed, trainer.world

    def before_run(self, trainer, target_steps: int) -> None:
        if self.model.fitted:
            return
        t0 = time.perf_counter()
        self.model.fit_data(self.images, self.seed)
        if self.world.active:
            distributed.broadcast_module(self.model)
        self.seconds = round(time.perf_counter() - t0, 3)

    def state_dict(self) -> dict:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict | None) -> None:
        if state is not None:
            self.seconds = state.get("seconds")

    def summary(self) -> dict:
        if not self.model.fitted:  # run.json is first written before the run starts
            return {}
        return {**getattr(self.model, "fit_summary", dict)(), "seconds": self.seconds}


def fit_plugins(model: torch.nn.Module, images: torch.Tensor) -> list[TrainerPlugin]:
    """[DataFitPlugin] for a model that fits itself to its training images first, else []."""
    return [DataFitPlugin(images)] if getattr(model, "needs_fit", False) else []

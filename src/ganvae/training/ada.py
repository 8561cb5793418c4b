"""Adaptive discriminator augmentation's schedule as a loop plugin: p moves every ``interval`` steps.

The pipeline and its state (``p``, the r_t accumulator) live in the model (``model.augment``, an
:class:`ganvae.augment.ada.AdaAugment`, whose buffers are in the model's state dict and so in every
checkpoint: a resume continues p exactly). This plugin only

- calls :meth:`AdaAugment.update` after every ``interval``-th training step (summing the accumulator over
  the processes first under data-parallel training, so every rank keeps the same p);
- logs ``ada/p`` and ``ada/rt`` on each line of ``metrics.jsonl`` (and TensorBoard), the only host syncs;
- puts the final p, the last r_t and the settings in ``run.json``, the export's ``config.json``, ``ganvae
  info`` and the report (under ``ada``).
"""

from __future__ import annotations

import torch

from ..augment.ada import AdaAugment
from .plugins import TrainerPlugin


class AdaPlugin(TrainerPlugin):
    name = "ada"

    def __init__(self, ada: AdaAugment):
        self.ada = ada
        self.world = None

    def attach(self, trainer) -> None:
        self.world = trainer.world

    def after_step(self, trainer) -> str | None:
        if trainer.step % self.ada.interval == 0:
            if self.world is not None and self.world.active:
                import torch.distributed as dist
                both = torch.stack([self.ada.rt_sum, self.ada.rt_n])
                dist.all_reduce(both)
                self.ada.rt_sum.copy_(both[0])
                self.ada.rt_n.copy_(both[1])
            self.ada.update()
        return None

    def log_values(self, trainer) -> dict[str, float]:
        return {"ada/p": float(self.ada.p), "ada/rt": float(self.ada.rt)}

    def summary(self) -> dict:
        a = self.ada
        return {"p": round(float(a.p), 6), "rt": round(float(a.rt), 6), "target": a.target, "kimg": a.kimg,
                "interval": a.interval, "pipe": a.pipe, "adaptive": a.kimg > 0}


def ada_plugins(model: torch.nn.Module) -> list[TrainerPlugin]:
    """[AdaPlugin] when the model augments with ADA, else []."""
    aug = getattr(model, "augment", None)
    return [AdaPlugin(aug)] if isinstance(aug, AdaAugment) else []

"""pix2pix (Isola et al. 2017): paired translation A -> B with a conditional GAN and an L1 term.

G is a U-Net, A -> B. D is a PatchGAN that sees the input beside an output, ``cat([a, b], channels)``:
real pairs (a, b) against generated pairs (a, G(a)). Two phases per step: D on a fresh real pair batch,
then G on the same batch (``reuse_batch``): the adversarial term plus ``l1_weight`` * |G(a) - b|_1
(a mean over pixels of the [-1, 1] images, as in the paper's code). The paper's noise is dropout in G's
decoder (``g_dropout``), drawn from torch's global RNG, which checkpoints save and restore.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GanvaeError
from ..nets.patchgan import PatchGANDiscriminator
from ..nets.unet import UNetGenerator
from ..objectives import GAN_OBJECTIVES
from .base import Batch, Phase
from .translation import TranslationConfig, TranslationModel, l1


@dataclass
class Pix2PixConfig(TranslationConfig):
    objective: str = "nonsaturating"  # the paper's: log D(a, G(a)) maximised by G
    l1_weight: float = 100.0          # weight (lambda) of |G(a) - b|_1 (the paper: 100)
    g_dropout: float = 0.5            # dropout on the three innermost U-Net decoder levels (the paper's noise)

    def validate(self) -> None:
        super().validate()
        if self.l1_weight < 0:
            raise GanvaeError(f"model.l1_weight: expected >= 0, got {self.l1_weight}")
        if not 0 <= self.g_dropout < 1:
            raise GanvaeError(f"model.g_dropout: expected a number in [0, 1), got {self.g_dropout}")


class Pix2Pix(TranslationModel):
    generator_name = "G"
    directions = ("a2b",)
    needs_pairs = True  # row i of Batch.b is the target of row i of Batch.x

    def __init__(self, config: Pix2PixConfig):
        super().__init__(config)
        c = config
        self.G = UNetGenerator(c.channels_a, c.channels_out, c.image_size, c.g_width, c.max_width, c.g_depth,
                               c.norm, c.g_dropout)
        self.D = PatchGANDiscriminator(c.channels_a + c.channels_out, c.image_size, c.d_width, c.max_width,
                                       c.d_layers, c.norm)
        self.objective = GAN_OBJECTIVES.get(c.objective).from_config(c)
        # dropout draws from torch's global RNG, which a CUDA graph's warm-up and capture would consume out of
        # step with the eager loop: the step stays eager unless g_dropout is 0 (training/graphs.py)
        self.cuda_graphs_ok = c.g_dropout == 0

    def generator_for(self, direction: str):
        return self.G

    def grid_columns(self, batch: Batch) -> list[torch.Tensor]:
        """Input A, output G(A), target B."""
        return [batch.x, self.translate(batch.x), batch.b]

    def conditioned(self, a: torch.Tensor):
        """D as the objective calls it: images b (B, C_b, H, W) -> patch logits, beside the input ``a``."""
        return lambda b: self.D(torch.cat([a, b], 1))

    @staticmethod
    def _pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.b is None:
            raise GanvaeError("pix2pix needs paired data (A and B images): --data pairs:A_DIR,B_DIR or an npz "
                              "with arrays a and b")
        return batch.x * 2 - 1, batch.b * 2 - 1  # (B, C_a, H, W), (B, C_b, H, W) in [-1, 1]

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        a, b = self._pair(batch)
        with torch.no_grad():
            fake = self.G(a)
        return self.objective.d_loss(self.conditioned(a), b, fake, gen=gen)

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        a, b = self._pair(batch)
        fake = self.G(a)
        terms = self.objective.g_loss(self.conditioned(a), fake)
        rec = self.config.l1_weight * l1(fake, b)
        terms["loss/G/l1"] = rec
        terms["loss"] = terms["loss"] + rec
        return terms

    def phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("D", [self.D], c.lr_d, c.betas_d, self.d_phase),
            Phase("G", [self.G], c.lr_g, c.betas_g, self.g_phase, reuse_batch=True),
        ]

"""CycleGAN (Zhu et al. 2017): unpaired translation between domains A and B.

Two U-Net generators (G_ab: A -> B, G_ba: B -> A; the paper uses ResNet generators, a U-Net is one of its
code's options) and two PatchGANs (D_a judges domain A, D_b domain B). Least-squares GAN loss by default.
G phase (both generators, one optimizer): the adversarial terms of G_ab against D_b and of G_ba against D_a,
plus cycle consistency ``cycle_weight`` * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1), plus identity
``identity_ratio * cycle_weight`` * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1) (the paper: cycle 10, identity
0.5 * 10; the identity term needs the same channel count on both sides and is left out otherwise).
D phase (both discriminators, on the same batch): each D sees real images of its domain against generated
ones drawn from a history buffer of ``pool_size`` images (:class:`ImagePool`; in the state dict, seeded
from the training noise generator). The batch's A and B images are unrelated (unpaired data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GanvaeError
from ..nets.patchgan import PatchGANDiscriminator
from ..nets.unet import UNetGenerator
from ..objectives import GAN_OBJECTIVES
from .base import Batch, Phase
from .translation import ImagePool, TranslationConfig, TranslationModel, cycle_terms, identity_terms


@dataclass
class CycleGANConfig(TranslationConfig):
    objective: str = "least-squares"  # the paper's LSGAN loss
    norm: str = "instance"            # the paper's instance normalisation
    cycle_weight: float = 10.0        # lambda of the cycle-consistency terms (the paper: 10)
    identity_ratio: float = 0.5       # identity weight = identity_ratio * cycle_weight (the paper: 0.5; 0: off)
    pool_size: int = 50               # generated images kept per D in the history buffer (the paper: 50; 0: off)

    def validate(self) -> None:
        super().validate()
        for name in ("cycle_weight", "identity_ratio"):
            if getattr(self, name) < 0:
                raise GanvaeError(f"model.{name}: expected >= 0, got {getattr(self, name)}")
        if not 0 <= self.pool_size <= 10_000:
            raise GanvaeError(f"model.pool_size: expected 0 (off) to 10000, got {self.pool_size}")

    @property
    def identity_weight(self) -> float:
        """The identity term's weight; 0 when A and B have different channel counts."""
        return self.identity_ratio * self.cycle_weight if self.channels_a == self.channels_out else 0.0


class CycleGAN(TranslationModel):
    generator_name = "G_ab"
    directions = ("a2b", "b2a")

    def __init__(self, config: CycleGANConfig):
        super().__init__(config)
        c = config
        ca, cb, s = c.channels_a, c.channels_out, c.image_size
        self.G_ab = UNetGenerator(ca, cb, s, c.g_width, c.max_width, c.g_depth, c.norm)
        self.G_ba = UNetGenerator(cb, ca, s, c.g_width, c.max_width, c.g_depth, c.norm)
        self.D_a = PatchGANDiscriminator(ca, s, c.d_width, c.max_width, c.d_layers, c.norm)
        self.D_b = PatchGANDiscriminator(cb, s, c.d_width, c.max_width, c.d_layers, c.norm)
        self.pool_a = ImagePool(c.pool_size, ca, s)  # generated A images (G_ba's), shown to D_a
        self.pool_b = ImagePool(c.pool_size, cb, s)  # generated B images (G_ab's), shown to D_b
        self.objective = GAN_OBJECTIVES.get(c.objective).from_config(c)

    def generator_for(self, direction: str):
        return self.G_ab if direction == "a2b" else self.G_ba

    def grid_columns(self, batch: Batch) -> list[torch.Tensor]:
        """A, G_ab(A), its cycle G_ba(G_ab(A)); then B, G_ba(B), G_ab(G_ba(B)) (unpaired: B is another image)."""
        ab, ba = self.translate(batch.x, "a2b"), self.translate(batch.b, "b2a")
        return [batch.x, ab, self.translate(ab, "b2a"), batch.b, ba, self.translate(ba, "a2b")]

    def inference_modules(self) -> list[str]:
        return ["G_ab", "G_ba"]

    @staticmethod
    def _domains(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.b is None:
            raise GanvaeError("cyclegan needs images of two domains: --data A --data-b B (or a paired source)")
        return batch.x * 2 - 1, batch.b * 2 - 1  # (B, C_a, H, W), (B, C_b, H, W) in [-1, 1]

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        a, b = self._domains(batch)
        with torch.no_grad():
            fake_b = self.pool_b.query(self.G_ab(a), gen)
            fake_a = self.pool_a.query(self.G_ba(b), gen)
        ta = self.objective.d_loss(self.D_a, a, fake_a, gen=gen)
        tb = self.objective.d_loss(self.D_b, b, fake_b, gen=gen)
        terms = {f"{k}_a" if k != "loss" else k: v for k, v in ta.items()}
        terms.update({f"{k}_b": v for k, v in tb.items() if k != "loss"})
        terms["loss"] = ta["loss"] + tb["loss"]
        return terms

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        a, b = self._domains(batch)
        fake_b, fake_a = self.G_ab(a), self.G_ba(b)
        adv_b = self.objective.g_loss(self.D_b, fake_b)["loss"]
        adv_a = self.objective.g_loss(self.D_a, fake_a)["loss"]
        cyc = cycle_terms(a, self.G_ba(fake_b), b, self.G_ab(fake_a), self.config.cycle_weight)
        terms = {"loss/G/adv_ab": adv_b, "loss/G/adv_ba": adv_a, **cyc}
        loss = adv_a + adv_b + cyc["loss"]
        w = self.config.identity_weight
        if w > 0:
            idt = identity_terms(a, self.G_ba(a), b, self.G_ab(b), w)
            terms.update(idt)
            loss = loss + idt["loss"]
        terms["loss"] = loss
        return terms

    def phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("D", [self.D_a, self.D_b], c.lr_d, c.betas_d, self.d_phase),
            Phase("G", [self.G_ab, self.G_ba], c.lr_g, c.betas_g, self.g_phase, reuse_batch=True),
        ]

"""GANs: a generator G and a discriminator D trained against each other.

Two phases per training step: D (``d_steps`` times: a fresh real batch and fresh
noise each time; G is not differentiated), then G (fresh noise; D frozen). Images
enter D in [-1, 1]; ``sample()`` returns them in [0, 1].

Stabilisers, all off by default: the objective (``hinge``, ``least-squares``,
``wgan-gp`` besides the paper's two), lazy R1 on real images (``r1_gamma``,
``r1_every``), spectral normalisation in D (``d_spectral_norm``), DiffAugment or adaptive
augmentation (ADA) before D (``augment``, ``ada_*``) and TTUR (``lr_d`` > ``lr_g``). A subclass (a conditional GAN)
reuses :meth:`GAN.d_terms` / :meth:`GAN.g_terms` with its own D callable, e.g.
``functools.partial(self.D, y=y)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..augment import ADA, behind, build_augment, check_augment
from ..errors import GanvaeError
from ..nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ..nets.dcgan import check_upsample
from ..nets.pretrained import FeatureDiscriminator
from ..objectives import GAN_OBJECTIVES
from ..objectives.gan import r1_penalty
from .base import Batch, GenerativeModel, ModelConfigBase, Phase, check_betas


@dataclass
class GANConfig(ModelConfigBase):
    latent_dim: int = 100                    # size of z ~ N(0, I)
    objective: str = "nonsaturating"         # GAN objective: minimax, nonsaturating, hinge, least-squares, wgan-gp
    lr_g: float = 2e-4                       # Adam learning rate of G
    lr_d: float = 2e-4                       # Adam learning rate of D (TTUR: e.g. lr_d=4e-4 with lr_g=1e-4)
    betas_g: tuple[float, float] = (0.5, 0.999)  # Adam betas of G (DCGAN paper: beta1 = 0.5; WGAN-GP: (0, 0.9))
    betas_d: tuple[float, float] = (0.5, 0.999)  # Adam betas of D
    d_steps: int = 1                         # D updates per G update (n_critic; the WGAN-GP paper uses 5)
    gp_weight: float = 10.0                  # wgan-gp: weight (lambda) of the gradient penalty
    drift_weight: float = 0.0                # wgan-gp: weight of the drift E[l_real^2] (ProGAN: 1e-3)
    r1_gamma: float = 0.0                    # R1 penalty gamma/2 * E||grad_x D(x_real)||^2 (0: off)
    r1_every: int = 16                       # lazy R1: computed every this many D steps, scaled by it
    d_spectral_norm: bool = False            # spectral normalisation on every conv/linear layer of D
    augment: str = ""                        # before D: DiffAugment (comma list of translation, cutout, color) or ada
    ada_pipe: str = "bgc"                    # ada: transformation groups, letters b (blit), g (geom), c (color)
    ada_p: float = 0.0                       # ada: starting augmentation probability p (the fixed p if ada_kimg=0)
    ada_target: float = 0.6                  # ada: target of r_t = E[sign(D(real))]; p rises while r_t is above it
    ada_kimg: float = 100.0                  # ada: thousands of real images for p to go 0 -> 1 (paper: 500, for runs
                                             # 10-100x longer than ours); 0: p stays at ada_p
    ada_interval: int = 4                    # ada: training steps between updates of p (paper: 4 minibatches)

    # D steps per G step under differential privacy, unless model.d_steps is given. DP-SGD's noise weakens D,
    # and G then learns from a poor critic; more D steps per G step restore the balance (Bie et al., "Private
    # GANs, revisited", TMLR 2023: 50 at epsilon 10 for 450k D steps on a GPU). Tuned for CPU budgets, where
    # a run has tens of thousands of D steps, not hundreds of thousands: benchmarks/results/privacy-steps.md.
    DP_D_STEPS: ClassVar[int] = 5

    @classmethod
    def fill_defaults(cls, raw: dict, private: bool = False) -> list[str]:
        """The objective's needs (e.g. wgan-gp: D without BatchNorm) and, under DP, the private step ratio
        (:attr:`DP_D_STEPS`), for fields the user did not set."""
        name = raw.get("objective", cls.objective)
        if name not in GAN_OBJECTIVES:
            return []
        fields = {f.name for f in dataclasses.fields(cls)}
        notes = []
        for key, (value, why) in GAN_OBJECTIVES.get(name).needs.items():
            if key in fields and key not in raw:
                raw[key] = value
                notes.append(f"model.objective={name}: using model.{key}={value} ({why})")
        if private and "d_steps" not in raw:  # documented default, recorded in config.yaml and run.json
            raw["d_steps"] = cls.DP_D_STEPS
        return notes

    def validate(self) -> None:
        GAN_OBJECTIVES.get(self.objective)  # unknown name -> error listing the valid ones
        if self.d_steps < 1:
            raise GanvaeError(f"model.d_steps: expected >= 1, got {self.d_steps}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise GanvaeError(f"model.{name}: expected > 0, got {getattr(self, name)}")
        for name in ("betas_g", "betas_d"):
            check_betas(getattr(self, name), f"model.{name}")
        if self.latent_dim < 1:
            raise GanvaeError(f"model.latent_dim: expected >= 1, got {self.latent_dim}")
        for name in ("gp_weight", "drift_weight", "r1_gamma"):
            if getattr(self, name) < 0:
                raise GanvaeError(f"model.{name}: expected >= 0, got {getattr(self, name)}")
        if self.r1_every < 1:
            raise GanvaeError(f"model.r1_every: expected >= 1, got {self.r1_every}")
        check_augment(self)
        if getattr(self, "d_mbstd", 0) < 0:
            raise GanvaeError(f"model.d_mbstd: expected >= 0 (0: off), got {self.d_mbstd}")
        if self.objective == "wgan-gp" and getattr(self, "d_mbstd", 0) > 0:
            raise GanvaeError("model.objective=wgan-gp with model.d_mbstd > 0: the gradient penalty is per sample and "
                              "the minibatch std mixes the samples of a batch; set model.d_mbstd=0")
        if self.objective == "wgan-gp" and getattr(self, "d_norm", None) == "batch":
            raise GanvaeError(
                "model.objective=wgan-gp with model.d_norm=batch: the gradient penalty is per sample and "
                "BatchNorm mixes the samples of a batch; set model.d_norm=layer, group or none "
                "(--set model.d_norm=layer)")


D_FEATURES = ("pixels", "effnet")  # what a DCGAN-style D looks at (model.d_features)


@dataclass
class DCGANConfig(GANConfig):
    g_width: int = 64         # G channels at its highest resolution; doubled per halving, up to max_width
    d_width: int = 64         # D channels at its highest resolution; doubled per halving, up to max_width
    max_width: int = 512      # cap on channels in G and D
    g_norm: str = "batch"     # normalisation in G: batch, group, none
    g_upsample: str = "transposed"  # how G doubles its resolution: transposed (4x4 stride-2 transposed convs, the
                                    # paper's) or nearest / bilinear (resize, then a 3x3 conv: no checkerboard)
    d_norm: str = "batch"     # normalisation in D (not on its first layer): batch, group, layer, none
    d_mbstd: int = 0          # minibatch standard deviation before D's head over groups of this size (0: off)
    d_features: str = "pixels"  # what D sees: pixels (a DCGAN D) or effnet (a trainable MLP of width 4 * d_width on
                                # the pooled layers of a frozen ImageNet EfficientNet-Lite0: features it need not
                                # learn under DP's noise; see nets.pretrained.FeatureDiscriminator)
    d_feature_grid: int = 2   # d_features=effnet: each layer pooled to this many cells a side
    d_feature_precision: str = "fp32"  # d_features=effnet: the frozen net's forward in D's own step: fp32 or bf16

    def validate(self) -> None:
        super().validate()
        self.check_d()

    def check_d(self) -> None:
        check_upsample(self.g_upsample, "model.g_upsample")
        if self.d_features not in D_FEATURES:
            raise GanvaeError(f"model.d_features: expected one of {', '.join(D_FEATURES)}, got {self.d_features!r}")
        if self.d_features == "effnet":
            if self.d_mbstd > 0:
                raise GanvaeError("model.d_features=effnet with model.d_mbstd > 0: the feature discriminator has no "
                                  "minibatch-std layer; set model.d_mbstd=0")
            if self.d_feature_precision not in ("fp32", "bf16"):
                raise GanvaeError(f"model.d_feature_precision: expected fp32 or bf16, got {self.d_feature_precision!r}")
            if not 1 <= self.d_feature_grid <= 16:
                raise GanvaeError(f"model.d_feature_grid: expected 1 to 16 cells a side, got {self.d_feature_grid}")

    def build_d(self) -> tuple[nn.Module, int]:
        """(D, the width of its last features: what a projection head multiplies)."""
        if self.d_features == "effnet":
            D = FeatureDiscriminator(self.image_size, 4 * self.d_width, self.d_feature_grid, self.d_spectral_norm,
                                     bf16=self.d_feature_precision == "bf16")
            return D, D.feature_dim
        D = DCGANDiscriminator(self.channels, self.image_size, self.d_width, self.max_width, self.d_norm,
                               spectral_norm=self.d_spectral_norm, mbstd_group=self.d_mbstd)
        return D, D.head.in_channels

    def build_g(self, latent_dim: int) -> nn.Module:
        """G taking ``latent_dim`` inputs (the conditional models add their label embedding's size)."""
        return DCGANGenerator(latent_dim, self.channels, self.image_size, self.g_width, self.max_width, self.g_norm,
                              self.g_upsample)

    def build(self) -> tuple[nn.Module, nn.Module]:
        return self.build_g(self.latent_dim), self.build_d()[0]


@dataclass
class MLPGANConfig(GANConfig):
    g_hidden: tuple[int, ...] = (256, 512, 1024)  # G hidden layer sizes (the founding document's dense G)
    d_hidden: tuple[int, ...] = (1024, 512, 256)  # D hidden layer sizes
    g_norm: bool = True                            # BatchNorm1d in G's hidden layers
    d_dropout: float = 0.0                         # dropout in D's hidden layers

    def build(self) -> tuple[nn.Module, nn.Module]:
        G = MLPGenerator(self.latent_dim, self.channels, self.image_size, self.g_hidden, self.g_norm)
        D = MLPDiscriminator(self.channels, self.image_size, self.d_hidden, self.d_dropout,
                             spectral_norm=self.d_spectral_norm)
        return G, D


class GAN(GenerativeModel):
    family = "gan"
    generator_name = "G"
    ema_default = True
    has_discriminator = True

    @classmethod
    def private_config(cls, config: GANConfig, name: str = "") -> GANConfig:
        """Only D sees real data, through the real half of its loss: that half must be separable and per sample."""
        if not getattr(GAN_OBJECTIVES.get(config.objective), "separable", False):
            raise GanvaeError(f"privacy: model.objective={config.objective} cannot be trained privately (its "
                              "gradient penalty mixes real and fake images and needs a double backward); use "
                              "nonsaturating, minimax, hinge or least-squares")
        if config.r1_gamma > 0:
            raise GanvaeError("privacy: model.r1_gamma > 0 cannot be trained privately (R1 needs a double backward "
                              "through D); set model.r1_gamma=0")
        if config.d_spectral_norm:
            raise GanvaeError("privacy: model.d_spectral_norm=true cannot be trained privately (Opacus has no "
                              "per-sample gradients for parametrized layers with buffers); set it to false")
        if config.augment.strip() == ADA and config.ada_kimg > 0:
            raise GanvaeError("privacy: model.augment=ada adapts p to D's outputs on the real images, outside the "
                              "privacy accountant; fix p (model.ada_kimg=0, model.ada_p=0.3 say) or use DiffAugment "
                              "(model.augment=translation,cutout,color)")
        if getattr(config, "d_norm", None) == "batch":  # BatchNorm mixes samples: GroupNorm, through the option
            config = dataclasses.replace(config, d_norm="group")
        if getattr(config, "d_mbstd", 0) > 0:  # so does the minibatch std: off
            config = dataclasses.replace(config, d_mbstd=0)
        return config

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.D(x * 2 - 1).flatten()

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.G, self.D = config.build()
        self.objective = GAN_OBJECTIVES.get(config.objective).from_config(config)
        self.augment = build_augment(config)  # ADA: a submodule whose buffers (p, r_t) are in the state dict
        if config.r1_gamma > 0:
            # D steps taken, for lazy R1; a buffer so checkpoints and exports hold it (exact resume).
            # Only registered when R1 is on, so models saved without R1 load unchanged.
            self.register_buffer("d_steps_done", torch.zeros((), dtype=torch.long))

    def decode_latent(self, z, net=None):
        return ((net if net is not None else self.G)(z) + 1) / 2

    def _fake(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.G(self.latent(n, gen))  # (B, C, H, W) in [-1, 1]

    # -- the phases' terms, for any D callable (x -> logits), so subclasses can pass their own
    def critic(self, D: Callable[[torch.Tensor], torch.Tensor], gen: torch.Generator | None,
               real: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``D`` as the objective calls it: behind the augmentation (fresh draws from ``gen`` per call) when on.

        ``real``: the D phase's real batch; ADA records D's logits on it (its r_t) from the objective's own pass.
        """
        return behind(self.augment, D, gen, real)

    def d_terms(self, D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The D phase's terms: the objective's, plus lazy R1 when ``r1_gamma`` > 0.

        ``real``, ``fake``: (B, C, H, W) in [-1, 1], ``fake`` detached. Each call is one D step
        (it advances the R1 counter).
        """
        Dx = self.critic(D, gen, real)
        terms = self.objective.d_loss(Dx, real, fake, gen=gen)
        c = self.config
        if c.r1_gamma > 0:
            step = int(self.d_steps_done)
            self.d_steps_done.add_(1)
            if step % c.r1_every == 0:  # lazy regularisation (StyleGAN2): every r1_every steps, scaled up
                r1 = (c.r1_gamma / 2 * c.r1_every) * r1_penalty(Dx, real)
            else:
                r1 = terms["loss"].new_zeros(())
            terms["loss"] = terms["loss"] + r1
            terms["loss/D/r1"] = r1
        return terms

    def g_terms(self, D: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor,
                gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The G phase's terms; ``fake`` carries G's graph."""
        return self.objective.g_loss(self.critic(D, gen), fake)

    def d_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        real = batch.x * 2 - 1
        with torch.no_grad():
            fake = self._fake(real.shape[0], gen)
        return self.d_terms(self.D, real, fake, gen)

    def g_phase(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return self.g_terms(self.D, self._fake(batch.n, gen), gen)

    # -- D's loss in two halves (differential privacy charges only the real one; see Phase.halves)
    def d_real_terms(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The objective's real-image half of D's loss on the batch (no R1: not separable)."""
        return self.objective.d_real(self.critic(self.D, gen), batch.x * 2 - 1)

    def d_fake_terms(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The generated half: ``n`` fresh fakes, independent of any real batch."""
        with torch.no_grad():
            fake = self.G(self.latent(n, gen))
        return self.objective.d_fake(self.critic(self.D, gen), fake)

    def phases(self) -> list[Phase]:
        c = self.config
        return [
            Phase("D", [self.D], c.lr_d, c.betas_d, self.d_phase, repeats=c.d_steps,
                  halves=(self.d_real_terms, self.d_fake_terms)),
            Phase("G", [self.G], c.lr_g, c.betas_g, self.g_phase, real_data=False),
        ]

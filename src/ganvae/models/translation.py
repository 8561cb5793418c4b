"""What the image-to-image translation models (pix2pix, CycleGAN) share: config fields, the loss terms,
the history buffer of generated images, and ``translate()``.

A translation model maps images of domain A to domain B (CycleGAN also B to A). Its batches carry both:
``Batch.x`` (A) and ``Batch.b`` (B), in [0, 1]; the networks work in [-1, 1]. There is no noise prior, so
``sample()`` refuses; ``translate(x, direction)`` is the way to use one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .. import rng
from ..errors import GanvaeError
from ..objectives import GAN_OBJECTIVES
from ..util.modes import eval_mode
from .base import Batch, GenerativeModel, ModelConfigBase, check_betas

NORMS = ("batch", "instance", "none")


@dataclass
class TranslationConfig(ModelConfigBase):
    channels_b: int | None = None            # channels of domain B, 1 or 3 (None: as domain A's ``channels``)
    objective: str = "nonsaturating"         # adversarial loss: any GAN objective (minimax, nonsaturating, hinge,
                                             # least-squares; wgan-gp's penalty is not wired for pairs)
    lr_g: float = 2e-4                       # Adam learning rate of the generator(s) (both papers: 2e-4)
    lr_d: float = 2e-4                       # Adam learning rate of the discriminator(s)
    betas_g: tuple[float, float] = (0.5, 0.999)  # Adam betas of G (both papers: beta1 = 0.5)
    betas_d: tuple[float, float] = (0.5, 0.999)  # Adam betas of D
    g_width: int = 64                        # U-Net channels at full resolution; doubled per halving up to max_width
    d_width: int = 64                        # PatchGAN channels of its first layer; doubled per layer up to max_width
    max_width: int = 512                     # cap on channels in G and D (the papers: 512)
    g_depth: int = 0                         # U-Net halvings (0: floor(log2(image_size)) capped at 8)
    d_layers: int = 0                        # PatchGAN stride-2 layers (0: by size, 1..3; 3 = the 70x70 PatchGAN)
    norm: str = "batch"                      # normalisation in G and D: batch, instance, none

    @property
    def channels_a(self) -> int:
        return self.channels

    @property
    def channels_out(self) -> int:
        """Channels of domain B."""
        return self.channels_b if self.channels_b is not None else self.channels

    def validate(self) -> None:
        GAN_OBJECTIVES.get(self.objective)  # unknown name -> error listing the valid ones
        if self.objective == "wgan-gp":
            raise GanvaeError("model.objective=wgan-gp: not supported by translation models (its gradient penalty "
                              "is not wired for image pairs); use nonsaturating, minimax, hinge or least-squares")
        if self.channels_b is not None and self.channels_b not in (1, 3):
            raise GanvaeError(f"model.channels_b: expected 1 or 3 (or null: as model.channels), got {self.channels_b}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise GanvaeError(f"model.{name}: expected > 0, got {getattr(self, name)}")
        for name in ("betas_g", "betas_d"):
            check_betas(getattr(self, name), f"model.{name}")
        for name in ("g_width", "d_width", "max_width"):
            if getattr(self, name) < 1:
                raise GanvaeError(f"model.{name}: expected >= 1, got {getattr(self, name)}")
        if not 0 <= self.g_depth <= 12:
            raise GanvaeError(f"model.g_depth: expected 0 (by size) to 12, got {self.g_depth}")
        if not 0 <= self.d_layers <= 6:
            raise GanvaeError(f"model.d_layers: expected 0 (by size) to 6, got {self.d_layers}")
        if self.norm not in NORMS:
            raise GanvaeError(f"model.norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.image_size is not None and self.image_size < 8:
            raise GanvaeError(f"model.image_size: translation models need at least 8 px, got {self.image_size}")


# ---------------------------------------------------------------- loss terms (images in [-1, 1])

def l1(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over every pixel and channel: pix2pix's L1 term, and the cycle/identity terms."""
    return (fake - target).abs().mean()


def cycle_terms(a: torch.Tensor, a_rec: torch.Tensor, b: torch.Tensor, b_rec: torch.Tensor,
                weight: float) -> dict[str, torch.Tensor]:
    """CycleGAN's cycle consistency: weight * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1), each a mean."""
    ca, cb = weight * l1(a_rec, a), weight * l1(b_rec, b)
    return {"loss": ca + cb, "loss/G/cycle_a": ca, "loss/G/cycle_b": cb}


def identity_terms(a: torch.Tensor, a_idt: torch.Tensor, b: torch.Tensor, b_idt: torch.Tensor,
                   weight: float) -> dict[str, torch.Tensor]:
    """CycleGAN's identity loss: weight * (|G_ba(a) - a|_1 + |G_ab(b) - b|_1) (the paper: 0.5 * cycle weight)."""
    ia, ib = weight * l1(a_idt, a), weight * l1(b_idt, b)
    return {"loss": ia + ib, "loss/G/identity_a": ia, "loss/G/identity_b": ib}


# ---------------------------------------------------------------- the history buffer

class ImagePool(nn.Module):
    """Shrivastava et al. 2017's history of generated images, as CycleGAN uses it for D.

    Until ``size`` images are stored, each new image is stored and returned. Then, per image, with
    probability 1/2 a stored image (uniformly chosen) is returned and the new one takes its place; otherwise
    the new image is returned and the buffer is unchanged. Draws come from the ``gen`` given (the training
    noise generator), and the buffer and its fill count are buffers of this module, so they are in the
    model's state dict and a checkpoint: resume is exact. ``size`` 0: no buffer (images pass through).
    """

    def __init__(self, size: int, channels: int, image_size: int):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, channels, image_size, image_size))  # (size, C, H, W)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # how many slots are filled

    @torch.no_grad()
    def query(self, images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """``images`` (B, C, H, W), detached -> the (B, C, H, W) batch D is shown."""
        if self.size == 0:
            return images
        n = images.shape[0]
        u = rng.rand((n,), gen, device=images.device)             # swap with a stored image when u > 0.5
        slot = rng.randint(0, self.size, (n,), gen, device=images.device)  # which one
        out = images.clone()
        count = int(self.count)
        for i in range(n):
            if count < self.size:
                self.images[count] = images[i]
                count += 1
            elif u[i] > 0.5:
                j = int(slot[i])
                out[i] = self.images[j]
                self.images[j] = images[i]
        self.count.fill_(count)
        return out


# ---------------------------------------------------------------- the model base

class TranslationModel(GenerativeModel):
    """Base of pix2pix and CycleGAN: ``translate``; subclasses set ``directions`` and ``generator_for``."""

    family = "gan"
    translation = True
    ema_default = False
    directions: ClassVar[tuple[str, ...]] = ("a2b",)

    def generator_for(self, direction: str) -> nn.Module:
        raise NotImplementedError

    def input_channels(self, direction: str) -> int:
        """The channel count of the images ``direction`` takes; one line when the model does not go that way."""
        if direction not in self.directions:
            raise GanvaeError(f"direction {direction!r}: expected {' or '.join(self.directions)} for model "
                              f"{self.registered_name or type(self).__name__!r}")
        c = self.config
        return c.channels_a if direction == "a2b" else c.channels_out

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "a2b", batch_size: int = 64) -> torch.Tensor:
        """Images ``x`` (B, C, H, W) in [0, 1] of the source domain -> (B, C', H, W) in [0, 1] of the other."""
        want = self.input_channels(direction)
        if x.dim() != 4 or x.shape[1] != want:
            got = x.shape[1] if x.dim() == 4 else f"a tensor of shape {tuple(x.shape)}"
            raise GanvaeError(f"translate {direction}: expected images with {want} channel(s) "
                              f"({'grey' if want == 1 else 'RGB'}), got {got}")
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            raise GanvaeError(f"translate {direction}: expected {size}x{size} images, got "
                              f"{x.shape[-2]}x{x.shape[-1]}; resize them first")
        net = self.generator_for(direction)
        x = x.to(self.device, torch.float32)
        with eval_mode(self, net):
            out = [(net(x[i:i + batch_size] * 2 - 1) + 1) / 2 for i in range(0, x.shape[0], batch_size)]
        return torch.cat(out).clamp_(0, 1) if out else x.new_zeros((0, self.config.channels_out, size, size))

    def grid_columns(self, batch: Batch) -> list[torch.Tensor]:
        """The columns of a sample grid for the fixed images ``batch``: each (k, C, H, W) in [0, 1]."""
        raise NotImplementedError

    @torch.no_grad()
    def grid(self, n, seed, net=None, inputs=None) -> torch.Tensor:
        """Fixed training images beside what the model makes of them (see :meth:`grid_columns`), as a square
        grid of about ``n`` tiles whose rows each hold whole examples (``r`` examples of ``len(columns)`` tiles)."""
        if inputs is None:
            raise GanvaeError(f"model {self.registered_name!r}: its sample grid needs input images")
        cols = len(self.grid_columns(inputs(1)))
        r = max(1, int((max(n, 1) / cols ** 2) ** 0.5))  # examples per grid row; the grid is (r*cols)^2 tiles
        with eval_mode(self):
            columns = self.grid_columns(inputs(r * r * cols))
        k = columns[0].shape[0]
        c = max(t.shape[1] for t in columns)
        tiles = torch.stack([t.expand(-1, c, -1, -1) for t in columns], 1)  # (k, cols, C, H, W); grey -> RGB
        return tiles.reshape(k * cols, c, *tiles.shape[-2:]).clamp(0, 1)

    def sample(self, n, seed=None, **kw):  # noqa: ARG002 - same signature as GenerativeModel.sample
        raise GanvaeError(f"model {self.registered_name or type(self).__name__!r} translates images and draws none "
                          "from noise: use translate(images) (ganvae translate RUN --images ...)")

    def latent(self, n, generator=None, labels=None):
        raise GanvaeError(f"model {self.registered_name or type(self).__name__!r} has no latent space")


def check_domains(model_class: type[GenerativeModel], name: str, meta: dict) -> dict:
    """Whether the data (its ``meta``) suits the model: a translation model needs domain B (paired for
    ``needs_pairs`` models), the others none. Returns the config fields the data fills (``channels_b``)."""
    has_b = meta.get("channels_b") is not None
    if not model_class.translation:
        if has_b:
            raise GanvaeError(f"model {name!r} learns one domain; --data-b / paired data is for the translation models "
                              "(pix2pix, cyclegan)")
        return {}
    if not has_b:
        raise GanvaeError(f"model {name!r} translates between two domains: give paired data (--data pairs:A_DIR,B_DIR, "
                          "an .npz with arrays a and b, shapes-edges) or a second domain (--data-b SOURCE)")
    if getattr(model_class, "needs_pairs", False) and not meta.get("paired"):
        raise GanvaeError(f"model {name!r} needs paired data (--data pairs:A_DIR,B_DIR, an .npz with arrays a and b, "
                          "shapes-edges); for unpaired domains use cyclegan")
    return {"channels_b": meta["channels_b"]}

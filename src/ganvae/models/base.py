"""What every model offers the loop and the user.

A model = networks + objective + phases + ``sample()``. The loop knows nothing of
GANs or VAEs: it asks the model for its :class:`Phase` list and runs them in
order each step, each phase with its own optimizer, repeated ``repeats`` times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from .. import rng
from ..util.modes import eval_mode


@dataclass
class Batch:
    x: torch.Tensor | None           # (B, C, H, W) float in [0, 1]; None for phases that use no real data
    y: torch.Tensor | None = None    # (B,) int64 labels, when the data has them
    n: int = 0                       # batch size (taken from x when x is given)
    b: torch.Tensor | None = None    # translation models: the B-domain images (B, C_b, H, W) in [0, 1] (paired:
                                     # row i goes with x's row i; unpaired: an independent draw)

    def __post_init__(self):
        if self.x is not None:
            self.n = self.x.shape[0]


@dataclass
class Phase:
    name: str                                  # "D", "G", "VAE" ... (optimizer and term prefix)
    modules: list[nn.Module]                   # trained in this phase (others are frozen)
    lr: float
    betas: tuple[float, float]
    loss: Callable[[Batch, torch.Generator], dict[str, torch.Tensor]]  # terms; "loss" is minimised
    repeats: int = 1                           # optimizer steps of this phase per training step
    real_data: bool = True                     # draws a real batch (and counts it in "images seen")
    reuse_batch: bool = False                  # uses the real batch an earlier phase drew this step (not counted)
    weight_decay: float = 0.0
    # The loss split into (real_half(batch, gen) -> terms, fake_half(n, gen) -> terms): the part that sees
    # the real batch and the part that does not (a GAN's D: real and generated images). Their "loss" terms
    # add up to the phase's loss. Differential privacy charges only the real half. None: not separable.
    halves: tuple[Callable[[Batch, torch.Generator], dict[str, torch.Tensor]],
                  Callable[[int, torch.Generator], dict[str, torch.Tensor]]] | None = None

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters()]


@dataclass
class ModelConfigBase:
    """Fields every model config has. Training fills image_size/channels/num_classes from the data."""

    image_size: int | None = None   # square image side in pixels
    channels: int | None = None     # 1 (grey) or 3 (RGB)
    num_classes: int | None = None  # for conditional models (later); recorded for all
    latent_dim: int = 64            # size of the latent code z

    @classmethod
    def fill_defaults(cls, raw: dict, private: bool = False) -> list[str]:
        """Fill, in the raw ``model:`` dict, options that another chosen option needs and the user left out;
        ``private``: the run is differentially private (a model may then default differently).
        Return one note per filled option. Nothing by default."""
        return []


def check_base(config) -> None:
    """The fields every model config has, in range (``build`` checks them before allocating anything)."""
    from ..errors import GanvaeError
    c = config
    if c.image_size is not None and not 4 <= c.image_size <= 4096:
        raise GanvaeError(f"model.image_size: expected 4 to 4096, got {c.image_size}")
    if c.channels is not None and c.channels not in (1, 3):
        raise GanvaeError(f"model.channels: expected 1 or 3, got {c.channels}")
    if not 1 <= c.latent_dim <= 65536:
        raise GanvaeError(f"model.latent_dim: expected 1 to 65536, got {c.latent_dim}")
    if c.num_classes is not None and not 1 <= c.num_classes <= 100_000:
        raise GanvaeError(f"model.num_classes: expected 1 to 100000 or null, got {c.num_classes}")


def check_betas(betas, where: str) -> None:
    """Adam's (beta1, beta2): each in [0, 1)."""
    from ..errors import GanvaeError
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise GanvaeError(f"{where}: expected two numbers in [0, 1), e.g. [0.5, 0.999]; got {list(betas)}")


class GenerativeModel(nn.Module):
    """Base class. Subclasses set ``family`` and ``generator_name`` and implement the methods below.

    Other packages ask a model what it can do through the capability flags below and the
    methods beside them, never by its name or class.
    """

    family: ClassVar[str] = ""          # "gan" or "vae"
    generator_name: ClassVar[str] = ""  # the submodule that makes images (EMA'd; "G" or "decoder")
    ema_default: ClassVar[bool] = False
    # -- capabilities
    has_encoder: ClassVar[bool] = False        # encode(x) -> q(z | x), reconstruct(x), bound_parts()
    has_discriminator: ClassVar[bool] = False  # discriminate(x) -> D's logits
    has_likelihood: ClassVar[bool] = False     # a pixel likelihood p(x | z): ELBO and IWAE bounds of log p(x)
    conditional: ClassVar[bool] = False        # takes class labels (sample(labels=...), training needs them)
    translation: ClassVar[bool] = False        # maps images A -> B (translate(x)); batches carry Batch.b; no sample()

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.registered_name = ""  # set by ganvae.models.build

    # -- training
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    @classmethod
    def private_config(cls, config, name: str = ""):
        """``config`` made ready for differentially private training (e.g. BatchNorm -> GroupNorm), or a
        GanvaeError saying why this model (registered as ``name``) cannot be trained privately."""
        from ..errors import GanvaeError
        raise GanvaeError(f"privacy: model {name or cls.__name__!r} cannot be trained privately (its phases mix "
                          "real data into more than one network); DP supports GANs whose D loss splits into a real "
                          "and a generated half, and VAEs with a per-sample loss")

    # -- what other packages may ask
    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits (B,) for images ``x`` (B, C, H, W) in [0, 1] (``has_discriminator`` models)."""
        raise NotImplementedError(f"{type(self).__name__} has no discriminator")

    def translate(self, x: torch.Tensor, direction: str = "a2b", batch_size: int = 64) -> torch.Tensor:
        """Images of one domain -> the other (``translation`` models: pix2pix, cyclegan)."""
        from ..errors import GanvaeError
        raise GanvaeError(f"model {self.registered_name or type(self).__name__!r} is not a translation model; "
                          "translate needs a pix2pix or cyclegan run")

    def bound_parts(self, labels: torch.Tensor | None = None):
        """(encoder, decoder, likelihood) callables for ELBO / importance-weighted bounds (``has_encoder``).

        ``labels`` (conditional models): the records' classes, bound into both callables.
        """
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    # -- generation
    def latent(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Draw n latent codes from the prior, (n, latent_dim).

        Conditional models append the class label as one more column (see
        :class:`ganvae.models.conditional`); ``labels`` fixes the classes.
        """
        if labels is not None:
            from ..errors import GanvaeError
            raise GanvaeError(f"model {self.registered_name or type(self).__name__!r} is not conditional; "
                              "class labels need a conditional model (cdcgan, cvae)")
        dev = self.device
        return rng.randn((n, self.config.latent_dim), generator, device=dev)

    def decode_latent(self, z: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """Latent codes (B, latent_dim) -> images (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, *, net: nn.Module | None = None,
               batch_size: int = 256, labels: torch.Tensor | int | list[int] | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W), float in [0, 1], on the model's device.

        Same ``seed`` -> same images (the codes come from a private generator; the
        global RNG is untouched). ``net`` replaces the generator network (the loop
        passes its EMA copy). ``labels`` (conditional models only): one class for all,
        or one per image. A conditional model given no ``labels`` draws each image's class
        uniformly at random from ``seed`` (the same seed gives the same classes).
        ``truncation`` psi in (0, 1]: codes pulled toward the prior's mean, z -> mean + psi (z - mean)
        (the truncation trick: fewer odd samples, less variety; the class of a conditional model is kept).
        """
        if truncation is not None and not 0 < truncation <= 1:
            from ..errors import GanvaeError
            raise GanvaeError(f"truncation {truncation}: expected a number in (0, 1] (1: no truncation)")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).flatten()
            if labels.numel() == 1:
                labels = labels.expand(n)
            if labels.numel() != n:
                from ..errors import GanvaeError
                raise GanvaeError(f"labels: expected 1 or {n} class labels, got {labels.numel()}")
            z = self.latent(n, gen, labels=labels)
        else:
            z = self.latent(n, gen)
        if truncation is not None and truncation != 1:
            z = self.truncate(z, truncation)
        net_ = net if net is not None else getattr(self, self.generator_name)
        with eval_mode(self, net_):
            out = [self.decode_latent(z[i:i + batch_size], net_) for i in range(0, n, batch_size)]
        return torch.cat(out).clamp_(0, 1) if out else z.new_zeros((0, self.config.channels,
                                                                     self.config.image_size, self.config.image_size))

    def grid(self, n: int, seed: int, net: nn.Module | None = None,
             inputs: Callable[[int], Batch] | None = None) -> torch.Tensor:
        """The images of a training sample grid: ``n`` samples. ``inputs(k)``: k fixed training images (a
        :class:`Batch`), for models that show what they make of real images (translation: inputs beside outputs)."""
        return self.sample(n, seed=seed, net=net)

    def truncate(self, code: torch.Tensor, psi: float) -> torch.Tensor:
        """Codes (n, latent_dim) pulled toward the prior's mean (0): the truncation trick."""
        return code * psi

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def generator_net(self) -> nn.Module:
        return getattr(self, self.generator_name)

    def inference_modules(self) -> list[str]:
        """The submodules sampling and scoring need (what an inference export holds): the generator, plus the
        encoder (``has_encoder``) and the pixel likelihood (``has_likelihood``: a learned sigma); subclasses add
        what else they sample with (a learned prior). Never the discriminator."""
        names = [self.generator_name] + ["encoder"] * self.has_encoder + ["likelihood"] * self.has_likelihood
        return [n for n in names if getattr(self, n, None) is not None]


@torch.no_grad()
def standing_stats(net: nn.Module, make_input: Callable[[int], torch.Tensor], n_batches: int = 8,
                   batch_size: int = 128) -> nn.Module:
    """A copy of ``net`` whose BatchNorm running statistics are recomputed exactly on its own outputs.

    EMA weights do not match the live network's BatchNorm statistics; this gives
    the averaged network statistics of its own (BigGAN's "standing stats").
    Returns ``net`` itself when it has no BatchNorm.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return net
    net = copy.deepcopy(net)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for _ in range(n_batches):
        net(make_input(batch_size))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.eval()
    return net

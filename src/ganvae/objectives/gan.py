"""GAN objectives, computed on discriminator logits.

With D(x) = sigmoid(l(x)):  log D(x) = -softplus(-l),  log(1 - D(x)) = -softplus(l).
Each objective returns a dict of named terms; ``"loss"`` is what the phase minimises.
Adding an objective means one class here and a registry line.

``D`` is any callable image batch -> logits (B,): the discriminator module, or a
wrapper (``functools.partial(D, y=y)`` for a conditional model, DiffAugment before D).
``d_loss`` takes an optional keyword ``gen``, the phase's ``torch.Generator``, for
objectives that draw random numbers (WGAN-GP's interpolation weights); objectives
that draw none ignore it. Objective options come from the model config through
:meth:`GANObjective.from_config`.

Regularisers shared by every objective (R1) are plain functions here; the model
adds them to the D phase's terms.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry
from .. import rng

GAN_OBJECTIVES: Registry[type["GANObjective"]] = Registry("GAN objective")

Critic = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) -> logits (B,)


class GANObjective:
    """Owns how D is called on real and generated batches and what each phase minimises."""

    @classmethod
    def from_config(cls, config) -> "GANObjective":
        """The objective with its options taken from the model config (``GANConfig``); none by default."""
        return cls()

    def d_loss(self, D: Critic, real: torch.Tensor, fake: torch.Tensor, *,
               gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """D phase. ``real``, ``fake``: (B, C, H, W) in [-1, 1]; ``fake`` is detached.

        ``gen``: the phase's random generator, for objectives that draw random numbers
        (None: the global RNG).
        """
        raise NotImplementedError

    def g_loss(self, D: Critic, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """G phase. ``fake`` carries the generator's graph."""
        raise NotImplementedError

    # Model options this objective needs when the user did not choose them: {field: (value, why)}.
    # Applied before validation by ganvae.models (GANConfig.fill_defaults); an explicit other value is refused.
    needs: dict[str, tuple[object, str]] = {}

    # Separable objectives: d_loss = d_real + d_fake, each half a mean over its own batch of per-sample
    # terms. Differentially private training (ganvae.privacy.dp) clips and noises only the real half.
    separable = False

    def d_real(self, D: Critic, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The real-data half of ``d_loss`` ("loss": its part of the loss), separable objectives only."""
        raise NotImplementedError(f"{type(self).__name__} does not split into real and fake halves")

    def d_fake(self, D: Critic, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generated-data half of ``d_loss``, separable objectives only."""
        raise NotImplementedError(f"{type(self).__name__} does not split into real and fake halves")


def value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The seed's value function L(G, D) = E[log D(x)] + E[log(1 - D(G(z)))] from logits."""
    return -F.softplus(-real_logits).mean() - F.softplus(fake_logits).mean()


def _d_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """D maximises the value function, i.e. minimises -L = softplus(-l_real) + softplus(l_fake)."""
    real = F.softplus(-real_logits).mean()
    fake = F.softplus(fake_logits).mean()
    return {
        "loss": real + fake,
        "loss/D/real": real,
        "loss/D/fake": fake,
        "D/real_prob": torch.sigmoid(real_logits).mean().detach(),
        "D/fake_prob": torch.sigmoid(fake_logits).mean().detach(),
    }


def _real_half(real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The real half of :func:`_d_terms`."""
    r = F.softplus(-real_logits).mean()
    return {"loss": r, "loss/D/real": r, "D/real_prob": torch.sigmoid(real_logits).mean().detach()}


def _fake_half(fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fake half of :func:`_d_terms`."""
    f = F.softplus(fake_logits).mean()
    return {"loss": f, "loss/D/fake": f, "D/fake_prob": torch.sigmoid(fake_logits).mean().detach()}


def _logit_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean logits, for objectives whose logits are not log-odds."""
    return {"D/real_logit": real_logits.mean().detach(), "D/fake_logit": fake_logits.mean().detach()}


@GAN_OBJECTIVES.register("minimax")
class Minimax(GANObjective):
    """Goodfellow et al. 2014 exactly: G minimises E[log(1 - D(G(z)))] = -E[softplus(l_fake)]."""

    separable = True

    def d_loss(self, D, real, fake, *, gen=None):
        return _d_terms(D(real), D(fake))

    def d_real(self, D, real):
        return _real_half(D(real))

    def d_fake(self, D, fake):
        return _fake_half(D(fake))

    def g_loss(self, D, fake):
        adv = -F.softplus(D(fake)).mean()
        return {"loss": adv, "loss/G/adv": adv}


@GAN_OBJECTIVES.register("nonsaturating")
class NonSaturating(GANObjective):
    """The paper's practical variant: G maximises E[log D(G(z))], i.e. minimises softplus(-l_fake)."""

    separable = True

    def d_loss(self, D, real, fake, *, gen=None):
        return _d_terms(D(real), D(fake))

    def d_real(self, D, real):
        return _real_half(D(real))

    def d_fake(self, D, fake):
        return _fake_half(D(fake))

    def g_loss(self, D, fake):
        adv = F.softplus(-D(fake)).mean()
        return {"loss": adv, "loss/G/adv": adv}


@GAN_OBJECTIVES.register("hinge")
class Hinge(GANObjective):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018; SAGAN, Zhang et al. 2019).

    D: E[relu(1 - l_real)] + E[relu(1 + l_fake)];  G: -E[l_fake].
    """

    def d_loss(self, D, real, fake, *, gen=None):
        lr, lf = D(real), D(fake)
        r, f = F.relu(1 - lr).mean(), F.relu(1 + lf).mean()
        return {"loss": r + f, "loss/D/real": r, "loss/D/fake": f, **_logit_terms(lr, lf)}

    separable = True

    def d_real(self, D, real):
        lr = D(real)
        r = F.relu(1 - lr).mean()
        return {"loss": r, "loss/D/real": r, "D/real_logit": lr.mean().detach()}

    def d_fake(self, D, fake):
        lf = D(fake)
        f = F.relu(1 + lf).mean()
        return {"loss": f, "loss/D/fake": f, "D/fake_logit": lf.mean().detach()}

    def g_loss(self, D, fake):
        adv = -D(fake).mean()
        return {"loss": adv, "loss/G/adv": adv}


@GAN_OBJECTIVES.register("least-squares")
class LeastSquares(GANObjective):
    """Least-squares GAN (Mao et al. 2017) with a=0 (fake), b=1 (real), c=1 (G's target).

    D: 0.5 E[(l_real - 1)^2] + 0.5 E[l_fake^2];  G: 0.5 E[(l_fake - 1)^2].
    """

    def d_loss(self, D, real, fake, *, gen=None):
        lr, lf = D(real), D(fake)
        r, f = 0.5 * (lr - 1).square().mean(), 0.5 * lf.square().mean()
        return {"loss": r + f, "loss/D/real": r, "loss/D/fake": f, **_logit_terms(lr, lf)}

    separable = True

    def d_real(self, D, real):
        lr = D(real)
        r = 0.5 * (lr - 1).square().mean()
        return {"loss": r, "loss/D/real": r, "D/real_logit": lr.mean().detach()}

    def d_fake(self, D, fake):
        lf = D(fake)
        f = 0.5 * lf.square().mean()
        return {"loss": f, "loss/D/fake": f, "D/fake_logit": lf.mean().detach()}

    def g_loss(self, D, fake):
        adv = 0.5 * (D(fake) - 1).square().mean()
        return {"loss": adv, "loss/G/adv": adv}


@GAN_OBJECTIVES.register("wgan-gp")
class WGANGP(GANObjective):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017).

    D (the critic): E[l_fake] - E[l_real] + gp_weight * E[(||grad_xhat l(xhat)||_2 - 1)^2]
    on xhat = e*real + (1-e)*fake, e ~ U(0, 1) per sample (drawn from ``gen``),
    plus ``drift * E[l_real^2]`` (Karras et al. 2018 use 1e-3; off by default) to keep
    the critic's output near 0. G: -E[l_fake].

    The penalty is per sample: D must not use BatchNorm (GANConfig.validate refuses it).
    The paper trains the critic n_critic = 5 times per G step (``model.d_steps=5``),
    with Adam lr 1e-4, betas (0, 0.9).
    """

    needs = {"d_norm": ("layer", "its gradient penalty is per sample and BatchNorm mixes the samples of a batch")}

    def __init__(self, gp_weight: float = 10.0, drift: float = 0.0):
        self.gp_weight, self.drift = float(gp_weight), float(drift)

    @classmethod
    def from_config(cls, config) -> "WGANGP":
        return cls(gp_weight=getattr(config, "gp_weight", 10.0), drift=getattr(config, "drift_weight", 0.0))

    def d_loss(self, D, real, fake, *, gen=None):
        lr, lf = D(real), D(fake)
        r, f = -lr.mean(), lf.mean()
        gp = self.gp_weight * gradient_penalty(D, real, fake, gen)
        terms = {"loss/D/real": r, "loss/D/fake": f, "loss/D/gp": gp,
                 "D/wasserstein": (lr.mean() - lf.mean()).detach(), **_logit_terms(lr, lf)}
        loss = r + f + gp
        if self.drift:
            drift = self.drift * lr.square().mean()
            terms["loss/D/drift"] = drift
            loss = loss + drift
        return {"loss": loss, **terms}

    def g_loss(self, D, fake):
        adv = -D(fake).mean()
        return {"loss": adv, "loss/G/adv": adv}


# ----------------------------------------------------------------------------- gradient penalties

def input_gradient(D: Critic, x: torch.Tensor) -> torch.Tensor:
    """grad_x sum_b D(x)_b, (B, C, H, W), with its graph (so a penalty on it trains D).

    Works under ``torch.no_grad()`` too (grad mode is switched on locally).
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad


def gradient_penalty(D: Critic, real: torch.Tensor, fake: torch.Tensor,
                     gen: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's E[(||grad D(xhat)||_2 - 1)^2] on random interpolates of real and fake (unweighted)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    e = rng.rand(shape, gen, device=real.device, dtype=real.dtype)
    xhat = e * real.detach() + (1 - e) * fake.detach()
    norm = torch.linalg.vector_norm(input_gradient(D, xhat).flatten(1), dim=1)
    return (norm - 1).square().mean()


def r1_penalty(D: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018) without its gamma/2: E[||grad_x D(x)||^2] on real images."""
    return input_gradient(D, real).flatten(1).square().sum(1).mean()


# ----------------------------------------------------------------------------- relativistic pairing (R3GAN)

def zero_centred_penalty(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ||grad_x sum_b logits_b||^2, (B,), with its graph (so a penalty on it trains D).

    ``x``: the leaf (``requires_grad``) that ``logits`` were computed from: R1 when ``x`` is real,
    R2 when it is generated. Reuses the loss's forward pass instead of running D again.
    """
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(1)


@GAN_OBJECTIVES.register("rpgan")
class RpGAN(GANObjective):
    """Relativistic pairing loss (Jolicoeur-Martineau 2019) plus R1 and R2 weighted by model.gamma (R3GAN, 2024).

    Real and generated images are paired by their index in the batch. D minimises
    E[softplus(l_fake - l_real)] + gamma/2 (E||grad_x l(real)||^2 + E||grad_x l(fake)||^2);
    G minimises E[softplus(l_real - l_fake)]. The penalties are on D's own logits (as in the paper's
    code), from the same forward passes as the loss. Not separable: the pairing couples each real
    image with a generated one, so differential privacy refuses it.

    G's loss needs the real batch: callers pass it (``g_loss(D, fake, real=real)``, as ``resgan`` does).
    Without it (a GAN whose G phase sees no real images, e.g. dcgan with this objective), G pairs its
    fakes with the detached real logits of this objective's latest ``d_loss`` (D has taken one step since).
    """

    separable = False
    pairs_real = True  # g_loss takes the real batch

    def __init__(self, gamma: float = 0.0):
        self.gamma = float(gamma)
        self._real_logits: torch.Tensor | None = None  # the latest d_loss's, for g_loss without real

    @classmethod
    def from_config(cls, config) -> "RpGAN":
        return cls(gamma=getattr(config, "gamma", 0.0))

    def d_loss(self, D, real, fake, *, gen=None, gamma: float | None = None):
        """``gamma``: the penalties' weight for this call (None: the objective's; lazy regularisation passes
        ``every * gamma`` on the steps it regularises and 0 on the others)."""
        gamma = self.gamma if gamma is None else float(gamma)
        penalise = gamma > 0
        with torch.enable_grad():  # the penalties differentiate D's input (also under no_grad)
            real = real.detach().requires_grad_(penalise)
            fake = fake.detach().requires_grad_(penalise)
            lr, lf = D(real), D(fake)
            adv = F.softplus(lf - lr).mean()
            terms = {"loss/D/adv": adv, **_logit_terms(lr, lf)}
            loss = adv
            if penalise:
                r1 = gamma / 2 * zero_centred_penalty(real, lr).mean()
                r2 = gamma / 2 * zero_centred_penalty(fake, lf).mean()
                terms.update({"loss/D/r1": r1, "loss/D/r2": r2})
                loss = loss + r1 + r2
        self._real_logits = lr.detach()
        return {"loss": loss, **terms}

    def g_loss(self, D, fake, real=None):
        lf = D(fake)
        if real is not None:
            with torch.no_grad():  # constant for G: D is not trained in G's phase
                lr = D(real)
        else:
            lr = self._real_logits
            if lr is None or lr.shape != lf.shape:
                from ..errors import GanvaeError
                raise GanvaeError("objective rpgan: G's loss pairs each generated image with a real one; pass "
                                  "g_loss(D, fake, real=...) or run d_loss on a batch of the same size first")
        adv = F.softplus(lr - lf).mean()
        return {"loss": adv, "loss/G/adv": adv}

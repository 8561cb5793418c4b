"""Differentially private training (DP-SGD) through Opacus.

What is private, and how:

* **GANs** (``dcgan``, ``mlp-gan``, ``cdcgan``): only D sees real data, so only D is
  privatised; G, trained on D's outputs only, is post-processing. Each D step is one
  application of the Poisson-subsampled Gaussian mechanism to the *real-data half* of
  D's loss: its per-sample gradients (Opacus :class:`~opacus.GradSampleModule` hooks) are
  clipped to ``max_grad_norm`` and noised by :class:`~opacus.optimizers.DPOptimizer`'s
  ``pre_step()``; then, with the hooks off, the fake half's gradient is back-propagated
  and *added* to the noised gradient, and the wrapped Adam steps. The fake half never
  touches real data: a fixed number of fakes (``train.batch_size``) with labels drawn
  uniformly (not the real batch's labels, as the non-private ``cdcgan`` does), so it needs
  no clipping, no noise and no budget. (The Opacus DCGAN example charges the fake pass
  too, opacus issue 418.) This needs the objective split into a real and a fake half
  (:meth:`GANObjective.d_real` / :meth:`GANObjective.d_fake`): minimax, nonsaturating,
  hinge and least-squares are separable; WGAN-GP's penalty mixes real and fake and needs a
  double backward (opacus issue 31), R1 needs a double backward: both are refused.
* **VAEs** (``vae``, ``mlp-vae``, ``beta-vae``, ``cvae``): the whole model sees real data and
  is privatised. ``tcvae`` (its minibatch-stratified estimator couples the samples of a
  batch) and ``vae-gan`` are refused.

Sampling and accounting: each D (or VAE) step draws a Poisson batch
(:class:`PoissonStream`: every training image independently with probability
``q = batch_size / N``; the batch size varies and may be 0), which is what the
accountant assumes. Opacus's accountant (``rdp`` by default, ``prv`` on request) records
one (noise multiplier, q) step per D step through the optimizer's step hook; the epsilon
spent is logged as ``dp/epsilon``, and a run with a target epsilon stops cleanly (checkpoint,
export, stop reason) before a step that would exceed it. With a target epsilon the noise
multiplier is calibrated by :func:`opacus.accountants.utils.get_noise_multiplier` for the
planned number of D steps (``train.steps * model.d_steps``) and then kept fixed (it is in the
checkpoint, so a resume with more steps continues with the same sigma until the budget stops it).

BatchNorm mixes the samples of a batch and is not private: D's ``model.d_norm=batch`` (the
dcgan default) becomes ``group`` (the config option, so the export rebuilds the same net);
Opacus's ``ModuleValidator.validate`` must then find nothing in the privatised modules.

Not covered by the guarantee: the Gaussian noise and the Poisson draws come from seeded
PyTorch generators (runs repeat bit for bit and resume exactly), so the seed and the
checkpoints must stay secret, as with any non-``secure_mode`` Opacus run; and periodic
evaluation scores (``--eval-every``) are computed on the data split they name, outside the
accountant.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import GanvaeError
from ..models import GAN, Batch
from ..training.loop import Trainer

ACCOUNTANTS = ("rdp", "prv")
DEFAULT_DELTA = 1e-5

# Opacus hooks the first layer too, whose input (the images) needs no gradient; harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect "
                                          "to module outputs since no inputs require gradients")


# ----------------------------------------------------------------------------- the config section

@dataclass
class PrivacyConfig:
    """The ``privacy:`` section. DP training is on when ``epsilon`` or ``noise_multiplier`` is set."""

    epsilon: float | None = None           # target epsilon: sigma is calibrated so the planned steps spend at most this
    delta: float | None = None             # target delta; null: 1e-5 (must be < 1/N, N = training images)
    max_grad_norm: float = 1.0             # per-sample gradient clipping norm C
    noise_multiplier: float | None = None  # sigma (noise std = sigma * C), instead of epsilon; epsilon is then reported
    accountant: str = "rdp"                # rdp (Renyi DP, the moments accountant) or prv (tighter, slower)

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None

    def validate(self) -> None:
        if self.epsilon is not None and not (0 < self.epsilon < math.inf):
            raise GanvaeError(f"privacy.epsilon (--dp-epsilon): expected a finite number > 0, got {self.epsilon:g} "
                              "(leave it out for non-private training)")
        if self.noise_multiplier is not None and not (0 < self.noise_multiplier < math.inf):
            raise GanvaeError(f"privacy.noise_multiplier (--dp-noise-multiplier): expected a number > 0, "
                              f"got {self.noise_multiplier:g}")
        if self.epsilon is not None and self.noise_multiplier is not None:
            raise GanvaeError("privacy: give privacy.epsilon (--dp-epsilon) or privacy.noise_multiplier "
                              "(--dp-noise-multiplier), not both: the noise multiplier is calibrated from epsilon")
        if self.delta is not None and not (0 < self.delta < 1):
            raise GanvaeError(f"privacy.delta (--dp-delta): expected 0 < delta < 1/N (N = training images), "
                              f"got {self.delta:g}")
        if not (0 < self.max_grad_norm < math.inf):
            raise GanvaeError(f"privacy.max_grad_norm (--dp-max-grad-norm): expected a number > 0, "
                              f"got {self.max_grad_norm:g}")
        if self.accountant not in ACCOUNTANTS:
            raise GanvaeError(f"privacy.accountant {self.accountant!r}: expected one of {', '.join(ACCOUNTANTS)}")
        if not self.enabled and self.delta is not None:
            raise GanvaeError("privacy.delta (--dp-delta) needs privacy.epsilon (--dp-epsilon) or "
                              "privacy.noise_multiplier (--dp-noise-multiplier)")


# ----------------------------------------------------------------------------- checks before building

def prepare_config(cfg, meta: dict):
    """Refuse what cannot be privatised; switch D's BatchNorm to GroupNorm; fill delta. Returns ``cfg``.

    ``cfg``: the resolved :class:`ganvae.config.RunConfig` (model fields filled from the data);
    ``meta``: the data summary (``n_train``).
    """
    from ..models import GAN, MODELS, VAE, TCVAEConfig
    from ..objectives import GAN_OBJECTIVES

    p: PrivacyConfig = cfg.privacy
    if p is None or not p.enabled:
        return cfg
    name, m = cfg.model_name, cfg.model
    n = int(meta["n_train"])
    cls = MODELS.get(name).model_class
    if not issubclass(cls, (GAN, VAE)):
        raise GanvaeError(f"privacy: model {name!r} cannot be trained privately (its phases mix real data into "
                          "more than one network); DP supports dcgan, mlp-gan, cdcgan, vae, mlp-vae, beta-vae, cvae")
    if isinstance(m, TCVAEConfig):
        raise GanvaeError(f"privacy: model {name!r} cannot be trained privately: beta-TCVAE's minibatch-stratified "
                          "estimator couples the samples of a batch (no per-sample gradients); use beta-vae")
    if issubclass(cls, GAN):
        if not getattr(GAN_OBJECTIVES.get(m.objective), "separable", False):
            raise GanvaeError(f"privacy: model.objective={m.objective} cannot be trained privately (its gradient "
                              "penalty mixes real and fake images and needs a double backward); use nonsaturating, "
                              "minimax, hinge or least-squares")
        if m.r1_gamma > 0:
            raise GanvaeError("privacy: model.r1_gamma > 0 cannot be trained privately (R1 needs a double backward "
                              "through D); set model.r1_gamma=0")
        if m.d_spectral_norm:
            raise GanvaeError("privacy: model.d_spectral_norm=true cannot be trained privately (Opacus has no "
                              "per-sample gradients for parametrized layers with buffers); set it to false")
        if getattr(m, "d_norm", None) == "batch":  # BatchNorm mixes samples: GroupNorm, through the config option
            cfg.model = dataclasses.replace(m, d_norm="group")
    else:
        if m.likelihood == "gaussian" and m.sigma is None:
            raise GanvaeError("privacy: model.likelihood=gaussian with a learned sigma cannot be trained privately "
                              "(the sigma parameter has no per-sample gradient); set model.sigma (e.g. 0.1) or use "
                              "bernoulli")
    t = cfg.train
    if getattr(t, "precision", "fp32") != "fp32":
        raise GanvaeError(f"privacy: train.precision={t.precision} is not supported with DP; use fp32")
    if getattr(t, "compile", False):
        raise GanvaeError("privacy: train.compile=true is not supported with DP (Opacus's per-sample hooks)")
    if p.delta is None:
        p = dataclasses.replace(p, delta=DEFAULT_DELTA)
    if p.delta >= 1 / n:
        raise GanvaeError(f"privacy.delta (--dp-delta) {p.delta:g}: expected < 1/N = {1 / n:.3g} "
                          f"(N = {n} training images)")
    if t.batch_size >= n:
        raise GanvaeError(f"privacy: train.batch_size {t.batch_size} must be below the {n} training images "
                          "(the sample rate is batch_size / N)")
    cfg.privacy = p
    return cfg


# ----------------------------------------------------------------------------- accounting

def make_accountant(mechanism: str, history: list | None = None):
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=mechanism)
    acc.history = [(float(s), float(q), int(k)) for s, q, k in (history or [])]
    return acc


@functools.lru_cache(maxsize=64)
def _rdp_one_step(sigma: float, q: float):
    """Opacus's RDP of one Poisson-subsampled Gaussian step at its default orders (an array)."""
    from opacus.accountants.analysis import rdp as analysis
    from opacus.accountants.rdp import RDPAccountant

    return analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)


def epsilon_for(history: list, delta: float, mechanism: str = "rdp") -> float:
    """Epsilon Opacus's ``mechanism`` accountant gives for ``history`` [(sigma, q, steps), ...] at ``delta``.

    RDP adds up over steps (Opacus computes ``compute_rdp(q, sigma, 1) * steps``), so the per-step RDP
    is computed once per (sigma, q) and scaled: the same numbers as ``RDPAccountant.get_epsilon``,
    cheap enough to ask every step. PRV asks Opacus's ``PRVAccountant`` each time.
    """
    history = [(float(s), float(q), int(k)) for s, q, k in history if int(k) > 0]
    if not history:
        return 0.0
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound holds, just not tight
        warnings.simplefilter("ignore", UserWarning)
        if mechanism == "rdp":
            from opacus.accountants.analysis import rdp as analysis
            from opacus.accountants.rdp import RDPAccountant

            rdp = sum(_rdp_one_step(s, q) * k for s, q, k in history)
            eps, _ = analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
            return float(eps)
        return float(make_accountant(mechanism, history).get_epsilon(delta=delta))


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, mechanism: str = "rdp") -> float:
    """The noise multiplier with which ``steps`` Poisson-subsampled steps at ``sample_rate`` spend <= ``epsilon``."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=mechanism))
    except ValueError as e:
        raise GanvaeError(f"privacy.epsilon (--dp-epsilon) {epsilon:g}: no noise multiplier reaches it in {steps} "
                          f"steps at sample rate {sample_rate:.3g} ({e}); raise epsilon or lower the steps") from None


def steps_within(history: list, sigma: float, q: float, epsilon: float, delta: float, mechanism: str = "rdp",
                 hint: int = 1) -> int:
    """The most further steps (sigma, q) after ``history`` that keep the epsilon spent <= ``epsilon``
    (-1 when ``history`` alone exceeds it). Epsilon grows with the steps: doubling, then bisection."""
    def ok(k: int) -> bool:
        return epsilon_for(_extend(history, sigma, q, k), delta, mechanism) <= epsilon

    if not ok(0):
        return -1
    lo, hi = 0, max(1, int(hint))
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi > 2**40:
            return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _extend(history: list, sigma: float, q: float, k: int) -> list:
    """``history`` plus ``k`` more steps, merged the way Opacus's accountants merge them."""
    h = [tuple(x) for x in history]
    if k <= 0:
        return h
    if h and h[-1][0] == sigma and h[-1][1] == q:
        h[-1] = (h[-1][0], h[-1][1], int(h[-1][2]) + k)
    else:
        h.append((sigma, q, k))
    return h


# ----------------------------------------------------------------------------- Poisson sampling

class PoissonStream:
    """Poisson-sampled batches: each call includes every image independently with probability ``sample_rate``.

    The batch size varies (mean ``sample_rate * N``) and may be 0. Draw ``k`` is a pure
    function of (seed, k), so the state is one counter and resuming repeats the draws exactly.
    Same interface as :class:`ganvae.training.batches.BatchStream` (``next``, ``state_dict``).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, sample_rate: float, seed: int,
                 device: torch.device | str = "cpu", binarize: torch.Generator | None = None):
        if not 0 < sample_rate <= 1:
            raise GanvaeError(f"sample rate {sample_rate}: expected 0 < q <= 1")
        self.images = images.to(device)
        self.labels = labels.to(device) if labels is not None else None
        self.n, self.sample_rate, self.seed = images.shape[0], float(sample_rate), int(seed)
        self.binarize = binarize
        self.draws = 0

    def _generator(self, k: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + 0x5EED) * 7_919 + k)

    def indices(self, k: int) -> torch.Tensor:
        """The images of draw ``k`` (sorted), on the images' device."""
        mask = torch.rand(self.n, generator=self._generator(k)) < self.sample_rate
        return mask.nonzero().squeeze(1).to(self.images.device)

    def next(self) -> Batch:
        idx = self.indices(self.draws)
        self.draws += 1
        x = self.images[idx].float().div_(255.0)
        if self.binarize is not None:
            x = torch.bernoulli(x, generator=self.binarize)
        y = self.labels[idx] if self.labels is not None else None
        return Batch(x, y)

    def state_dict(self) -> dict:
        return {"poisson_draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        if "poisson_draws" not in state:
            raise GanvaeError("checkpoint: its data order is not Poisson sampling (not a DP run's checkpoint)")
        self.draws = int(state["poisson_draws"])


# ----------------------------------------------------------------------------- the optimizer

def _dp_optimizer_class():
    from opacus.optimizers import DPOptimizer

    class PhaseDPOptimizer(DPOptimizer):
        """DPOptimizer whose step, after clipping and noising the private gradient, adds the engine's
        un-charged gradient (a GAN's fake half) before the wrapped optimizer steps."""

        engine: "DPTrainer"

        def step(self, closure=None):
            if closure is not None:
                with torch.enable_grad():
                    closure()
            if not self.pre_step():  # clip per-sample grads, sum, add noise, scale, accountant hook
                return None
            self.engine._after_private_gradient()
            return self.original_optimizer.step()

    return PhaseDPOptimizer


def _finite_if_empty(terms: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """An empty Poisson batch makes means of nothing (NaN); report 0 (the gradients are empty sums, 0)."""
    if n > 0:
        return terms
    return {k: torch.nan_to_num(v, nan=0.0) for k, v in terms.items()}


# ----------------------------------------------------------------------------- the trainer

class DPTrainer(Trainer):
    """The loop with one phase (D, or the VAE's) made differentially private. See the module docstring."""

    auto_channels_last = False  # Opacus's per-sample gradient hooks expect contiguous grads

    def __init__(self, model, cfg, images, labels, out, device, *args, privacy: PrivacyConfig, **kwargs):
        super().__init__(model, cfg, images, labels, out, device, *args, **kwargs)
        from opacus import GradSampleModule
        from opacus.validators import ModuleValidator

        world = getattr(self, "world", None)
        if world is not None and world.active:
            raise GanvaeError("privacy: DP training runs in one process (no torchrun); per-sample clipping "
                              "and Poisson sampling are not distributed here")
        self.privacy = p = privacy
        n = images.shape[0]
        self.sample_rate = cfg.batch_size / n
        private = [i for i, ph in enumerate(self.phases) if ph.real_data]
        if len(private) != 1:
            raise GanvaeError(f"privacy: model {model.registered_name!r} has {len(private)} phases that see "
                              "real data; DP supports exactly one")
        self.private_index = i = private[0]
        ph = self.phases[i]
        self.is_gan = isinstance(model, GAN)
        holder = nn.ModuleList([mod for mod in ph.modules if any(True for _ in mod.parameters())])
        errors = ModuleValidator.validate(holder, strict=False)
        if errors:
            raise GanvaeError(f"privacy: the {ph.name} networks cannot be privatised: "
                              f"{str(errors[0]).splitlines()[0][:200]}")
        for mod in holder.modules():  # in-place activations break Opacus's backward hooks; same numbers
            if getattr(mod, "inplace", False):
                mod.inplace = False
        try:
            self.gsm = GradSampleModule(holder)
        except NotImplementedError as e:
            raise GanvaeError(f"privacy: the {ph.name} networks cannot be privatised: {str(e)[:200]}") from None
        self.gsm.disable_hooks()  # on only for the private forward and backward
        self.private_steps_per_step = ph.repeats
        self.planned_steps = cfg.steps * ph.repeats
        # sigma: given, or calibrated on first use (a resume takes the checkpoint's instead)
        self.noise_multiplier: float | None = None if p.noise_multiplier is None else float(p.noise_multiplier)
        self.sigma_source = "given"
        self.accountant = make_accountant(p.accountant)
        self.dp_noise = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 0xD9)
        opt_cls = _dp_optimizer_class()
        dp_opt = opt_cls(self.optimizers[i], noise_multiplier=self.noise_multiplier or 0.0,
                         max_grad_norm=p.max_grad_norm, expected_batch_size=cfg.batch_size,
                         generator=self.dp_noise)
        dp_opt.engine = self
        dp_opt.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.optimizers[i] = dp_opt
        self._loss = ph.loss
        ph.loss = self._gan_d_loss if self.is_gan else self._private_loss
        binarize = getattr(self.stream, "binarize", None)
        self.stream = PoissonStream(images, labels, self.sample_rate, cfg.seed, device, binarize=binarize)
        self._pending: torch.Tensor | None = None
        self._eps_cache: dict[tuple, float] = {}
        self._budget_total: int | None = None
        self._target_steps: int | None = None

    def sigma(self) -> float:
        """The noise multiplier; with a target epsilon, calibrated for the planned private steps once."""
        if self.noise_multiplier is None:
            p = self.privacy
            self.noise_multiplier = calibrate(p.epsilon, p.delta, self.sample_rate, self.planned_steps, p.accountant)
            self.sigma_source = f"calibrated for epsilon {p.epsilon:g} over {self.planned_steps} steps"
            self.optimizers[self.private_index].noise_multiplier = self.noise_multiplier
        return self.noise_multiplier

    # -------------------------------------------------------------- the private phase
    def _private_loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """A VAE: the whole loss is private; hooks stay on until the optimizer has clipped."""
        self.gsm.enable_hooks()
        return _finite_if_empty(self._loss(batch, gen), batch.n)

    def _gan_d_loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """D's loss split: the real half with per-sample hooks (clipped, noised, charged); the fake half
        without (its gradient is added after the noise, in the optimizer step; not charged)."""
        m = self.model
        cond = getattr(m, "conditional", False)
        real = batch.x * 2 - 1
        D_real = functools.partial(m.D, y=m._labels(batch)) if cond else m.D
        self.gsm.enable_hooks()
        real_terms = _finite_if_empty(m.objective.d_real(m.critic(D_real, gen), real), batch.n)
        self.gsm.disable_hooks()
        with torch.no_grad():  # independent of the real batch: fixed count, uniform labels
            code = m.latent(self.cfg.batch_size, gen)
            fake = m.G(code)
        D_fake = functools.partial(m.D, y=m.split(code)[1]) if cond else m.D
        fake_terms = m.objective.d_fake(m.critic(D_fake, gen), fake)
        self.gsm.enable_hooks()  # for the loop's backward of the real half
        self._pending = fake_terms["loss"]
        out = {"loss": real_terms["loss"] + fake_terms["loss"].detach()}
        out.update({k: v for k, v in real_terms.items() if k != "loss"})
        out.update({k: v for k, v in fake_terms.items() if k != "loss"})
        return out

    def _after_private_gradient(self) -> None:
        """Called by the DP optimizer between noising and stepping: add the un-charged gradient."""
        self.gsm.disable_hooks()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.backward()  # accumulates into p.grad, which now holds the noised private gradient

    # -------------------------------------------------------------- epsilon and the budget
    def history(self, extra_steps: int = 0) -> list:
        return _extend(self.accountant.history, self.sigma(), self.sample_rate, extra_steps)

    def epsilon(self, extra_steps: int = 0) -> float:
        h = tuple(self.history(extra_steps))
        if h not in self._eps_cache:
            if len(self._eps_cache) > 8:
                self._eps_cache.clear()
            self._eps_cache[h] = epsilon_for(list(h), self.privacy.delta, self.privacy.accountant)
        return self._eps_cache[h]

    def private_steps(self) -> int:
        return sum(int(k) for _, _, k in self.accountant.history)

    def _over_budget_next(self) -> bool:
        """Would the next training step (its ``repeats`` private steps) spend more than the target epsilon?"""
        target = self.privacy.epsilon
        if target is None:
            return False
        if self._budget_total is None:  # the most private steps in total the target allows; once per start
            done = self.private_steps()
            more = steps_within(self.accountant.history, self.sigma(), self.sample_rate, target,
                                self.privacy.delta, self.privacy.accountant,
                                hint=max(1, self.planned_steps - done))
            self._budget_total = done + more
        return self.private_steps() + self.private_steps_per_step > self._budget_total

    def train_step(self):
        self.sigma()
        terms = super().train_step()
        if (self._target_steps is not None and self.step < self._target_steps
                and self._stop_reason is None and self._over_budget_next()):
            self._stop_reason = (f"privacy budget: epsilon {self.epsilon():.3f} spent of "
                                 f"{self.privacy.epsilon:g}, one more step would exceed it")
        return terms

    def log_extras(self) -> dict:
        return {"dp/epsilon": round(self.epsilon(), 6)}

    def run(self, target_steps: int, progress: bool = True) -> dict:
        self._target_steps = target_steps
        if self.step < target_steps and self._over_budget_next():
            raise GanvaeError(f"privacy budget: epsilon {self.epsilon():.3f} of privacy.epsilon "
                              f"{self.privacy.epsilon:g} is spent at step {self.step}; one more step would "
                              "exceed it (nothing to train)")
        try:
            return super().run(target_steps, progress)
        finally:
            self.gsm.disable_hooks()

    def summary(self) -> dict:
        """The privacy parameters and the epsilon spent, for run.json, the export and ``ganvae info``."""
        p = self.privacy
        m = self.model
        return {
            "epsilon": round(self.epsilon(), 6),
            "epsilon_target": p.epsilon,
            "delta": p.delta,
            "accountant": p.accountant,
            "noise_multiplier": self.sigma(),
            "noise_multiplier_source": self.sigma_source,
            "max_grad_norm": p.max_grad_norm,
            "sample_rate": self.sample_rate,
            "sampling": "poisson",
            "steps": self.private_steps(),
            "private": ("D (real-data half of its loss; G and the fake half are not charged)" if self.is_gan
                        else ", ".join(n for n, _ in m.named_children() if n in ("encoder", "decoder"))),
            "norm": (f"D norm model.d_norm={m.config.d_norm} (BatchNorm becomes GroupNorm under DP through this "
                     "config option; Opacus ModuleValidator checks the private nets)"
                     if hasattr(m.config, "d_norm") else None),
        }

    # -------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["privacy"] = {
            "history": [[float(s), float(q), int(k)] for s, q, k in self.accountant.history],
            "mechanism": self.privacy.accountant,
            "noise_multiplier": float(self.sigma()),
            "sigma_source": self.sigma_source,
            "sample_rate": float(self.sample_rate),
            "noise": self.dp_noise.get_state(),
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        pr = state.get("privacy")
        if pr is None:
            raise GanvaeError("checkpoint has no privacy state (it is not a DP run's checkpoint)")
        if pr["mechanism"] != self.privacy.accountant:
            raise GanvaeError(f"checkpoint accounts with {pr['mechanism']}, the config with "
                              f"{self.privacy.accountant}")
        if abs(pr["sample_rate"] - self.sample_rate) > 1e-12:
            raise GanvaeError(f"checkpoint sample rate {pr['sample_rate']:.6g} differs from this run's "
                              f"{self.sample_rate:.6g} (batch size or data changed)")
        super().load_state_dict(state)
        self.noise_multiplier = float(pr["noise_multiplier"])  # fixed at the start: the guarantee's sigma
        self.sigma_source = pr.get("sigma_source", self.sigma_source)
        self.optimizers[self.private_index].noise_multiplier = self.noise_multiplier
        self.accountant.history = [(float(s), float(q), int(k)) for s, q, k in pr["history"]]
        self.dp_noise.set_state(pr["noise"].cpu())
        self._eps_cache.clear()
        self._budget_total = None


def summary_text(s: dict[str, Any]) -> list[str]:
    """``ganvae info`` lines for a run.json ``privacy`` record."""
    target = f" of target {s['epsilon_target']:g}" if s.get("epsilon_target") is not None else ""
    return [
        f"privacy: ({s['epsilon']:.4g}{target}, {s['delta']:g})-DP, {s['accountant']} accountant",
        f"  noise multiplier {s['noise_multiplier']:.4g} ({s.get('noise_multiplier_source', '')}), clipping norm "
        f"{s['max_grad_norm']:g}, {s.get('sampling', 'poisson')} sample rate {s['sample_rate']:.4g}, "
        f"{s['steps']} private steps",
        f"  private: {s.get('private')}" + (f"; {s['norm']}" if s.get("norm") else ""),
    ]

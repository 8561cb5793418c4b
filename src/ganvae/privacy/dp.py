"""Differentially private training (DP-SGD) through Opacus, as a plugin of the training loop.

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
  (the model's D phase declares the two halves, :attr:`ganvae.models.Phase.halves`, built on
  :meth:`GANObjective.d_real` / :meth:`GANObjective.d_fake`): minimax, nonsaturating, hinge and
  least-squares are separable; WGAN-GP's penalty mixes real and fake and needs a
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

Clipping (``privacy.clipping``): Opacus's per-sample gradients, or, for private nets made only of Linear and
Embedding layers, :mod:`ganvae.privacy.ghost`'s clipped sums without per-sample gradients (``auto`` picks it where
it applies); the optimizer's noise, scaling and accounting are the same either way.

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
import warnings
from typing import Any

import torch
from torch import nn

from ..errors import GanvaeError
from ..models import Batch
from ..training.plugins import TrainerPlugin
from .accounting import calibrate, epsilon_for, extend_history, make_accountant, steps_within
from .config import PrivacyConfig
from .ghost import GhostClipper
from .ghost import unsupported as ghost_unsupported

# Opacus hooks the first layer too, whose input (the images) needs no gradient; harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect "
                                          "to module outputs since no inputs require gradients")


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
    from opacus.optimizers.optimizer import _generate_noise

    class PhaseDPOptimizer(DPOptimizer):
        """DPOptimizer whose step, after clipping and noising the private gradient, adds the engine's
        un-charged gradient (a GAN's fake half) before the wrapped optimizer steps."""

        engine: "DPPlugin"

        def step(self, closure=None):
            if closure is not None:
                with torch.enable_grad():
                    closure()
            if not self.pre_step():  # clip per-sample grads, sum, add noise, scale, accountant hook
                return None
            self.engine._after_private_gradient()
            return self.original_optimizer.step()

        def pre_step(self, closure=None):
            """With ghost clipping the clipped sum comes from the engine's recorder, not from per-sample
            gradients; the noise (same draws as Opacus's ``add_noise``), the scaling and the accounting follow."""
            ghost = self.engine.ghost
            if ghost is None:
                return super().pre_step(closure)
            for p, s in zip(self.params, ghost.clipped_sum(self.params)):
                noise = _generate_noise(std=self.noise_multiplier * self.max_grad_norm, reference=s,
                                        generator=self.generator, secure_mode=self.secure_mode)
                p.grad = ((s + noise) / self.expected_batch_size).view_as(p)
            self.engine.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.engine.sample_rate)
            self._is_last_step_skipped = False
            return True

    return PhaseDPOptimizer


def _finite_if_empty(terms: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """An empty Poisson batch makes means of nothing (NaN); report 0 (the gradients are empty sums, 0)."""
    if n > 0:
        return terms
    return {k: torch.nan_to_num(v, nan=0.0) for k, v in terms.items()}


# ----------------------------------------------------------------------------- the plugin

class DPPlugin(TrainerPlugin):
    """Makes the one phase that sees real data differentially private. See the module docstring."""

    name = "privacy"          # checkpoint key, run.json key
    channels_last_ok = False  # Opacus's per-sample gradient hooks expect contiguous grads

    def __init__(self, privacy: PrivacyConfig):
        self.privacy = privacy
        self.noise_multiplier: float | None = None if privacy.noise_multiplier is None \
            else float(privacy.noise_multiplier)  # sigma: given, or calibrated on first use (resume: checkpoint's)
        self.sigma_source = "given"
        self.accountant = make_accountant(privacy.accountant)
        self._pending: torch.Tensor | None = None          # the generated half's loss, added unclipped
        self._pending_grads: list[torch.Tensor] | None = None  # or its clipped per-sample sum (clip_fakes)
        self._eps_cache: dict[tuple, float] = {}
        self._budget_total: int | None = None
        self.ghost: GhostClipper | None = None  # set when the private nets are clipped without per-sample grads

    # -------------------------------------------------------------- construction
    def attach(self, trainer) -> None:
        if trainer.world.active:
            raise GanvaeError("privacy: DP training runs in one process (no torchrun); per-sample clipping "
                              "and Poisson sampling are not distributed here")
        self.model, self.cfg, self.device = trainer.model, trainer.cfg, trainer.device
        self.sample_rate = trainer.cfg.batch_size / trainer.n_train
        self.dp_noise = torch.Generator(device=trainer.device).manual_seed(trainer.cfg.seed * 1_000_003 + 0xD9)

    def wrap_phases(self, phases, optimizers):
        from opacus import GradSampleModule
        from opacus.validators import ModuleValidator

        private = [i for i, ph in enumerate(phases) if ph.real_data]
        if len(private) != 1:
            raise GanvaeError(f"privacy: model {self.model.registered_name!r} has {len(private)} phases that see "
                              "real data; DP supports exactly one")
        self.private_index = i = private[0]
        ph = phases[i]
        holder = nn.ModuleList([mod for mod in ph.modules if any(True for _ in mod.parameters())])
        errors = ModuleValidator.validate(holder, strict=False)
        if errors:
            raise GanvaeError(f"privacy: the {ph.name} networks cannot be privatised: "
                              f"{str(errors[0]).splitlines()[0][:200]}")
        for mod in holder.modules():  # in-place activations break Opacus's backward hooks; same numbers
            if getattr(mod, "inplace", False):
                mod.inplace = False
        mode = self.privacy.clipping
        if mode == "ghost" or (mode == "auto" and ghost_unsupported(holder) is None):
            self.gsm = self.ghost = GhostClipper(holder, self.privacy.max_grad_norm)
        else:
            try:
                self.gsm = GradSampleModule(holder)
            except NotImplementedError as e:
                raise GanvaeError(f"privacy: the {ph.name} networks cannot be privatised: {str(e)[:200]}") from None
        self.gsm.disable_hooks()  # on only for the private forward and backward
        self.private_steps_per_step = ph.repeats
        self.planned_steps = self.cfg.steps * ph.repeats
        self.private_modules = [n for n, m in self.model.named_children() if any(m is x for x in holder)]
        self.halves = ph.halves
        dp_opt = _dp_optimizer_class()(optimizers[i], noise_multiplier=self.noise_multiplier or 0.0,
                                       max_grad_norm=self.privacy.max_grad_norm,
                                       expected_batch_size=self.cfg.batch_size, generator=self.dp_noise)
        dp_opt.engine = self
        dp_opt.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.optimizer = dp_opt
        self._loss = ph.loss
        phases, optimizers = list(phases), list(optimizers)
        phases[i] = dataclasses.replace(ph, loss=self._split_loss if ph.halves else self._private_loss)
        optimizers[i] = dp_opt
        return phases, optimizers

    def wrap_stream(self, stream):
        return PoissonStream(stream.images, stream.labels, self.sample_rate, self.cfg.seed, self.device,
                             binarize=stream.binarize)

    def sigma(self) -> float:
        """The noise multiplier; with a target epsilon, calibrated for the planned private steps once."""
        if self.noise_multiplier is None:
            p = self.privacy
            self.noise_multiplier = calibrate(p.epsilon, p.delta, self.sample_rate, self.planned_steps, p.accountant)
            self.sigma_source = f"calibrated for epsilon {p.epsilon:g} over {self.planned_steps} steps"
            self.optimizer.noise_multiplier = self.noise_multiplier
        return self.noise_multiplier

    # -------------------------------------------------------------- the private phase
    def _private_loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The whole loss is private (a VAE); hooks stay on until the optimizer has clipped."""
        self.gsm.enable_hooks()
        return _finite_if_empty(self._loss(batch, gen), batch.n)

    def _split_loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The real half with per-sample hooks (clipped, noised, charged); the generated half's gradient is
        added after the noise, in the optimizer step, not charged: as it is, or (``privacy.clip_fakes``) clipped
        per sample, computed first by :meth:`_clipped_fake_half`."""
        real_half, fake_half = self.halves
        if self.privacy.clip_fakes:
            fake_terms = self._clipped_fake_half(fake_half, gen)
            self.gsm.enable_hooks()  # on until the optimizer has clipped the real half
            real_terms = _finite_if_empty(real_half(batch, gen), batch.n)
        else:
            self.gsm.enable_hooks()
            real_terms = _finite_if_empty(real_half(batch, gen), batch.n)
            self.gsm.disable_hooks()
            fake_terms = fake_half(self.cfg.batch_size, gen)  # a fixed count: independent of the real batch
            self.gsm.enable_hooks()  # for the loop's backward of the real half
            self._pending = fake_terms["loss"]
        out = {"loss": real_terms["loss"] + fake_terms["loss"].detach()}
        out.update({k: v for k, v in real_terms.items() if k != "loss"})
        out.update({k: v for k, v in fake_terms.items() if k != "loss"})
        return out

    def _clipped_fake_half(self, fake_half, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``privacy.clip_fakes``: the generated half's per-sample gradients, each clipped to C like the real
        ones, summed and divided by the expected batch size (as Bie et al.'s DP-GAN does; without it the
        generated half's gradient, often 100x larger than C, drowns the real half's). Kept for
        :meth:`_after_private_gradient`. No noise and no charge: the generated images do not depend on the
        private data. Runs before the real half, so Opacus's hooks see one batch at a time."""
        params = self.optimizer.params
        saved = [p.grad for p in params]
        for p in params:  # the last step's real per-sample gradients are still there: Opacus would append to them
            p.grad_sample = None
        self.gsm.enable_hooks()
        terms = fake_half(self.cfg.batch_size, gen)
        terms["loss"].backward()
        self.gsm.disable_hooks()
        if self.ghost is not None:
            sums = self.ghost.clipped_sum(params)
        else:
            samples = [torch.cat(p.grad_sample) if isinstance(p.grad_sample, list) else p.grad_sample
                       for p in params]
            if any(len(g) != self.cfg.batch_size for g in samples):  # only this pass's generated images
                raise RuntimeError("privacy.clip_fakes: per-sample gradients of other images in the generated half")
            norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=1) for g in samples], dim=1).norm(2, dim=1)
            factor = (self.privacy.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
            sums = [torch.einsum("i,i...", factor.to(g.dtype), g) for g in samples]
        self._pending_grads = [s / self.cfg.batch_size for s in sums]
        for p, g in zip(params, saved):
            p.grad, p.grad_sample = g, None
        return {k: v.detach() for k, v in terms.items()}

    def _after_private_gradient(self) -> None:
        """Called by the DP optimizer between noising and stepping: add the un-charged gradient."""
        self.gsm.disable_hooks()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.backward()  # accumulates into p.grad, which now holds the noised private gradient
        grads, self._pending_grads = self._pending_grads, None
        if grads is not None:
            for p, g in zip(self.optimizer.params, grads):
                p.grad = p.grad + g.view_as(p)

    # -------------------------------------------------------------- epsilon and the budget
    def history(self, extra_steps: int = 0) -> list:
        return extend_history(self.accountant.history, self.sigma(), self.sample_rate, extra_steps)

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

    # -------------------------------------------------------------- loop hooks
    def before_step(self, trainer) -> None:
        self.sigma()

    def after_step(self, trainer) -> str | None:
        if (trainer.target_steps is not None and trainer.step < trainer.target_steps
                and trainer.stop_reason is None and self._over_budget_next()):
            return (f"privacy budget: epsilon {self.epsilon():.3f} spent of {self.privacy.epsilon:g}, "
                    "one more step would exceed it")
        return None

    def before_run(self, trainer, target_steps: int) -> None:
        if trainer.step < target_steps and self._over_budget_next():
            raise GanvaeError(f"privacy budget: epsilon {self.epsilon():.3f} of privacy.epsilon "
                              f"{self.privacy.epsilon:g} is spent at step {trainer.step}; one more step would "
                              "exceed it (nothing to train)")

    def after_run(self, trainer) -> None:
        self.gsm.disable_hooks()

    def log_values(self, trainer) -> dict:
        return {"dp/epsilon": round(self.epsilon(), 6)}

    def summary(self) -> dict:
        """The privacy parameters and the epsilon spent, for run.json, the export and ``ganvae info``."""
        p = self.privacy
        d_norm = getattr(self.model.config, "d_norm", None)
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
            "clipping": "ghost (no per-sample gradients)" if self.ghost is not None else "per-sample (Opacus hooks)",
            "steps": self.private_steps(),
            "private": (f"{', '.join(self.private_modules)} (real-data half of its loss; the generated half and "
                        "the other networks are not charged)" if self.halves else ", ".join(self.private_modules)),
            **({"generated_half": "clipped per sample to max_grad_norm (not noised, not charged)"
                if p.clip_fakes else "added unclipped (not noised, not charged)",
                "d_steps_per_g_step": self.private_steps_per_step} if self.halves else {}),
            "norm": (f"D norm model.d_norm={d_norm} (BatchNorm becomes GroupNorm under DP through this "
                     "config option; Opacus ModuleValidator checks the private nets)" if d_norm else None),
        }

    # -------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        return {
            "history": [[float(s), float(q), int(k)] for s, q, k in self.accountant.history],
            "mechanism": self.privacy.accountant,
            "noise_multiplier": float(self.sigma()),
            "sigma_source": self.sigma_source,
            "sample_rate": float(self.sample_rate),
            "noise": self.dp_noise.get_state(),
        }

    def load_state_dict(self, pr: dict | None) -> None:
        if pr is None:
            raise GanvaeError("checkpoint has no privacy state (it is not a DP run's checkpoint)")
        if pr["mechanism"] != self.privacy.accountant:
            raise GanvaeError(f"checkpoint accounts with {pr['mechanism']}, the config with "
                              f"{self.privacy.accountant}")
        if abs(pr["sample_rate"] - self.sample_rate) > 1e-12:
            raise GanvaeError(f"checkpoint sample rate {pr['sample_rate']:.6g} differs from this run's "
                              f"{self.sample_rate:.6g} (batch size or data changed)")
        self.noise_multiplier = float(pr["noise_multiplier"])  # fixed at the start: the guarantee's sigma
        self.sigma_source = pr.get("sigma_source", self.sigma_source)
        self.optimizer.noise_multiplier = self.noise_multiplier
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
        f"{s['steps']} private steps" + (f", {s['clipping'].split(' (')[0]} clipping" if s.get("clipping") else ""),
        f"  private: {s.get('private')}" + (f"; {s['norm']}" if s.get("norm") else ""),
    ] + ([f"  {s['d_steps_per_g_step']} D steps per G step; generated half {s.get('generated_half')}"]
         if s.get("d_steps_per_g_step") else [])

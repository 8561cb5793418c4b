"""The health alarms as a loop plugin: a cheap probe every log line, the monitor, warnings and records.

Every ``train.log_every`` steps (on that grid only, so a resume reads at the same steps as a straight run)
the probe draws ``probe_n`` samples from the live generator with a fixed latent seed and, for models with a
discriminator, runs D on them, on fixed training reals and on fixed held-out reals (the test split), all
in eval mode without gradients: no RNG stream, weight, buffer or BatchNorm statistic of training changes.
Its values join the log line (``health/...``); with the periodic evaluation's scores they go to the
:class:`~ganvae.training.health.HealthMonitor`. An alarm is a ``ganvae: warning:`` line (a
:class:`HealthWarning`), a ``metrics.jsonl`` record ``{"step", "alarm", "began", "message", "evidence"}``
(and TensorBoard text), and a row of the report. Under differential privacy the probe reads no training
image (no r_t, no overfitting check; diversity against held-out reals): its values are logged outside the
guarantee.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..util.modes import eval_mode
from .health import HealthConfig, HealthMonitor
from .plugins import TrainerPlugin

PROBE_SEED = 4242  # the probe's fixed latent codes and image subsets (never the training streams)


class HealthWarning(UserWarning):
    """A training-health alarm (collapse, D overfitting, divergence); the run goes on."""


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean Euclidean distance between the ``N`` rows of ``x`` (flattened), over the N(N-1) ordered pairs."""
    x = x.flatten(1).double()
    n = x.shape[0]
    return float(torch.cdist(x, x).sum() / (n * (n - 1))) if n > 1 else 0.0


def d_stats(d_train: torch.Tensor | None, d_heldout: torch.Tensor | None, d_fake: torch.Tensor) -> dict:
    """The probe's D statistics from D's logits (B,) on training reals, held-out reals and samples.

    ``r_t = E[sign D(x)]`` over training reals (Karras et al. 2020), ``r_heldout`` the same over held-out reals;
    ``d_loss = E softplus(-D(real)) + E softplus(D(fake))`` and ``g_loss = E softplus(-D(fake))``: the logistic
    losses on the probe (reals: the training ones, else the held-out ones). They read D's outputs as logits, as
    the minimax, non-saturating, hinge and rpgan objectives train them; a least-squares or WGAN critic's outputs
    are not logits, so for those the probe-loss divergence check seldom applies (the FID one does).
    """
    out = {}
    if d_train is not None:
        out["health/r_t"] = float(torch.sign(d_train).mean())
    if d_heldout is not None:
        out["health/r_heldout"] = float(torch.sign(d_heldout).mean())
    real = d_train if d_train is not None else d_heldout
    if real is not None:
        out["health/d_loss"] = float(F.softplus(-real).mean() + F.softplus(d_fake).mean())
    out["health/g_loss"] = float(F.softplus(-d_fake).mean())
    return out


def _subset(images: torch.Tensor | None, labels: torch.Tensor | None, n: int, seed: int):
    """A fixed subset of at most ``n`` images (float in [0, 1]) and their labels; (None, None) without images."""
    if images is None or images.shape[0] < 2:
        return None, None
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n].sort().values
    x = images[idx].float() / 255 if images.dtype == torch.uint8 else images[idx].float()
    y = labels[idx] if labels is not None and labels.dim() == 1 else None
    return x, y


class HealthPlugin(TrainerPlugin):
    name = "health"

    def __init__(self, cfg: HealthConfig, train_images, train_labels=None, heldout_images=None,
                 heldout_labels=None, private: bool = False):
        self.cfg = cfg
        self.monitor = HealthMonitor(cfg)
        n = cfg.probe_n
        self.train = (None, None) if private else _subset(train_images, train_labels, n, PROBE_SEED)
        self.heldout = _subset(heldout_images, heldout_labels, n, PROBE_SEED + 1)
        real = self.train[0] if self.train[0] is not None else self.heldout[0]
        self.real_spread = mean_pairwise_distance(real) if real is not None else 0.0
        self._images_before = 0

    def before_step(self, trainer) -> None:
        self._images_before = trainer.images_seen

    # ------------------------------------------------------------------ the probe
    @torch.no_grad()
    def probe(self, trainer) -> dict[str, float]:
        model, dev = trainer.model, trainer.device
        n = self.cfg.probe_n
        labels = (torch.arange(n, device=dev) % model.config.num_classes) if model.conditional else None
        out: dict[str, float] = {}
        with eval_mode(model):
            fake = model.sample(n, seed=PROBE_SEED, net=model.generator_net(), labels=labels)
            if self.real_spread > 0:
                out["health/diversity"] = mean_pairwise_distance(fake) / self.real_spread
            if model.has_discriminator:
                out.update(d_stats(self._d(model, self.train, dev), self._d(model, self.heldout, dev),
                                   model.discriminate(fake, labels).float()))
        return {k: round(v, 6) for k, v in out.items()}

    @staticmethod
    def _d(model, side, dev) -> torch.Tensor | None:
        x, y = side
        if x is None or (model.conditional and y is None):
            return None
        return model.discriminate(x.to(dev), None if y is None else y.to(dev)).float()

    def log_values(self, trainer) -> dict[str, float]:
        if not self.cfg.enabled or not trainer.world.is_main or trainer.step % trainer.cfg.log_every:
            return {}  # only on the log_every grid: a line at a stop or resume step reads nothing
        return self.probe(trainer)

    # ------------------------------------------------------------------ readings and alarms
    def after_record(self, trainer, rec: dict) -> list[dict]:
        reading = self._reading(trainer, rec)
        if reading is None:
            return []
        alarms = self.monitor.observe(reading)
        for a in alarms:
            warnings.warn(HealthWarning(f"health alarm at step {a.step}: {a.message}"))
        return [a.record(trainer.images_seen) for a in alarms]

    def _reading(self, trainer, rec: dict) -> dict | None:
        values = {k: v for k, v in rec.items() if k.startswith("health/")}
        if not values:
            evals = {k: v for k, v in rec.items() if k.startswith("eval/")}
            every = (trainer.cfg.eval_every_kimg or 0) * 1000
            # only evaluations on the eval_every grid (not the extra one at a stop): resumes judge the same readings
            if not evals or not every or trainer.images_seen // every <= self._images_before // every:
                return None
            values = evals
        return {"step": rec["step"], "images_seen": rec.get("images_seen", trainer.images_seen), **values}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        self.monitor.load_state_dict(state)


def health_plugins(cfg: HealthConfig, train_images, train_labels=None, heldout_images=None, heldout_labels=None,
                   private: bool = False) -> list[TrainerPlugin]:
    """The health plugin a run's ``train.health`` asks for (none when it is off)."""
    if not cfg.enabled:
        return []
    return [HealthPlugin(cfg, train_images, train_labels, heldout_images, heldout_labels, private)]

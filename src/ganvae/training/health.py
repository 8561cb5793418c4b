"""Training-health alarms: mode collapse, discriminator overfitting and divergence, from a run's readings.

A :class:`HealthMonitor` takes readings one at a time, each a dict with ``step``, ``images_seen`` and
values named as in ``metrics.jsonl``:

- the probe's, every ``train.log_every`` steps (:mod:`ganvae.training.health_plugin`): ``health/diversity``
  (mean pairwise pixel distance of a fixed batch of samples over the same of real images), and for
  models with a discriminator ``health/r_t`` (E[sign D(x)] on fixed training reals, Karras et al. 2020),
  ``health/r_heldout`` (the same on held-out reals), ``health/d_loss`` and ``health/g_loss`` (the logistic
  losses of D's logits on the probe's reals and samples);
- the periodic evaluation's (``train.eval_every_kimg``): ``eval/recall``, ``eval/coverage``,
  ``eval/modes_covered``, ``eval/diversity`` (the same spread in feature space), ``eval/fid``.

It returns the :class:`Alarm` s that begin with that reading. Each check needs its condition on
``patience`` consecutive readings (``eval_patience`` for evaluations); the alarm's ``began`` is the step
of the first of them. An alarm fires once; its kind is re-armed only when none of its conditions holds any
more. Readings before ``warmup_kimg`` are not judged (early training swings by design). The monitor's
state is small and JSON-able: the loop keeps it in the checkpoint, so a resume neither forgets nor
repeats an alarm.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ..config import from_dict
from ..errors import GanvaeError

KINDS = ("collapse", "d_overfit", "divergence")
TITLES = {"collapse": "mode collapse", "d_overfit": "discriminator overfitting", "divergence": "divergence"}


@dataclass
class HealthConfig:
    """``train.health``: ``true``/``false`` (on or off with these defaults) or a mapping of these fields."""

    enabled: bool = True          # watch the run; alarms never change training
    probe_n: int = 128            # real training, held-out and generated images in each probe (every log line)
    warmup_kimg: float = 10.0     # readings before this many thousand images seen are logged, not judged
    patience: int = 3             # consecutive probes a probe condition must hold before it alarms
    eval_patience: int = 2        # consecutive periodic evaluations an evaluation condition must hold
    collapse_drop: float = 0.3    # collapse: recall, coverage, modes or diversity below (1 - this) x its best so far
    diversity_min: float = 0.3    # collapse (diversity): also below this share of the real images' spread
    overfit_rt: float = 0.6       # D overfitting: r_t (training reals) at least this (ADA's target: 0.6) ...
    overfit_gap: float = 0.5      # ... and r_t minus the same on held-out reals at least this
    diverge_d_loss: float = 0.1   # divergence: D's probe loss at most this ...
    diverge_g_rise: float = 2.0   # ... while G's probe loss is at least this many times its recent median
    diverge_fid_rise: float = 1.0  # divergence: periodic FID at least (1 + this) x its best so far

    def validate(self) -> None:
        for name in ("probe_n", "patience", "eval_patience"):
            if getattr(self, name) < (2 if name == "probe_n" else 1):
                raise GanvaeError(f"train.health.{name}: expected >= {2 if name == 'probe_n' else 1}, "
                                  f"got {getattr(self, name)}")
        if self.warmup_kimg < 0:
            raise GanvaeError(f"train.health.warmup_kimg: expected >= 0, got {self.warmup_kimg}")
        if not 0 < self.collapse_drop < 1:
            raise GanvaeError(f"train.health.collapse_drop: expected a share in (0, 1), got {self.collapse_drop}")
        if self.diverge_g_rise <= 0 or self.diverge_fid_rise <= 0:
            raise GanvaeError("train.health.diverge_g_rise and diverge_fid_rise: expected > 0, got "
                              f"{self.diverge_g_rise} and {self.diverge_fid_rise}")


def health_config(raw) -> HealthConfig:
    """``train.health`` as written: None (defaults), true/false, or a mapping of :class:`HealthConfig` fields."""
    if raw is None:
        return HealthConfig()
    if isinstance(raw, bool) or (isinstance(raw, str) and raw.lower() in ("true", "false", "on", "off")):
        return HealthConfig(enabled=raw if isinstance(raw, bool) else raw.lower() in ("true", "on"))
    if isinstance(raw, HealthConfig):
        return raw
    if not isinstance(raw, dict):
        raise GanvaeError(f"train.health: expected true, false or a mapping of its fields, got {raw!r}")
    return from_dict(HealthConfig, raw, "train.health")


@dataclass
class Alarm:
    kind: str            # collapse, d_overfit or divergence
    began: int           # the step of the first reading on which the condition held
    step: int            # the step it was found (the reading that completed the patience)
    message: str         # one line, for the warning, the report and `ganvae info`
    evidence: dict = field(default_factory=dict)  # the values the decision used

    def record(self, images_seen: int) -> dict:
        """The ``metrics.jsonl`` line."""
        return {"step": self.step, "images_seen": images_seen, "alarm": self.kind, "began": self.began,
                "message": self.message, "evidence": self.evidence}


def _g(v: float) -> str:
    return f"{v:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------------- checks
class Check:
    """One condition over one or two series of readings, with its streak; subclasses define ``test``."""

    kind = ""
    keys: tuple[str, ...] = ()
    on_eval = False  # evaluation readings (eval_patience) rather than probes (patience)

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self.began: int | None = None  # the first step of the current streak
        self.n = 0                     # readings in the streak
        self.evidence: dict = {}

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.keys[0]}"

    @property
    def patience(self) -> int:
        return self.cfg.eval_patience if self.on_eval else self.cfg.patience

    @property
    def active(self) -> bool:
        return self.began is not None and self.n >= self.patience

    def reads(self, reading: dict) -> bool:
        return all(isinstance(reading.get(k), (int, float)) and math.isfinite(reading[k]) for k in self.keys)

    def update(self, step: int, values: list[float]) -> None:
        evidence = self.test(step, values)
        if evidence is None:
            self.began, self.n = None, 0
            return
        if self.began is None:
            self.began = step
        self.n += 1
        self.evidence = {**evidence, "readings": self.n}

    def test(self, step: int, values: list[float]) -> dict | None:
        """The evidence when the condition holds at this reading, else None (and update running state)."""
        raise NotImplementedError

    def message(self) -> str:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"began": self.began, "n": self.n, "evidence": self.evidence}

    def load_state_dict(self, s: dict) -> None:
        self.began, self.n, self.evidence = s.get("began"), int(s.get("n", 0)), dict(s.get("evidence") or {})


class Best(Check):
    """A check of one value against its best so far (kept in the state with the step it was reached)."""

    def __init__(self, cfg, key: str):
        super().__init__(cfg)
        self.keys = (key,)
        self.best: float | None = None
        self.best_step: int | None = None

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "best_step": self.best_step}

    def load_state_dict(self, s):
        super().load_state_dict(s)
        self.best, self.best_step = s.get("best"), s.get("best_step")


class Drop(Best):
    """A higher-is-better value falls below (1 - collapse_drop) x its best so far (its best at least ``floor``);
    ``ceiling``: and below this absolute value (diversity: a share of the real images' spread)."""

    kind = "collapse"

    def __init__(self, cfg, key: str, floor: float, ceiling: float | None = None, on_eval: bool = True):
        super().__init__(cfg, key)
        self.floor, self.ceiling, self.on_eval = floor, ceiling, on_eval

    def test(self, step, values):
        v, best, keep = values[0], self.best, 1 - self.cfg.collapse_drop
        if (best is not None and best >= self.floor and v < keep * best
                and (self.ceiling is None or v < self.ceiling)):
            return {"key": self.keys[0], "value": v, "best": best, "best_step": self.best_step,
                    "threshold": keep * best}
        if best is None or v > best:
            self.best, self.best_step = v, step
        return None

    def message(self):
        e = self.evidence
        return (f"{e['key']} fell to {_g(e['value'])}, below {1 - self.cfg.collapse_drop:.0%} of its best "
                f"{_g(e['best'])} (step {e['best_step']}), for "
                f"{_count(e['readings'], 'evaluation' if self.on_eval else 'probe')}"
                + ("; the samples vary less than the real images (check the sample grids)"
                   if "diversity" in e["key"] else ""))


class Overfit(Check):
    """D calls training reals real (r_t >= overfit_rt) but held-out reals much less so (gap >= overfit_gap)."""

    kind = "d_overfit"
    keys = ("health/r_t", "health/r_heldout")

    def test(self, step, values):
        rt, rh = values
        if rt >= self.cfg.overfit_rt and rt - rh >= self.cfg.overfit_gap:
            return {"r_t": rt, "r_heldout": rh, "gap": rt - rh}
        return None

    def message(self):
        e = self.evidence
        return (f"D's r_t on training reals is {_g(e['r_t'])} but {_g(e['r_heldout'])} on held-out reals "
                f"(gap {_g(e['gap'])} >= {_g(self.cfg.overfit_gap)}) for {_count(e['readings'], 'probe')}: "
                "D memorises the training images; more data or augmentation (model.augment) helps")


class Diverge(Check):
    """D wins outright (probe loss <= diverge_d_loss) while G's probe loss climbs to diverge_g_rise x the median
    of its last ``WINDOW`` readings outside such streaks."""

    kind = "divergence"
    keys = ("health/d_loss", "health/g_loss")
    WINDOW, MIN_REF = 20, 3

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ref: list[float] = []  # recent G probe losses outside a streak

    def test(self, step, values):
        d, g = values
        if len(self.ref) >= self.MIN_REF and d <= self.cfg.diverge_d_loss:
            med = statistics.median(self.ref)
            if g >= self.cfg.diverge_g_rise * med:
                return {"d_loss": d, "g_loss": g, "g_median": med}
        self.ref = (self.ref + [g])[-self.WINDOW:]
        return None

    def message(self):
        e = self.evidence
        return (f"D's probe loss is {_g(e['d_loss'])} while G's rose to {_g(e['g_loss'])} "
                f"({e['g_loss'] / max(e['g_median'], 1e-12):.1f}x its recent median {_g(e['g_median'])}) for "
                f"{_count(e['readings'], 'probe')}: D wins outright; lower the learning rates or resume from an "
                "earlier checkpoint")

    def state_dict(self):
        return {**super().state_dict(), "ref": list(self.ref)}

    def load_state_dict(self, s):
        super().load_state_dict(s)
        self.ref = [float(v) for v in s.get("ref", [])]


class Rise(Best):
    """A lower-is-better score (FID) rises to (1 + diverge_fid_rise) x its best so far."""

    kind = "divergence"
    on_eval = True

    def test(self, step, values):
        v, best = values[0], self.best
        if best is not None and best > 0 and v >= (1 + self.cfg.diverge_fid_rise) * best:
            return {"key": self.keys[0], "value": v, "best": best, "best_step": self.best_step}
        if best is None or v < best:
            self.best, self.best_step = v, step
        return None

    def message(self):
        e = self.evidence
        return (f"{e['key']} rose to {_g(e['value'])}, {e['value'] / e['best']:.1f}x its best {_g(e['best'])} "
                f"(step {e['best_step']}), for {_count(e['readings'], 'evaluation')}; --keep-best keeps the best "
                "generator so far")


def checks(cfg: HealthConfig) -> list[Check]:
    """Every check, in the order their alarms are reported when several begin at once."""
    return [Drop(cfg, "eval/recall", floor=0.1), Drop(cfg, "eval/coverage", floor=0.1),
            Drop(cfg, "eval/modes_covered", floor=2), Drop(cfg, "eval/diversity", 0.1, cfg.diversity_min),
            Drop(cfg, "health/diversity", 0.1, cfg.diversity_min, on_eval=False),
            Overfit(cfg), Diverge(cfg), Rise(cfg, "eval/fid")]


# ---------------------------------------------------------------------------------------------- the monitor
class HealthMonitor:
    """Feeds readings to every check; an alarm begins when a kind none of whose checks was active gets one."""

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self.checks = checks(cfg)
        self.active: dict[str, int] = {}  # kind -> the step its current alarm began
        self.fired: list[dict] = []       # every alarm so far: {kind, began, step, message}

    def observe(self, reading: dict) -> list[Alarm]:
        """Judge one reading (``step``, ``images_seen`` and values); return the alarms that begin with it."""
        if reading.get("images_seen", 0) < self.cfg.warmup_kimg * 1000:
            return []
        step = int(reading["step"])
        updated = [c for c in self.checks if c.reads(reading)]
        for c in updated:
            c.update(step, [float(reading[k]) for k in c.keys])
        alarms = []
        for kind in KINDS:
            on = [c for c in self.checks if c.kind == kind and c.active]
            if not on:
                self.active.pop(kind, None)  # re-armed: a later episode is a new alarm
            elif kind not in self.active:
                first = min(on, key=lambda c: c.began)
                msg = f"{TITLES[kind]} since step {first.began}: {first.message()}"
                alarms.append(Alarm(kind, int(first.began), step, msg, dict(first.evidence)))
                self.active[kind] = int(first.began)
                self.fired.append({"kind": kind, "began": int(first.began), "step": step, "message": msg})
        return alarms

    def state_dict(self) -> dict:
        return {"checks": {c.id: c.state_dict() for c in self.checks}, "active": dict(self.active),
                "fired": [dict(a) for a in self.fired]}

    def load_state_dict(self, state: dict | None) -> None:
        """``state`` from :meth:`state_dict`; None (a checkpoint from before health alarms): start afresh."""
        if not state:
            return
        for c in self.checks:
            if c.id in state.get("checks", {}):
                c.load_state_dict(state["checks"][c.id])
        self.active = {k: int(v) for k, v in state.get("active", {}).items()}
        self.fired = [dict(a) for a in state.get("fired", [])]

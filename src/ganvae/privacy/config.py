"""The ``privacy:`` section of a run's config, and what a private run must change or refuse before building."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import GanvaeError

ACCOUNTANTS = ("rdp", "prv")
CLIPPINGS = ("auto", "ghost", "per-sample")
DEFAULT_DELTA = 1e-5
MAX_EPSILON = 1000.0  # a target above this protects nothing; calibrating for it takes unbounded time


@dataclass
class PrivacyConfig:
    """The ``privacy:`` section. DP training is on when ``epsilon`` or ``noise_multiplier`` is set."""

    epsilon: float | None = None           # target epsilon: sigma is calibrated so the planned steps spend at most this
    delta: float | None = None             # target delta; null: 1e-5 (must be < 1/N, N = training images)
    max_grad_norm: float = 1.0             # per-sample gradient clipping norm C
    noise_multiplier: float | None = None  # sigma (noise std = sigma * C), instead of epsilon; epsilon is then reported
    accountant: str = "rdp"                # rdp (Renyi DP, the moments accountant) or prv (tighter, slower)
    clip_fakes: bool = False               # GANs: clip each generated image's D gradient to max_grad_norm too
                                           # (uncharged, no noise; Bie et al. 2023); false: added unclipped
    clipping: str = "auto"                 # per-sample gradient clipping: ghost (no per-sample gradients; private
                                           # nets of Linear/Embedding layers only), per-sample (Opacus's hooks),
                                           # auto: ghost where it applies; the same sums either way

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None

    def validate(self) -> None:
        if self.epsilon is not None and not (0 < self.epsilon < math.inf):
            raise GanvaeError(f"privacy.epsilon (--dp-epsilon): expected a finite number > 0, got {self.epsilon:g} "
                              "(leave it out for non-private training)")
        if self.epsilon is not None and self.epsilon > MAX_EPSILON:
            raise GanvaeError(f"privacy.epsilon (--dp-epsilon) {self.epsilon:g}: at most {MAX_EPSILON:g} (beyond "
                              "that the guarantee means nothing and the noise calibration does not end); leave "
                              "it out for non-private training")
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
        if self.clipping not in CLIPPINGS:
            raise GanvaeError(f"privacy.clipping {self.clipping!r}: expected one of {', '.join(CLIPPINGS)}")
        if not self.enabled and self.delta is not None:
            raise GanvaeError("privacy.delta (--dp-delta) needs privacy.epsilon (--dp-epsilon) or "
                              "privacy.noise_multiplier (--dp-noise-multiplier)")


def prepare(privacy: PrivacyConfig, model_class, model_cfg, train_cfg, n_train: int, name: str = ""):
    """Refuse what cannot be private; let the model adapt its config (D's BatchNorm -> GroupNorm); fill delta.

    ``model_class``: the registered model's class (its ``private_config`` decides what the model needs),
    ``name`` its registered name (for messages);
    ``n_train``: training images. Returns ``(privacy, model_cfg)``.
    """
    if not privacy.enabled:
        return privacy, model_cfg
    model_cfg = model_class.private_config(model_cfg, name)
    if train_cfg.precision != "fp32":
        raise GanvaeError(f"privacy: train.precision={train_cfg.precision} is not supported with DP; use fp32")
    if train_cfg.compile:
        raise GanvaeError("privacy: train.compile=true is not supported with DP (Opacus's per-sample hooks)")
    if privacy.delta is None:
        privacy = dataclasses.replace(privacy, delta=DEFAULT_DELTA)
    if privacy.delta >= 1 / n_train:
        raise GanvaeError(f"privacy.delta (--dp-delta) {privacy.delta:g}: expected < 1/N = {1 / n_train:.3g} "
                          f"(N = {n_train} training images)")
    if train_cfg.batch_size >= n_train and not getattr(model_class, "needs_release", False):
        raise GanvaeError(f"privacy: train.batch_size {train_cfg.batch_size} must be below the {n_train} training "
                          "images (the sample rate is batch_size / N)")
    return privacy, model_cfg

"""The one release of a ``dp-merf`` model: its class-summed random-feature embedding, noised once.

Models with ``needs_release`` (``dp-merf``) are trained on a target computed once from the training data
(:mod:`ganvae.models.dpmerf`). This trainer plugin computes it before the first step, in chunks, and:

* with ``privacy.epsilon`` (``--dp-epsilon``): adds Gaussian noise of std sigma to every entry of the class sum
  S (sensitivity 1 under the add/remove-one-image relation: every image's feature vector has norm 1), with
  sigma calibrated by Opacus's accountant for one step at sample rate 1 (``calibrate(eps, delta, 1.0, 1)``);
  the epsilon spent is the accountant's for that history ``[(sigma, 1.0, 1)]``. ``privacy.noise_multiplier``
  gives sigma directly instead. The generator's training is post-processing: any number of steps, no
  further cost. ``privacy.max_grad_norm`` plays no part (there is no gradient clipping);
* without privacy: the same release with no noise (plain MERF: a random-feature MMD generator).

The release is model state (in the checkpoint): a resumed run finds it and releases nothing. The Gaussian
noise comes from a seeded generator (runs repeat bit for bit), so, as with DP-SGD here, the seed must stay
secret for the guarantee to hold against someone who has it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import GanvaeError
from ..training.plugins import TrainerPlugin
from .accounting import calibrate, epsilon_for
from .config import PrivacyConfig

MECHANISM = "gaussian release"


class EmbeddingRelease(TrainerPlugin):
    """Releases a ``needs_release`` model's target once, privately when the run's privacy section asks."""

    def __init__(self, privacy: PrivacyConfig, images, labels, chunk: int = 1024):
        self.privacy, self.images, self.labels, self.chunk = privacy, images, labels, chunk
        self.name = "privacy" if privacy.enabled else "release"
        self.sigma: float | None = None
        self.sigma_source = "given" if privacy.noise_multiplier is not None else ""
        self.n_released: int | None = None

    def attach(self, trainer) -> None:
        name = getattr(trainer.model, "registered_name", "") or "dp-merf"
        if trainer.world.active:
            raise GanvaeError(f"{name}: the embedding is released in one process (no torchrun); train it on "
                              "one machine (it needs minutes, not a cluster)")
        if self.labels is None:
            raise GanvaeError(f"{name} needs labelled data (one integer class per image): use a labelled source "
                              "such as mnist, digits, or a folder with one subfolder per class")
        self.model, self.seed = trainer.model, trainer.cfg.seed

    def noise_multiplier(self) -> float:
        if self.sigma is None:
            p = self.privacy
            if not p.enabled:
                self.sigma, self.sigma_source = 0.0, "no privacy asked"
            elif p.noise_multiplier is not None:
                self.sigma = float(p.noise_multiplier)
            else:
                self.sigma = calibrate(p.epsilon, p.delta, 1.0, 1, p.accountant)
                self.sigma_source = f"calibrated for epsilon {p.epsilon:g} in one release"
        return self.sigma

    def history(self) -> list:
        return [(self.noise_multiplier(), 1.0, 1)] if self.privacy.enabled else []

    def epsilon(self) -> float:
        return epsilon_for(self.history(), self.privacy.delta, self.privacy.accountant) if self.privacy.enabled \
            else float("inf")

    @torch.no_grad()
    def release(self) -> None:
        """S = sum of every training image's class-placed feature vector, plus N(0, sigma^2) per entry."""
        total = None
        n = len(self.labels)
        for i in range(0, n, self.chunk):
            x = self.images[i:i + self.chunk]
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            part = self.model.embed_sum(x, torch.as_tensor(self.labels[i:i + self.chunk]))
            total = part if total is None else total + part
        sigma = self.noise_multiplier()
        if sigma > 0:
            g = torch.Generator(device=total.device).manual_seed(self.seed * 1_000_003 + 0x3E4F)
            total = total + sigma * torch.randn(total.shape, generator=g, device=total.device, dtype=total.dtype)
        self.model.set_target(total)
        self.n_released = n

    def before_run(self, trainer, target_steps: int) -> None:
        if not self.model.released:
            self.release()

    def log_values(self, trainer) -> dict:
        return {"dp/epsilon": round(self.epsilon(), 6)} if self.privacy.enabled else {}

    def summary(self) -> dict[str, Any]:
        p = self.privacy
        out = {"mechanism": MECHANISM, "noise_multiplier": self.noise_multiplier(),
               "noise_multiplier_source": self.sigma_source, "sensitivity": 1.0, "releases": 1,
               "released_images": self.n_released,
               "private": "the class-summed random-feature mean embedding, released once; the generator is "
                          "trained on that release only (post-processing: no further cost)"}
        if p.enabled:
            out.update({"epsilon": round(self.epsilon(), 6), "epsilon_target": p.epsilon, "delta": p.delta,
                        "accountant": p.accountant, "sample_rate": 1.0, "steps": 1,
                        "sampling": "none (the whole training set, once)"})
        return out

    def state_dict(self) -> dict:
        return {"noise_multiplier": float(self.noise_multiplier()), "sigma_source": self.sigma_source,
                "released_images": self.n_released}

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:
            return
        self.sigma = float(state["noise_multiplier"])
        self.sigma_source = state.get("sigma_source", self.sigma_source)
        self.n_released = state.get("released_images")


def summary_text(s: dict[str, Any]) -> list[str]:
    """``ganvae info`` lines for a run.json ``privacy`` record of a release."""
    target = f" of target {s['epsilon_target']:g}" if s.get("epsilon_target") is not None else ""
    return [f"privacy: ({s['epsilon']:.4g}{target}, {s['delta']:g})-DP, {s['accountant']} accountant",
            f"  one Gaussian release, sensitivity 1, noise multiplier {s['noise_multiplier']:.4g} "
            f"({s.get('noise_multiplier_source', '')}), {s.get('released_images')} images",
            f"  private: {s.get('private')}"]

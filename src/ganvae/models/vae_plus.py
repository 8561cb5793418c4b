"""VAEs for likelihood: the importance-weighted bound (IWAE) and the VampPrior.

``iwae`` / ``mlp-iwae``: the conv / MLP VAE trained on L_k (Burda et al. 2016) instead of the ELBO; same
networks, same prior, same scoring. ``vamp-vae`` / ``mlp-vamp-vae``: the prior is the VampPrior (Tomczak &
Welling 2018), p(z) = (1/K) sum_k q(z | u_k), the encoder's posteriors of K learned pseudo-inputs u_k,
trained on the ELBO (k = 1) or on L_k (k > 1).

Scoring (``ganvae.metrics.likelihood``) is the same protocol for every VAE: ``bound_parts()`` gives
(encoder, decoder, likelihood[, log_prior]); a VampPrior model adds its ``log_prior``, so the weights are
log p(x | z) + log p_vamp(z) - log q(z | x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import rng
from ..errors import GanvaeError
from ..nets import PseudoInputs
from ..objectives.vae import IWAE, DiagonalGaussian, mixture_log_prob
from .base import Batch, Phase
from .vae import VAE, ConvVAEConfig, MLPVAEConfig

# ----------------------------------------------------------------------------- configs


@dataclass
class ImportanceWeightedFields:
    """Config fields of a VAE trained on the importance-weighted bound (mixed in before a VAE config)."""

    # Importance samples per image in the training bound L_k; 1 = the ELBO (with a sampled KL). 5: Burda et al.
    # found most of the gain by k = 5 (MNIST, one stochastic layer: 86.76 nats at k = 1, 85.54 at 5, 84.78 at
    # 50), each step costs about k decoder passes, and a larger k weakens the encoder's gradient signal
    # (Rainforth et al. 2018). Scoring uses its own k (--k), not this one.
    k: int = 5

    def validate(self) -> None:
        super().validate()  # type: ignore[misc]  # the VAE config this is mixed into
        if not 1 <= self.k <= 10_000:
            raise GanvaeError(f"model.k: expected 1 to 10000, got {self.k}")

    def make_objective(self) -> IWAE:
        return IWAE(self.k, self.beta)  # type: ignore[attr-defined]


@dataclass
class IWAEConfig(ImportanceWeightedFields, ConvVAEConfig):
    """The convolutional VAE trained on L_k (Burda et al. 2016)."""


@dataclass
class MLPIWAEConfig(ImportanceWeightedFields, MLPVAEConfig):
    """The MLP VAE trained on L_k (Burda et al. 2016)."""


@dataclass
class VampFields(ImportanceWeightedFields):
    """Config fields of a VampPrior VAE (mixed in before a VAE config)."""

    k: int = 1                # importance samples in the training bound; 1 = the ELBO, as the paper trains
    # Pseudo-inputs K (mixture components). The paper uses 500 on MNIST; 100 keeps the extra encoder pass
    # over the pseudo-inputs (every step) near the cost of one batch of 64 on a CPU. Try 500 on a GPU.
    components: int = 100
    # Opacus's per-sample hooks cannot split the gradient of the shared pseudo-input pass by image: no DP.
    per_sample_loss: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.components <= 100_000:
            raise GanvaeError(f"model.components: expected 1 to 100000, got {self.components}")


@dataclass
class VampVAEConfig(VampFields, ConvVAEConfig):
    """The convolutional VAE with a VampPrior (Tomczak & Welling 2018)."""


@dataclass
class MLPVampVAEConfig(VampFields, MLPVAEConfig):
    """The MLP VAE with a VampPrior (Tomczak & Welling 2018)."""


# ----------------------------------------------------------------------------- the model


class VampVAE(VAE):
    """A VAE whose prior is the VampPrior, p(z) = (1/K) sum_k q(z | u_k), with learned pseudo-inputs u_k."""

    @classmethod
    def private_config(cls, config: VampFields, name: str = "") -> VampFields:
        raise GanvaeError(f"privacy: model {name or cls.__name__!r} cannot be trained privately: its VampPrior "
                          "passes the learned pseudo-inputs through the encoder beside the batch, and per-sample "
                          "gradient hooks cannot split that pass's gradient by image; use iwae or vae")

    def __init__(self, config: VampFields):
        super().__init__(config)
        self.pseudo_inputs = PseudoInputs(config.components, config.channels, config.image_size)

    def prior(self) -> DiagonalGaussian:
        """The K mixture components q(z | u_k): mean and logvar (K, latent_dim)."""
        return DiagonalGaussian(self.encoder(self.pseudo_inputs()))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) under the VampPrior: z (N, latent_dim) -> (N,)."""
        comp = self.prior()
        return mixture_log_prob(z, comp.mean, comp.logvar)

    def latent(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n codes from the VampPrior: a component drawn uniformly, then a draw from it."""
        if labels is not None:
            return super().latent(n, generator, labels)  # the "not conditional" error
        with torch.no_grad():
            comp = self.prior()
            idx = rng.randint(0, comp.mean.shape[0], (n,), generator, device=self.device)
            eps = rng.randn((n, comp.mean.shape[1]), generator, device=self.device)
            return comp.mean[idx] + comp.std[idx] * eps

    def bound_parts(self, labels=None):
        """(encoder, decoder, likelihood, log_prior): the bounds of log p(x) are taken under the VampPrior."""
        return self.encoder, self.decoder, self.likelihood, self.log_prior

    def truncate(self, code: torch.Tensor, psi: float) -> torch.Tensor:
        """Codes toward the VampPrior's mean (the mean of its components' means), not toward 0."""
        with torch.no_grad():
            mean = self.prior().mean.mean(0)
        return mean + psi * (code - mean)

    def inference_modules(self) -> list[str]:
        return super().inference_modules() + ["pseudo_inputs"]  # sampling and scoring need the prior

    def loss(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return self.objective(self.encoder, self.decoder, self.likelihood, batch.x, gen, log_prior=self.log_prior)

    def phases(self) -> list[Phase]:
        c = self.config
        modules = [self.encoder, self.decoder, self.likelihood, self.pseudo_inputs]
        return [Phase("VAE", modules, c.lr, c.betas, self.loss)]

"""The f-AnoGAN encoder: images -> codes of a trained, frozen generator (Schlegl et al. 2019, izi_f training).

After the GAN is trained, an encoder E is trained into G's latent space with G and D frozen, minimising

    A(x) = mean_pixels (x - G(E(x)))^2 + kappa * mean_features (f(x) - f(G(E(x))))^2

where f is the discriminator's penultimate features (the input of the last linear or convolution layer that runs inside
``model.discriminate``; found with forward hooks, so any model with a discriminator works). A model without a
discriminator uses the image residual alone. The anomaly score is the same A(x).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import GanvaeError
from ..util.modes import eval_mode


WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # layers whose input can be D's features


@dataclass
class EncoderConfig:
    """How the f-AnoGAN encoder is built and trained (saved beside its weights)."""

    in_dim: int = 784          # C*H*W of the run's images
    latent_dim: int = 64       # the generator's code size
    hidden: int = 512          # width of the MLP's two hidden layers
    steps: int = 1000          # Adam steps
    batch_size: int = 64
    lr: float = 1e-3
    kappa: float = 1.0         # weight of the feature residual (the paper's kappa = 1)
    seed: int = 0              # weights and batch order

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """An MLP: images (B, C, H, W) in [0, 1] -> codes (B, latent_dim)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(cfg.in_dim, cfg.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.hidden, cfg.latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def penultimate(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(D's logits (B,), D's penultimate features (B, F) or None) for images ``x`` in [0, 1]."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []

    def hook(module, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor):
            seen.append((module, inputs[0]))

    # the weight layers (spectral-normed ones included: their weight is a parametrization, not a plain parameter)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    try:
        logits = model.discriminate(x)
    finally:
        for h in handles:
            h.remove()
    feats = seen[-1][1].flatten(1) if seen else None
    return logits.flatten(), feats


def residual_score(model, encoder: nn.Module | None, x: torch.Tensor, kappa: float,
                   use_features: bool) -> torch.Tensor:
    """A(x) per image (B,): the image residual plus ``kappa`` times D's feature residual (when ``use_features``)."""
    z = encoder(x)
    xr = model.decode_latent(z)                                       # (B, C, H, W) in [0, 1]
    score = ((x - xr) ** 2).flatten(1).mean(1)
    if use_features and kappa:
        _, fx = penultimate(model, x)
        _, fr = penultimate(model, xr)
        if fx is not None:
            score = score + kappa * ((fx - fr) ** 2).mean(1)
    return score


def train_encoder(model, images: torch.Tensor, cfg: EncoderConfig, log=None) -> Encoder:
    """Train the f-AnoGAN encoder on ``images`` (uint8 or float (N, C, H, W)) with ``model`` frozen; seeded."""
    if model.conditional:
        raise GanvaeError("score fanogan: conditional models are not supported (the encoder would need the class)")
    if images.shape[0] < 1:
        raise GanvaeError("score fanogan: the run's training split is empty; nothing to train the encoder on")
    dev = model.device
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        enc = Encoder(cfg).to(dev)
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    use_feats = model.has_discriminator
    try:
        with eval_mode(model):
            for step in range(cfg.steps):
                idx = torch.randint(0, images.shape[0], (min(cfg.batch_size, images.shape[0]),), generator=gen)
                x = _float(images[idx]).to(dev)
                loss = residual_score(model, enc, x, cfg.kappa, use_feats).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if log is not None and (step + 1) % max(1, cfg.steps // 5) == 0:
                    log(f"  encoder step {step + 1}/{cfg.steps}: residual {loss.item():.5f}")
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return enc.eval()


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()

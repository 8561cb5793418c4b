"""Reference training loops written the way the PyTorch tutorials write them, over ganvae's networks.

GAN: PyTorch's DCGAN tutorial (https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html):
a ``Dataset`` with per-item ``ToTensor`` + ``Normalize((0.5,), (0.5,))`` behind a shuffling
``DataLoader``; D ends in ``Sigmoid`` and is trained with ``BCELoss``: D on the real batch, one fake
batch from G, D on ``fake.detach()``, step D, then D on ``fake`` for G's loss, step G; Adam
(2e-4, betas 0.5, 0.999); ``.item()`` of the losses every step.

VAE: PyTorch's VAE example (https://github.com/pytorch/examples/tree/main/vae): sigmoid decoder,
``binary_cross_entropy(reduction="sum")`` + the closed-form KL, Adam 1e-3, ``.item()`` every step.

Used by ``speed.py`` (throughput) and ``time_to_quality.py`` (wall-clock to a quality target).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TutorialDataset(torch.utils.data.Dataset):
    """Per-item work, as tutorials do with ``transforms.ToTensor()`` (+ ``Normalize((0.5,), (0.5,))``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, normalize: bool):
        self.images = images.numpy()
        self.labels = labels.numpy() if labels is not None else None
        self.normalize = normalize

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255)
        if self.normalize:
            x = (x - 0.5) / 0.5
        return x, int(self.labels[i]) if self.labels is not None else 0


class _Loader:
    def __init__(self, images, labels, batch: int, normalize: bool):
        self.loader = torch.utils.data.DataLoader(TutorialDataset(images, labels, normalize),
                                                  batch_size=batch, shuffle=True, drop_last=True)
        self.it = iter(self.loader)

    def next(self) -> torch.Tensor:
        try:
            return next(self.it)[0]
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)[0]


class TutorialGAN:
    """``step()`` trains one batch; ``G`` is the generator (outputs in [-1, 1])."""

    def __init__(self, G: nn.Module, D: nn.Module, latent_dim: int, images: torch.Tensor,
                 labels: torch.Tensor | None, batch: int, device, lr: float = 2e-4):
        self.G, self.netD = G, nn.Sequential(D, nn.Sigmoid())
        self.data = _Loader(images, labels, batch, normalize=True)
        self.latent_dim, self.device = latent_dim, device
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=lr, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.losses: list[tuple[float, float]] = []

    def step(self) -> int:
        x = self.data.next().to(self.device)
        b = x.shape[0]
        self.netD.zero_grad()
        label = torch.full((b,), 1.0, device=self.device)
        err_real = self.criterion(self.netD(x).view(-1), label)
        err_real.backward()
        fake = self.G(torch.randn(b, self.latent_dim, device=self.device))
        label.fill_(0.0)
        err_fake = self.criterion(self.netD(fake.detach()).view(-1), label)
        err_fake.backward()
        self.optD.step()
        self.G.zero_grad()
        label.fill_(1.0)
        err_g = self.criterion(self.netD(fake).view(-1), label)
        err_g.backward()
        self.optG.step()
        self.losses.append(((err_real + err_fake).item(), err_g.item()))
        return b


class TutorialVAE:
    """``step()`` trains one batch; ``encoder(x)`` gives (mean, logvar) stacked, ``decoder(z)`` logits."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                 batch: int, device, lr: float = 1e-3):
        self.encoder, self.decoder = encoder, decoder
        self.data = _Loader(images, labels, batch, normalize=False)
        self.device = device
        self.opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=lr)
        self.losses: list[float] = []

    def step(self) -> int:
        x = self.data.next().to(self.device)
        self.opt.zero_grad()
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = torch.sigmoid(self.decoder(z))
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = bce + kld
        loss.backward()
        self.losses.append(loss.item())
        self.opt.step()
        return x.shape[0]

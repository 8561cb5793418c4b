"""DCGAN-style convolutional generator and discriminator (Radford et al. 2016).

Any square size ``base * 2**k`` with ``base`` in 3..7 and ``k >= 1`` works:
8 (4*2), 16, 28 (7*4), 32, 48, 64 (4*16), 96, 128 ... The generator maps a latent
code to a ``base x base`` feature map with a linear layer, then doubles the
resolution ``k`` times: with stride-2 transposed convolutions (``upsample="transposed"``, the
paper's), or by nearest or bilinear resizing followed by a 3x3 convolution (``"nearest"``,
``"bilinear"``: the resize-convolution of Odena, Dumoulin & Olah 2016, which cannot leave the
checkerboard that uneven overlap of transposed-convolution kernels leaves); the discriminator
mirrors it with stride-2 convolutions and ends in one logit (no sigmoid).
The discriminator can put spectral normalisation (Miyato et al. 2018) on every
convolution (``spectral_norm=True``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GanvaeError


def conv_plan(image_size: int) -> tuple[int, int]:
    """Return ``(base, n_up)`` with ``image_size == base * 2**n_up``, base in 3..7, n_up >= 1."""
    size, n_up = image_size, 0
    while size > 7 and size % 2 == 0:
        size //= 2
        n_up += 1
    if size < 3 or size > 7 or n_up < 1:
        below = next((s for s in range(image_size - 1, 5, -1) if _valid(s)), None)
        above = next(s for s in range(image_size + 1, 4 * image_size + 8) if _valid(s))
        hint = f"{below} or {above}" if below else str(above)
        raise GanvaeError(
            f"image_size {image_size}: convolutional models need base*2^k with base 3..7 and k>=1 "
            f"(8, 16, 28, 32, 64, ...); resize the data with --image-size {hint}"
        )
    return size, n_up


def _valid(image_size: int) -> bool:
    size, n_up = image_size, 0
    while size > 7 and size % 2 == 0:
        size //= 2
        n_up += 1
    return 3 <= size <= 7 and n_up >= 1


def _widths(width: int, n: int, cap: int) -> list[int]:
    """Channel widths from the lowest resolution (index 0) to the highest (index n-1)."""
    return [min(width * 2 ** (n - 1 - i), cap) for i in range(n)]


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(32, ch // 4) or 1, ch)
    if kind == "layer":  # one group: normalises each sample over all its channels and pixels
        return nn.GroupNorm(1, ch)
    if kind == "none":
        return nn.Identity()
    raise GanvaeError(f"norm {kind!r}: expected batch, group, layer or none")


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear weight of ``module``, in place.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per
    forward in training mode). Each weight becomes ``parametrizations.weight.original``
    plus the power iteration's ``_u``/``_v`` buffers, all in the state_dict, so
    checkpoints, exact resume and the safetensors export carry them. Call it after
    the weights are initialised: its initial power iterations run on them.
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            spectral_norm(m)
    return module


UPSAMPLE = ("transposed", "nearest", "bilinear")  # how a DCGAN G or a conv VAE decoder doubles its resolution


def check_upsample(mode: str, option: str) -> None:
    """``mode`` is one of :data:`UPSAMPLE`, or a one-line error naming ``option``."""
    if mode not in UPSAMPLE:
        raise GanvaeError(f"{option}: expected one of {', '.join(UPSAMPLE)}, got {mode!r}")


def upsample_conv(c_in: int, c_out: int, mode: str, bias: bool) -> nn.Module:
    """(B, c_in, H, W) -> (B, c_out, 2H, 2W): a stride-2 4x4 transposed conv, or a resize then a 3x3 conv."""
    if mode == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    check_upsample(mode, "upsample")
    return nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias))


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, C, H, W) in [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64,
                 max_width: int = 512, norm: str = "batch", upsample: str = "transposed"):
        super().__init__()
        base, n_up = conv_plan(image_size)
        widths = _widths(width, n_up, max_width)  # widths[0] at base x base
        self.latent_dim, self.base = latent_dim, base
        self.fc = nn.Linear(latent_dim, widths[0] * base * base, bias=norm == "none")
        self.fc_norm = nn.Sequential(_norm(norm, widths[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for i in range(n_up - 1):
            layers += [
                upsample_conv(widths[i], widths[i + 1], upsample, bias=norm == "none"),
                _norm(norm, widths[i + 1]),
                nn.ReLU(inplace=True),
            ]
        layers += [upsample_conv(widths[-1], channels, upsample, bias=True), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self._c0 = widths[0]
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self._c0, self.base, self.base)  # (B, C0, base, base)
        return self.body(self.fc_norm(h))


class DCGANDiscriminator(nn.Module):
    """image (B, C, H, W) in [-1, 1] -> logit (B,). No normalisation on the first layer."""

    def __init__(self, channels: int, image_size: int, width: int = 64, max_width: int = 512,
                 norm: str = "batch", spectral_norm: bool = False, mbstd_group: int = 0):
        super().__init__()
        self.mbstd_group = mbstd_group
        base, n_down = conv_plan(image_size)
        widths = list(reversed(_widths(width, n_down, max_width)))  # highest resolution first
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(n_down - 1):
            layers += [
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=norm == "none"),
                _norm(norm, widths[i + 1]),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.body = nn.Sequential(*layers)
        # (B, C, base, base) -> (B, 1, 1, 1); one more input channel for the minibatch standard deviation
        self.head = nn.Conv2d(widths[-1] + (mbstd_group > 0), 1, base)
        _dcgan_init(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map before the logit, (B, C, base, base) (C + 1 channels with the minibatch std)."""
        h = self.body(x)
        return minibatch_std(h, self.mbstd_group) if self.mbstd_group > 0 else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()


def minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """``h`` (B, C, H, W) with one more channel: the standard deviation of each feature over a group of samples,
    averaged over features and positions (ProGAN, Karras et al. 2018; StyleGAN2's grouping: sample i is in
    group i mod B/g). It lets D see a batch's variety, so a G that makes one image per input is caught.
    ``g`` is the largest divisor of B not above ``group``; a batch of one gets sqrt(1e-8) (the guard of the root)."""
    B, C, H, W = h.shape
    g = max(d for d in range(1, min(group, B) + 1) if B % d == 0)
    y = h.float().contiguous().reshape(g, B // g, C * H * W)  # contiguous: var over a strided dim is slow
    y = (((y - y.mean(dim=0)) ** 2).mean(dim=0) + 1e-8).sqrt().mean(dim=1)  # (B / g,)
    y = y.to(h.dtype).reshape(1, B // g, 1, 1, 1).expand(g, -1, 1, H, W).reshape(B, 1, H, W)
    return torch.cat([h, y], dim=1)


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights, as in the DCGAN paper; norm layers at scale 1."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):  # GroupNorm: "group" and "layer"
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

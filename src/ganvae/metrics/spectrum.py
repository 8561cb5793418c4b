"""Pixel-spectrum metrics: blur and checkerboard artefacts that feature-space scores can miss.

Both compare the mean 2-d power spectrum of generated images with that of the reference images, in
pixel space (no feature net). Each image channel has its mean removed; its power is ``|FFT|^2``
divided by the number of pixels; powers are averaged over channels and images.

* ``spectral_distance``: the azimuthally averaged spectra (ring ``b`` holds the frequencies whose
  radius, in cycles per image side, rounds to ``b``; rings 1 to ``min(H, W) // 2``) compared ring by
  ring, ``mean_b |log10(P_gen(b) / P_ref(b))|``: 0 for the same spectrum, 1 for a factor of 10 in
  every ring. A blurred sample set lacks power in the outer rings; upsampling artefacts add power
  there (Durall, Keuper & Keuper, CVPR 2020, "Watch your up-convolution").
* ``checkerboard``: the share of the AC power at the period-2 frequencies ``(H/2, 0)``, ``(0, W/2)``
  and ``(H/2, W/2)``, where a strided transposed convolution leaves its checkerboard (Odena, Dumoulin
  & Olah 2016), divided by the same share in the reference images: about 1 for real images, far above
  1 for a visible checkerboard; below 1 for images smoother than the reference. Odd sizes use the
  highest frequency index ``H // 2``.

A ring (or the period-2 share) with no reference power is left out; zero generated power is floored at
``1e-12`` times the reference power so the logarithm stays finite.
"""

from __future__ import annotations

import torch

FLOOR = 1e-12  # zero generated power counts as this share of the reference power in the log ratio


def mean_power(images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(N, C, H, W) -> (H, W): the mean power spectrum of the mean-removed channels (float64)."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    total = torch.zeros(h, w, dtype=torch.float64)
    for i in range(0, n, chunk):
        x = images[i:i + chunk].double()
        x = x - x.mean(dim=(2, 3), keepdim=True)
        total += (torch.fft.fft2(x).abs() ** 2).mean(1).sum(0) / (h * w)
    return total / n


def _rings(h: int, w: int) -> torch.Tensor:
    """(H, W) ring index of each frequency: its radius in cycles per image side, rounded."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64) * min(h, w)
    fx = torch.fft.fftfreq(w, dtype=torch.float64) * min(h, w)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long()


def radial_profile(power: torch.Tensor) -> torch.Tensor:
    """(H, W) spectrum -> (min(H, W) // 2,): the mean power of rings 1 .. min(H, W) // 2."""
    h, w = power.shape
    ring, top = _rings(h, w).flatten(), min(h, w) // 2
    inside = ring <= top
    sums = torch.bincount(ring[inside], weights=power.flatten()[inside], minlength=top + 1)
    counts = torch.bincount(ring[inside], minlength=top + 1)
    return sums[1:] / counts[1:]


def spectral_distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """mean over rings of |log10(P_gen / P_ref)| between two (N, C, H, W) image sets of one size."""
    _same_size(gen, ref)
    pg, pr = radial_profile(mean_power(gen)), radial_profile(mean_power(ref))
    keep = pr > 0
    if not keep.any():
        return 0.0 if not (pg > 0).any() else float("inf")
    pg, pr = pg[keep], pr[keep]
    return torch.log10(torch.maximum(pg, pr * FLOOR) / pr).abs().mean().item()


def period2_share(power: torch.Tensor) -> float:
    """The share of an (H, W) spectrum's AC power at (H/2, 0), (0, W/2) and (H/2, W/2)."""
    h, w = power.shape
    ac = power.sum() - power[0, 0]
    if ac <= 0:
        return 0.0
    return ((power[h // 2, 0] + power[0, w // 2] + power[h // 2, w // 2]) / ac).item()


def checkerboard(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """The generated images' period-2 power share over the reference images' (1: as the reference)."""
    _same_size(gen, ref)
    s_ref = period2_share(mean_power(ref))
    s_gen = period2_share(mean_power(gen))
    if s_ref == 0:
        return 1.0 if s_gen == 0 else float("inf")
    return s_gen / s_ref


def _same_size(gen: torch.Tensor, ref: torch.Tensor) -> None:
    if gen.shape[1:] != ref.shape[1:]:
        raise ValueError(f"spectra of different image shapes: {tuple(gen.shape[1:])} and {tuple(ref.shape[1:])}")

"""Adaptive discriminator augmentation (ADA): Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data", Appendix B; the pipeline and the adaptive probability ``p``.

Everything D sees (real and generated images, in both phases) goes through the same pipeline. Each
transformation is applied to each image independently with probability ``p``, with parameters drawn from the
``torch.Generator`` given (the training noise generator: runs repeat and resume exactly). The pipeline is
differentiable in the images, so G trains through it. Groups (``model.ada_pipe``, letters, in this order):

- ``b`` blit: x-flip, rotation by a multiple of 90 degrees, integer translation by up to 1/8 of the side
  (reflected at the border); exact, a gather of whole pixels.
- ``g`` geom: isotropic scale 2^N(0, 0.2^2), arbitrary rotation U(-pi, pi) (before and after the anisotropic
  scale, each with probability 1 - sqrt(1 - p), so that one of them happens with probability p), anisotropic
  scale 2^N(0, 0.2^2), fractional translation N(0, 0.125^2) of the side: one affine map per image, resampled
  once (bilinear, reflection padding). The reference first upsamples 2x with a wavelet filter to limit
  aliasing; we resample the image directly.
- ``c`` color: brightness + N(0, 0.2^2), contrast x 2^N(0, 0.5^2), luma flip, hue rotation U(-pi, pi) about the
  luma axis, saturation x 2^N(0, 1): one 4x4 matrix per image on homogeneous RGB. One-channel images get what
  the reference's channel average of that matrix leaves: brightness, contrast and the luma flip (x -> -x).

The adaptive ``p`` (:meth:`AdaAugment.update`, called by :class:`ganvae.training.ada.AdaPlugin` every
``interval`` training steps): r_t = E[sign(D(real))] over D's logits on the (augmented) real images of those
steps, recorded during the D phase's own forward passes (:meth:`AdaAugment.watch`) into device tensors, and

    p <- clip(p + sign(r_t - target) * n / (kimg * 1000), 0, 1)

with ``n`` the real images observed (the paper's batch * interval when ``model.d_steps`` = 1): p can go from
0 to 1 in ``kimg`` thousand real images. ``kimg`` = 0 keeps p fixed. Nothing here syncs with the host.

Images are (B, C, H, W), C = 1 or 3, in [-1, 1] (D's input range); square images for the 90-degree rotations.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..errors import GanvaeError

GROUPS = {"b": "blit", "g": "geom", "c": "color"}
XINT_MAX = 0.125      # blit: integer translation, at most this fraction of the side
SCALE_STD = 0.2       # geom: log2 std of the isotropic scale
ANISO_STD = 0.2       # geom: log2 std of the anisotropic scale
XFRAC_STD = 0.125     # geom: std of the fractional translation, a fraction of the side
BRIGHTNESS_STD = 0.2  # color: std of the added brightness
CONTRAST_STD = 0.5    # color: log2 std of the contrast factor
SATURATION_STD = 1.0  # color: log2 std of the saturation factor
LUMA = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3), 0.0)  # the luma axis in homogeneous RGB


def parse_pipe(pipe: str, where: str = "model.ada_pipe") -> str:
    """``"bgc"`` -> the groups' letters in pipeline order, checked."""
    letters = (pipe or "").strip()
    if not letters or any(ch not in GROUPS for ch in letters) or len(set(letters)) != len(letters):
        raise GanvaeError(f"{where}: expected letters from b (blit), g (geom), c (color), each at most once, "
                          f"e.g. bgc; got {pipe!r}")
    return "".join(ch for ch in GROUPS if ch in letters)


def check_options(pipe: str, p: float, target: float, kimg: float, interval: int) -> None:
    """The ``model.ada_*`` options in range (one line per mistake, naming the option)."""
    parse_pipe(pipe)
    if not 0 <= p <= 1:
        raise GanvaeError(f"model.ada_p: expected a probability in [0, 1], got {p}")
    if not -1 < target < 1:
        raise GanvaeError(f"model.ada_target: expected a value of E[sign(D(real))] in (-1, 1) (paper: 0.6), "
                          f"got {target}")
    if kimg < 0:
        raise GanvaeError(f"model.ada_kimg: expected >= 0 (0: p fixed at model.ada_p), got {kimg}")
    if interval < 1:
        raise GanvaeError(f"model.ada_interval: expected >= 1 training steps, got {interval}")


# ----------------------------------------------------------------------------- random draws and matrices

def _rand(n: int, x: torch.Tensor, gen, *rest: int) -> torch.Tensor:
    return rng.rand((n, *rest), gen, device=x.device, dtype=torch.float32)


def _randn(n: int, x: torch.Tensor, gen, *rest: int) -> torch.Tensor:
    return rng.randn((n, *rest), gen, device=x.device, dtype=torch.float32)


def _gate(m: torch.Tensor, prob: torch.Tensor, x: torch.Tensor, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, ``m`` (B, k, k) with probability ``prob``, else the identity; and the (B,) mask."""
    on = _rand(m.shape[0], x, gen) < prob
    eye = torch.eye(m.shape[-1], device=m.device, dtype=m.dtype).expand_as(m)
    return torch.where(on.view(-1, 1, 1), m, eye), on


def _mat(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """(B, k, k) from k rows of k entries, each a (B,) tensor or a number."""
    full = [[e if torch.is_tensor(e) else torch.full_like(like, float(e)) for e in row] for row in rows]
    return torch.stack([torch.stack(row, dim=-1) for row in full], dim=-2)


def scale2d(sx, sy, like):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def rotate2d(cos, sin, like):
    return _mat([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], like)


def translate2d(tx, ty, like):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _outer_luma(device) -> torch.Tensor:
    v = torch.tensor(LUMA, device=device)
    return torch.outer(v, v)


def rotate3d(axis: tuple[float, ...], theta: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) rotation by ``theta`` (B,) about the unit ``axis`` (its first 3 entries; Rodrigues)."""
    vx, vy, vz = axis[:3]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _mat([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                 [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                 [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                 [0, 0, 0, 1]], theta)


# ----------------------------------------------------------------------------- the three groups

def blit_matrix(x: torch.Tensor, p: torch.Tensor, gen) -> torch.Tensor:
    """(B, 3, 3) output -> input map in centred pixel coordinates: x-flip, 90-degree rotation, integer shift."""
    B, _, H, W = x.shape
    one = torch.ones(B, device=x.device)
    flip = torch.floor(_rand(B, x, gen) * 2)
    G, _ = _gate(scale2d(1 - 2 * flip, one, one), p, x, gen)
    quarter = torch.floor(_rand(B, x, gen) * 4).long()
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=x.device)[quarter]  # exact for multiples of 90 degrees
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=x.device)[quarter]
    G = G @ _gate(rotate2d(cos, sin, one), p, x, gen)[0]
    t = (_rand(B, x, gen, 2) * 2 - 1) * XINT_MAX
    G = G @ _gate(translate2d(-torch.round(t[:, 0] * W), -torch.round(t[:, 1] * H), one), p, x, gen)[0]
    return G


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices folded into [0, n) by mirror reflection without repeating the edge (numpy's 'reflect')."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def blit(x: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Each image resampled through ``G`` (B, 3, 3), which must map pixel centres to pixel centres (exact)."""
    B, C, H, W = x.shape
    cx, cy = (W - 1) / 2, (H - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(H, device=x.device, dtype=torch.float32) - cy,
                            torch.arange(W, device=x.device, dtype=torch.float32) - cx, indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten(), torch.ones(H * W, device=x.device)])  # (3, H*W)
    src = G @ coords                                                                          # (B, 3, H*W)
    sx = _reflect(torch.round(src[:, 0] + cx).long(), W)
    sy = _reflect(torch.round(src[:, 1] + cy).long(), H)
    idx = (sy * W + sx).unsqueeze(1).expand(B, C, H * W)
    return x.reshape(B, C, H * W).gather(2, idx).view(B, C, H, W)


def geom_matrix(x: torch.Tensor, p: torch.Tensor, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, 3) output -> input affine map in centred pixel coordinates, and which images it changes (B,)."""
    B, _, H, W = x.shape
    one = torch.ones(B, device=x.device)
    s = torch.exp2(_randn(B, x, gen) * SCALE_STD)
    G, on = _gate(scale2d(1 / s, 1 / s, one), p, x, gen)
    p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))  # P(rotation before or after the anisotropic scale) = p
    theta = (_rand(B, x, gen) * 2 - 1) * math.pi
    R, r1 = _gate(rotate2d(torch.cos(theta), torch.sin(theta), one), p_rot, x, gen)
    s = torch.exp2(_randn(B, x, gen) * ANISO_STD)
    A, a = _gate(scale2d(1 / s, s, one), p, x, gen)
    theta = (_rand(B, x, gen) * 2 - 1) * math.pi
    R2, r2 = _gate(rotate2d(torch.cos(theta), torch.sin(theta), one), p_rot, x, gen)
    t = _randn(B, x, gen, 2) * XFRAC_STD
    T, tr = _gate(translate2d(-t[:, 0] * W, -t[:, 1] * H, one), p, x, gen)
    return G @ R @ A @ R2 @ T, on | r1 | a | r2 | tr


def geom(x: torch.Tensor, G: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """Each image resampled through ``G`` (bilinear, reflection padding); images not ``changed`` kept bit for bit."""
    B, _, H, W = x.shape
    N = torch.diag(torch.tensor([2 / W, 2 / H, 1.0], device=x.device))      # centred pixels -> [-1, 1]
    N_inv = torch.diag(torch.tensor([W / 2, H / 2, 1.0], device=x.device))
    theta = (N @ G @ N_inv)[:, :2, :]
    grid = F.affine_grid(theta, [B, x.shape[1], H, W], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return torch.where(changed.view(B, 1, 1, 1), out, x)


def color_matrix(x: torch.Tensor, p: torch.Tensor, gen) -> torch.Tensor:
    """(B, 4, 4) colour transform on homogeneous RGB (for one channel: brightness, contrast, luma flip only)."""
    B = x.shape[0]
    one = torch.ones(B, device=x.device)
    I4 = torch.eye(4, device=x.device)
    b = _randn(B, x, gen) * BRIGHTNESS_STD
    C, _ = _gate(_mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], one), p, x, gen)
    c = torch.exp2(_randn(B, x, gen) * CONTRAST_STD)
    C = _gate(_mat([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], one), p, x, gen)[0] @ C
    vv = _outer_luma(x.device)
    flip = torch.floor(_rand(B, x, gen) * 2).view(B, 1, 1)
    C = _gate(I4 - 2 * vv * flip, p, x, gen)[0] @ C  # Householder reflection of the luma axis
    if x.shape[1] > 1:
        theta = (_rand(B, x, gen) * 2 - 1) * math.pi
        C = _gate(rotate3d(LUMA, theta), p, x, gen)[0] @ C
        s = torch.exp2(_randn(B, x, gen) * SATURATION_STD).view(B, 1, 1)
        rgb = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], device=x.device))
        C = _gate(vv + (rgb - vv) * s + (I4 - rgb), p, x, gen)[0] @ C  # scale away from the grey axis
    return C


def color(x: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``C`` (B, 4, 4) applied to each pixel; one-channel images use the average of its three colour rows."""
    B, ch, H, W = x.shape
    flat = x.reshape(B, ch, H * W)
    if ch == 3:
        return (C[:, :3, :3] @ flat + C[:, :3, 3:]).view(B, ch, H, W)
    row = C[:, :3, :].mean(dim=1, keepdim=True)  # (B, 1, 4): the reference's grey version
    gain = row[:, :, :3].sum(dim=2, keepdim=True)
    same = (C[:, :3, :3] == torch.eye(3, device=x.device)).flatten(1).all(1).view(B, 1, 1)
    gain = torch.where(same, torch.ones_like(gain), gain)  # exactly 1 then (1/3 + 1/3 + 1/3 may round)
    return (flat * gain + row[:, :, 3:]).view(B, ch, H, W)


# ----------------------------------------------------------------------------- the module

class AdaAugment(nn.Module):
    """The ADA pipeline and its state: ``p`` and the r_t accumulator, buffers (so checkpoints hold them).

    ``aug(x, gen)`` augments (B, C, H, W) images with probability ``p`` per transformation and image;
    :meth:`watch` wraps D for the D phase (records its logits on the real batch); :meth:`update` moves ``p``.
    """

    adaptive = True

    def __init__(self, pipe: str = "bgc", p: float = 0.0, target: float = 0.6, kimg: float = 100.0,
                 interval: int = 4):
        super().__init__()
        check_options(pipe, p, target, kimg, interval)
        self.pipe, self.target, self.kimg, self.interval = parse_pipe(pipe), float(target), float(kimg), int(interval)
        self.register_buffer("p", torch.tensor(float(p)))        # the augmentation probability
        self.register_buffer("rt", torch.tensor(0.0))            # r_t of the latest update
        self.register_buffer("rt_sum", torch.tensor(0.0))        # sum of sign(D(real)) since the latest update
        self.register_buffer("rt_n", torch.tensor(0.0))          # real logits counted in rt_sum

    @classmethod
    def from_config(cls, config) -> "AdaAugment":
        return cls(config.ada_pipe, config.ada_p, config.ada_target, config.ada_kimg, config.ada_interval)

    @torch.compiler.disable  # draws from a torch.Generator: eager even when the loop compiles the model's children
    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, H, W) -> augmented (B, C, H, W), float32; differentiable in ``x``."""
        with torch.autocast(x.device.type, enabled=False):
            x, p = x.float(), self.p
            if "b" in self.pipe:
                x = blit(x, blit_matrix(x, p, gen))
            if "g" in self.pipe:
                x = geom(x, *geom_matrix(x, p, gen))
            if "c" in self.pipe:
                x = color(x, color_matrix(x, p, gen))
        return x

    @torch.no_grad()
    def observe(self, logits: torch.Tensor) -> None:
        """Add D's logits on real images (any shape) to the r_t accumulator (on the device, no sync)."""
        self.rt_sum.add_(torch.sign(logits.detach().float()).sum().to(self.rt_sum.device))
        self.rt_n.add_(logits.numel())

    def watch(self, D: Callable[[torch.Tensor], torch.Tensor], gen: torch.Generator | None,
              real: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``D`` behind the pipeline, recording its logits on the first call with the real batch ``real``
        (the same storage: the objective's own pass on it; later passes on it, such as R1's, are not counted)."""
        seen = [False]

        def Dx(x: torch.Tensor) -> torch.Tensor:
            out = D(self(x, gen))
            if not seen[0] and x.shape == real.shape and x.data_ptr() == real.data_ptr():
                seen[0] = True
                self.observe(out)
            return out
        return Dx

    @torch.no_grad()
    def update(self) -> None:
        """r_t from the accumulator (kept in ``rt``), p moved toward the target, the accumulator reset."""
        n = self.rt_n
        rt = self.rt_sum / n.clamp(min=1)
        if self.kimg > 0:
            self.p.copy_((self.p + torch.sign(rt - self.target) * n / (self.kimg * 1000)).clamp(0, 1))
        self.rt.copy_(torch.where(n > 0, rt, self.rt))
        self.rt_sum.zero_()
        self.rt_n.zero_()

    def extra_repr(self) -> str:
        return f"pipe={self.pipe!r}, target={self.target}, kimg={self.kimg}, interval={self.interval}"

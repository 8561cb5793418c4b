"""A procedural data set of coloured shapes on black with known generative factors.

Factors (one row per image, float32), all independent:

* ``shape``: 0 square, 1 ellipse (axes 1.25:0.8), 2 triangle (equilateral) -- also the label;
* ``scale``: uniform in [0.5, 1]; all shapes at one scale have the same area;
* ``rotation``: radians, uniform in [0, 2*pi);
* ``x``, ``y``: uniform in [0, 1]; the centre is placed at ``ext + x * (1 - 2 * ext)``
  (in image-width units, y downwards) where ``ext`` is the shape's circumradius, so the
  shape always lies fully inside the image;
* ``hue``: uniform in [0, 1); colour = HSV(hue, 1, 1).

Rendering is vectorised numpy: an inside-test on a supersampled pixel grid
(4x for up to 64 px, else 2x), averaged down for anti-aliasing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import DataConfig, ImageData, SourceData

SHAPE_NAMES = ["square", "ellipse", "triangle"]
FACTOR_NAMES = ["shape", "scale", "rotation", "x", "y", "hue"]
DEFAULT_N = 10000
DEFAULT_SIZE = 32

_R = 0.28  # base radius (image-width units) at scale 1
_SQ_HALF = math.sqrt(math.pi) / 2  # square half-side for area pi r^2
_EL_A, _EL_B = 1.25, 0.8  # ellipse semi-axes (area pi r^2)
_TRI_R = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))  # triangle circumradius for area pi r^2
_EXTENT = np.array([_SQ_HALF * math.sqrt(2), _EL_A, _TRI_R], dtype=np.float32)  # circumradius / r


def sample_factors(n: int, seed: int) -> np.ndarray:
    """(n, 6) float32 factor matrix, deterministic for ``seed``."""
    rng = np.random.default_rng([seed, 0x5A4E5])
    f = np.empty((n, len(FACTOR_NAMES)), dtype=np.float32)
    f[:, 0] = rng.integers(0, len(SHAPE_NAMES), n)
    f[:, 1] = rng.uniform(0.5, 1.0, n)
    f[:, 2] = rng.uniform(0.0, 2 * math.pi, n)
    f[:, 3] = rng.uniform(0.0, 1.0, n)
    f[:, 4] = rng.uniform(0.0, 1.0, n)
    f[:, 5] = rng.uniform(0.0, 1.0, n)
    return f


def _hue_to_rgb(h: np.ndarray) -> np.ndarray:
    """HSV(h, 1, 1) -> (n, 3) RGB in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h[:, None] * 6.0) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# Outward edge normals (y up) of an equilateral triangle with its apex up.
_TRI_ANGLES = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
_TRI_N = np.stack([np.cos(_TRI_ANGLES), np.sin(_TRI_ANGLES)], 1).astype(np.float32)  # (3, 2)


def render(factors: np.ndarray | torch.Tensor, size: int = DEFAULT_SIZE, chunk_pixels: int = 1 << 22) -> torch.Tensor:
    """Render the factor rows to uint8 ``(n, 3, size, size)``.

    Plain numpy (single-threaded, float32): predictable speed even when other
    processes keep the cores busy, where torch's intra-op threads can stall.
    """
    f = np.asarray(factors, dtype=np.float32)
    n = f.shape[0]
    ss = 4 if size <= 64 else 2
    big = size * ss
    coords = ((np.arange(big, dtype=np.float32) + 0.5) / big).astype(np.float32)  # pixel centres in [0, 1]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    step = max(1, chunk_pixels // (big * big))
    for s in range(0, n, step):
        fc = f[s : s + step]
        b = fc.shape[0]
        kind = fc[:, 0].astype(np.int64)
        r = np.float32(_R) * fc[:, 1]
        ext = _EXTENT[kind] * r
        cx = ext + fc[:, 3] * (1 - 2 * ext)
        cy = ext + fc[:, 4] * (1 - 2 * ext)
        cover = np.empty((b, size, size), dtype=np.float32)
        for k in range(len(SHAPE_NAMES)):
            idx = np.flatnonzero(kind == k)
            if idx.size == 0:
                continue
            m = idx.size
            cos = np.cos(fc[idx, 2]).reshape(m, 1, 1)
            sin = np.sin(fc[idx, 2]).reshape(m, 1, 1)
            inv = (1.0 / r[idx]).reshape(m, 1, 1)
            dx = (coords.reshape(1, 1, big) - cx[idx].reshape(m, 1, 1)) * inv
            dy = (coords.reshape(1, big, 1) - cy[idx].reshape(m, 1, 1)) * inv
            # rotate into the shape's frame (in units of its radius)
            u = cos * dx + sin * dy
            v = cos * dy - sin * dx
            if k == 0:
                inside = np.maximum(np.abs(u), np.abs(v)) <= _SQ_HALF
            elif k == 1:
                inside = np.square(u * (1 / _EL_A)) + np.square(v * (1 / _EL_B)) <= 1.0
            else:
                v = -v  # y-down -> y-up so the apex points up at rotation 0
                (a0, b0), (a1, b1), (a2, b2) = _TRI_N
                d = np.maximum(u * a0 + v * b0, u * a1 + v * b1)
                inside = np.maximum(d, u * a2 + v * b2) <= _TRI_R / 2
            hits = inside.reshape(m, size, ss, size, ss).sum((2, 4), dtype=np.uint8)
            cover[idx] = hits.astype(np.float32) * (1.0 / (ss * ss))
        rgb = _hue_to_rgb(fc[:, 5]).astype(np.float32)  # (b, 3)
        img = cover[:, None] * (rgb[:, :, None, None] * 255.0)
        out[s : s + b] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


def load_shapes(cfg: DataConfig, progress: bool = True) -> SourceData:
    """Coloured shapes on black with known factors (shape, scale, rotation, x, y, hue); data.n images."""
    n = cfg.n if cfg.n is not None else DEFAULT_N
    size = cfg.image_size if cfg.image_size is not None else DEFAULT_SIZE
    f = sample_factors(n, cfg.split_seed)
    images = render(f, size)
    factors = torch.from_numpy(f)
    return SourceData(
        train=ImageData(images=images, labels=factors[:, 0].long(), factors=factors),
        class_names=list(SHAPE_NAMES),
        factor_names=list(FACTOR_NAMES),
        notes={"domain": "shapes"},
    )

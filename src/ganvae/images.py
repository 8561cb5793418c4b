"""Writing images: grids, single PNGs, arrays. Pillow and numpy only.

Layouts, once: tensors are NCHW float in [0, 1] (what ``model.sample`` returns);
:func:`to_uint8_nhwc` gives NHWC uint8 arrays (what Pillow takes); ``.npz`` files hold
NCHW uint8 (what the ``npz:`` data source reads back).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .util.files import atomic_write_bytes


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8."""
    x = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return x.permute(0, 2, 3, 1).numpy()


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_tile: int = 32) -> Image.Image:
    """Tile (N, C, H, W) images in [0, 1] into one picture; small images are enlarged (nearest)."""
    arr = to_uint8_nhwc(images)
    n, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol_rows = math.ceil(n / nrow)
    scale = max(1, math.ceil(min_tile / max(h, w)))
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 64, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = arr[i]
    return _pil(grid)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    path = Path(path)
    atomic_write_bytes(path, _png_bytes(make_grid(images, nrow)))
    return path


def save_each(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width = max(4, len(str(len(images) - 1)))
    for i, a in enumerate(to_uint8_nhwc(images)):
        p = folder / f"{prefix}_{i:0{width}d}.png"
        atomic_write_bytes(p, _png_bytes(_pil(a)))
        paths.append(p)
    return paths


def save_npz(images: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None) -> Path:
    """``images``: uint8 (N, C, H, W), the layout ``npz:`` data sources read back."""
    arr = to_uint8_nhwc(images).transpose(0, 3, 1, 2)
    buf = io.BytesIO()
    extra = {"labels": labels.cpu().numpy()} if labels is not None else {}
    np.savez_compressed(buf, images=arr, **extra)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)

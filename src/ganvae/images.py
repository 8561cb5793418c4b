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


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()  # built into Pillow: no file, no download


def _text_width(font, text: str) -> int:
    return int(math.ceil(font.getbbox(text)[2])) if text else 0


def _wrap(font, text: str, width: int) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(font, lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _tiles(images: torch.Tensor, min_tile: int, min_width: int = 0) -> np.ndarray:
    """NHWC uint8 tiles, enlarged (nearest, an integer factor) to at least ``min_tile`` px on their longer
    side and at least ``min_width`` px wide (at most 8x for the width)."""
    arr = to_uint8_nhwc(images)
    h, w = arr.shape[1:3]
    scale = max(1, math.ceil(min_tile / max(h, w)), min(8, math.ceil(min_width / w)))
    return arr.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else arr


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_tile: int = 32, *,
              row_labels: list[str] | None = None, col_labels: list[str] | None = None) -> Image.Image:
    """Tile (N, C, H, W) images in [0, 1] into one picture; small images are enlarged (nearest).

    ``row_labels``: text left of each grid row (e.g. a class or a latent dimension). ``col_labels``: text above
    each column; fewer labels than columns repeat (3 labels over 12 columns: four triples). Column labels wrap
    at spaces and the tiles are enlarged until each word fits its column. Pillow's built-in font: no files.
    """
    font = _font() if row_labels or col_labels else None
    words = [w for t in col_labels or [] for w in str(t).split()]
    arr = _tiles(images, min_tile, max((_text_width(font, w) + 2 for w in words), default=0))
    n, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol_rows = math.ceil(n / nrow)
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 64, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = arr[i]
    if font is None:
        return _pil(grid)
    return _labelled(_pil(grid), font, (h, w, pad, nrow, ncol_rows), row_labels or [], col_labels or [])


def _labelled(grid: Image.Image, font, layout: tuple, row_labels: list, col_labels: list) -> Image.Image:
    """``grid`` with a left margin of row labels and a top margin of column labels, white on the grid's grey."""
    from PIL import ImageDraw

    h, w, pad, ncols, nrows = layout
    line_h = int(math.ceil(font.getbbox("Ag")[3])) + 2
    heads = [_wrap(font, str(col_labels[col % len(col_labels)]), w) for col in range(ncols)] if col_labels else []
    top = (max(map(len, heads)) * line_h + pad) if heads else 0
    rows = [str(t) for t in row_labels[:nrows]]
    left = (max(_text_width(font, t) for t in rows) + 3 * pad) if rows else 0
    grey, white = (64, 255) if grid.mode == "L" else ((64,) * len(grid.mode), (255,) * len(grid.mode))
    out = Image.new(grid.mode, (grid.width + left, grid.height + top), grey)
    out.paste(grid, (left, top))
    draw = ImageDraw.Draw(out)
    for col, lines in enumerate(heads):
        x0 = left + pad + col * (w + pad)
        for k, line in enumerate(lines):
            draw.text((x0 + (w - _text_width(font, line)) // 2, pad + k * line_h), line, fill=white, font=font)
    for r, t in enumerate(rows):
        y = top + pad + r * (h + pad) + (h - line_h) // 2
        draw.text((pad, y), t, fill=white, font=font)
    return out


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, *, min_tile: int = 32,
              row_labels: list[str] | None = None, col_labels: list[str] | None = None) -> Path:
    """A PNG grid of ``images`` (see :func:`make_grid`), written atomically."""
    path = Path(path)
    grid = make_grid(images, nrow, min_tile=min_tile, row_labels=row_labels, col_labels=col_labels)
    atomic_write_bytes(path, _png_bytes(grid))
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

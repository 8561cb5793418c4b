"""Image-format helpers shared by the loaders (and usable elsewhere).

Conventions: image tensors are uint8 ``(N, C, H, W)``; numpy arrays are
converted with explicit, documented rules; PIL helpers return ``(H, W, C)``
uint8 arrays with C in {1, 3}.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import GanvaeError

# ITU-R BT.601 luma, the weights PIL uses for RGB -> L.
LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------- numpy -> uint8
def to_uint8(arr: np.ndarray, what: str = "images", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Convert pixel values of any dtype to uint8 0..255.

    * uint8: as is;  bool: False/True -> 0/255;
    * uint16: 16-bit range, v -> round(v * 255 / 65535);
    * other integers: must lie in 0..255;
    * floats: all in [0, 1] -> scaled by 255; else all in [0, 255] -> taken as 0..255
      (rounded); else (or NaN/inf) an error.

    ``what`` names the data in error messages. ``value_range``: the (min, max) of the whole data set
    when ``arr`` is one chunk of it, so every chunk follows the rule the whole set picks.
    """
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if a.size == 0:
        return a.astype(np.uint8)
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(v) for v in value_range) if value_range else (int(a.min()), int(a.max()))
        if lo < 0 or hi > 255:
            raise GanvaeError(f"{what}: integer pixel values must be in 0..255, found {lo}..{hi}")
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise GanvaeError(f"{what}: pixel values contain NaN or infinity")
        lo, hi = (float(v) for v in value_range) if value_range else (float(a.min()), float(a.max()))
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(a * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.rint(a).astype(np.uint8)
        raise GanvaeError(
            f"{what}: float pixel values must be in [0, 1] or [0, 255], found {lo:g}..{hi:g}"
        )
    raise GanvaeError(f"{what}: unsupported pixel dtype {a.dtype}")


def to_nchw(arr: np.ndarray, what: str = "images") -> np.ndarray:
    """Bring ``(N,H,W)``, ``(N,H,W,C)`` or ``(N,C,H,W)`` (C in 1, 3, 4) to ``(N,C,H,W)``.

    The channel axis is the one of size 1, 3 or 4; when both the second and the
    last axis qualify, channels-last (numpy/PIL convention) wins. A 4th channel
    (alpha) is dropped.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        last, second = a.shape[-1] in (1, 3, 4), a.shape[1] in (1, 3, 4)
        if last:
            a = a.transpose(0, 3, 1, 2)
        elif not second:
            raise GanvaeError(
                f"{what}: cannot find the channel axis in shape {a.shape}; expected (N,H,W), "
                "(N,H,W,C) or (N,C,H,W) with C in 1, 3, 4"
            )
    else:
        raise GanvaeError(
            f"{what}: expected 3 or 4 dimensions (N,H,W), (N,H,W,C) or (N,C,H,W), got shape {a.shape}"
        )
    if a.shape[1] == 4:
        a = a[:, :3]
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- tensors
def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``(N,C,H,W)`` to ``channels`` (1 or 3): grey is replicated, RGB -> luma (BT.601)."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 4:
        images, c = images[:, :3], 3
        if channels == 3:
            return images.contiguous()
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        for s in range(0, images.shape[0], 4096):
            chunk = images[s : s + 4096].to(torch.float32)
            out[s : s + 4096] = (chunk * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
        return out
    raise ValueError(f"cannot convert {c} channels to {channels}")


def center_crop(images: torch.Tensor) -> torch.Tensor:
    """Centre square crop of ``(N,C,H,W)`` (side = the shorter side)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top : top + s, left : left + s]


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 ``(N,C,H,W)`` -> uint8 ``(N,C,size,size)``: centre crop to square, then
    bilinear resize with antialiasing (batched, in chunks)."""
    images = center_crop(images)
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    n, c = images.shape[:2]
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for s in range(0, n, chunk):
        x = images[s : s + chunk].to(torch.float32)
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s : s + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def conform(images: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    """Apply the configured size and channels (None = keep)."""
    if channels is not None:
        images = convert_channels(images, channels)
    if image_size is not None:
        images = resize_images(images, image_size)
    return images.contiguous()


# --------------------------------------------------------------------------- PIL
COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}


def is_colour_mode(mode: str) -> bool:
    """True for modes that carry colour (palette images count as colour)."""
    return mode in COLOUR_MODES


def _composite_on_black(a: np.ndarray) -> np.ndarray:
    """(H,W,C+1) uint8 with alpha last -> (H,W,C), colour * alpha / 255 (i.e. over black)."""
    alpha = a[..., -1:].astype(np.uint16)
    return ((a[..., :-1].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def pil_to_8bit(img: Image.Image) -> Image.Image:
    """Normalise any PIL mode to ``L`` or ``RGB`` uint8.

    16-bit (I;16*, and I with values above 255) maps 0..65535 -> 0..255; float
    (F) in [0, 1] is scaled by 255, else clipped to 0..255; transparency (RGBA,
    LA, PA, palette with transparency) is composited on black; palette, CMYK,
    YCbCr, LAB, HSV -> RGB; 1-bit -> L.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16"):
        a = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode == "I":
        a = np.asarray(img).astype(np.int64)
        hi = int(a.max()) if a.size else 0
        if int(a.min() if a.size else 0) >= 0 and hi <= 255:
            return Image.fromarray(a.astype(np.uint8), "L")
        a = np.clip(a, 0, 65535)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float32))
        if a.size and a.min() >= 0 and a.max() <= 1:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode in ("LA", "La"):
        a = np.asarray(img.convert("LA") if mode == "La" else img)
        return Image.fromarray(_composite_on_black(a)[..., 0], "L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info or (
            img.palette is not None and img.palette.mode == "RGBA"
        )
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(img.convert("RGBA") if mode == "RGBa" else img)
        return Image.fromarray(_composite_on_black(a), "RGB")
    return img.convert("RGB")


def fit_square(img: Image.Image, size: int, resample: int = Image.Resampling.LANCZOS) -> Image.Image:
    """Resize so the shorter side is ``size`` and centre-crop to ``size`` x ``size``
    (done in one resampling step via the ``box`` argument)."""
    w, h = img.size
    if w == size and h == size:
        return img
    s = min(w, h)
    left, top = (w - s) / 2.0, (h - s) / 2.0
    return img.resize((size, size), resample, box=(left, top, left + s, top + s))


def pil_to_array(img: Image.Image) -> np.ndarray:
    """``L``/``RGB`` PIL image -> (H, W, C) uint8 array, C in {1, 3}."""
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return a

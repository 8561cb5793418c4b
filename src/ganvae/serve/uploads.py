"""Uploads for the explorer: bounded decoding (pixel cap, band-wise reduction) and the heavy-request slots."""

from __future__ import annotations

import io
import math
import threading
import time

import torch
from PIL import Image

from .. import api
from ..errors import GanvaeError
from .limits import LIMITS, BadRequest


# EXIF orientation -> the transposition that shows the image upright (as PIL's ImageOps.exif_transpose)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _reducible(img: Image.Image) -> Image.Image:
    """``img`` in a mode ``Image.reduce`` averages correctly, converted as the usual preparation would
    (palette -> RGBA, its transparency kept; 1-bit -> L); 16-bit grey goes to I and back after reducing."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "I", "F"):
        return img
    if mode in ("P", "PA", "RGBa"):
        return img.convert("RGBA")
    if mode == "La":
        return img.convert("LA")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16"):
        return img.convert("I")
    return img.convert("RGB")


_BAND_PIXELS = 2**20  # source pixels converted and reduced at a time


def _reduce_in_bands(img: Image.Image, factor: int, box: tuple[int, int, int, int]) -> Image.Image:
    """``_reducible(img).reduce(factor, box)`` (factor 1: a crop), a band of rows at a time, so that the mode
    conversions and the premultiplied copy ``reduce`` makes for alpha are band-sized, never image-sized.
    Bands are whole multiples of ``factor`` rows high: the result is the same as reducing the whole box."""
    x0, y0, x1, y1 = box
    rows = factor * max(1, _BAND_PIXELS // ((x1 - x0) * factor))
    out = None
    for top in range(y0, y1, rows):
        band = _reducible(img.crop((x0, top, x1, min(y1, top + rows))))  # crop keeps the palette and info
        small = band.reduce(factor) if factor > 1 else band
        if out is None:
            out = Image.new(small.mode, (math.ceil((x1 - x0) / factor), math.ceil((y1 - y0) / factor)))
        out.paste(small, (0, (top - y0) // factor))
    return out


def shrink_upload(data: bytes, size: int) -> bytes:
    """Image bytes -> the bytes ``api.load_image`` then prepares, with the decoded pixels capped and the
    image made small at once: the centre square (all that the preparation keeps), box-reduced to 2-4x
    ``size`` and turned upright; a small square upright image comes back as it was."""
    cap = LIMITS["max_upload_pixels"]
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadRequest(f"the image has far too many pixels; at most {cap:,} pixels", 413) from None
    except Exception as e:  # PIL raises many kinds for things that are not images
        raise BadRequest(f"the upload is not a readable image ({type(e).__name__})") from None
    work = None
    try:
        w, h = img.size
        if img.format == "JPEG" and min(w, h) >= 2 * size:
            img.draft(img.mode, (size, size))  # decode at 1/2, 1/4 or 1/8 scale, as folder data is
        dw, dh = img.size
        if dw * dh > cap:
            scaled = f" ({dw}x{dh} at the scale it is decoded)" if (dw, dh) != (w, h) else ""
            raise BadRequest(f"the image is {w}x{h} pixels{scaled}; at most {cap:,} pixels", 413)
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # malformed EXIF: keep the pixels as stored, as folder data does
            orientation = 1
        s = min(dw, dh)
        factor = max(1, s // (2 * size))
        mx, my = (dw - s) // 2, (dh - s) // 2  # the centre square, one pixel longer where the margin is odd:
        box = (mx, my, dw - mx, dh - my)       # symmetric, so the preparation's centre crop is unchanged
        if factor == 1 and box == (0, 0, dw, dh) and orientation not in _UPRIGHT:
            img.load()  # truncated files fail here, inside the try
            return data
        img.load()
        work = _reduce_in_bands(img, factor, box)
        img.close()  # the decoded pixels go now, before the encoding below
        if img.mode.startswith("I;16"):
            work = work.convert(img.mode)
        if orientation in _UPRIGHT:
            work = work.transpose(_UPRIGHT[orientation])
        buf = io.BytesIO()
        work.save(buf, format="TIFF")  # lossless, and keeps every mode above (16-bit, float, CMYK, alpha)
        return buf.getvalue()
    except BadRequest:
        raise
    except Exception as e:
        raise BadRequest(f"the upload is not a readable image ({type(e).__name__})") from None
    finally:
        if work is not None:
            work.close()
        img.close()


def read_upload(data: bytes, channels: int, size: int) -> torch.Tensor:
    """Uploaded bytes -> (1, channels, size, size) in [0, 1], prepared as folder data is (pixel cap first,
    decoded and reduced with bounded memory: :func:`shrink_upload`)."""
    small = shrink_upload(data, size)
    try:
        return api.load_image(small, channels, size)
    except GanvaeError as e:
        raise BadRequest(str(e)) from None


class HeavySlots:
    """At most ``LIMITS["heavy_requests"]`` heavy requests (uploads) at a time in one app; a request waits up to
    ``LIMITS["heavy_wait_s"]`` seconds for a slot, then is refused with 503. A thread-safe counter polled from
    async code, so it works whatever event loop (or loops: one per test client) calls it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.busy = 0

    def try_take(self) -> bool:
        with self._lock:
            if self.busy < LIMITS["heavy_requests"]:
                self.busy += 1
                return True
            return False

    def give(self) -> None:
        with self._lock:
            self.busy -= 1

    async def take(self) -> None:
        import anyio

        deadline = time.monotonic() + LIMITS["heavy_wait_s"]
        while not self.try_take():
            if time.monotonic() >= deadline:
                n = LIMITS["heavy_requests"]
                raise BadRequest(f"busy: the server is already working on {n} upload{'s' if n != 1 else ''} "
                                 "(its limit); try again in a moment", 503, {"Retry-After": "2"})
            await anyio.sleep(0.02)


def _check_length(request) -> None:
    """A 413 for a body whose Content-Length is already too large, before any of it is read."""
    cap = LIMITS["max_upload_bytes"]
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > cap + 64 * 1024:
        raise BadRequest(f"the upload is {int(length):,} bytes; at most {cap:,} bytes", 413)


async def _upload(request) -> tuple[bytes, str | None]:
    """The bytes of the multipart field "image" (size-capped) and the optional class field "cls" as sent
    (the caller has checked the Content-Length: :func:`_check_length`)."""
    cap = LIMITS["max_upload_bytes"]
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except Exception as e:  # HTTPException(400) for malformed multipart bodies, or a parser error
        detail = getattr(e, "detail", None) or str(e) or type(e).__name__
        raise BadRequest(f"could not read the upload: {detail}") from None
    try:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise BadRequest("send the image as multipart form field 'image'")
        data = await upload.read(cap + 1)
        if len(data) > cap:
            raise BadRequest(f"the upload is larger than allowed: at most {cap:,} bytes", 413)
        if not data:
            raise BadRequest("the upload is empty")
        cls = form.get("cls") if isinstance(form.get("cls"), str) else None
    finally:
        await form.close()
    return data, cls

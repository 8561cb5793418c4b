"""`ganvae serve` keeps its memory bounded under uploads: a pixel cap, a small limit on concurrent uploads (503
past it), and uploads made small right after decoding.

Before: six concurrent 6000x6000 RGBA PNGs (136 KiB each on the wire, under the 40 MP cap of the time) took
the server from 0.4 to 4.5 GB, and six 4096x4096 ones added 1.9 GB: every upload was decoded at full size and
converted with full-size numpy copies (about 28 bytes a pixel), all at once.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
import zlib

import ganvae.serve.app as serve_app
import numpy as np
import pytest
from ganvae import api
from ganvae.serve import LIMITS, make_app
from helpers import train_tiny
from PIL import Image

with warnings.catch_warnings():  # starlette >= 1 nudges towards httpx2 for its test client; httpx works
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("serve-memory") / "vae", "mlp-vae", steps=2, latent_dim=4).path


@pytest.fixture(scope="module")
def app(vae):
    return make_app([vae])


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGBA pixels in a few dozen bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def upload(client, data: bytes, name: str = "a.png"):
    return client.post("/api/run/0/reconstruct", files={"image": (name, data, "application/octet-stream")})


def assert_refused(r, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert all(w in msg for w in words), msg


def test_pixel_cap(app):
    cap = LIMITS["max_upload_pixels"]
    assert cap <= 4096 * 4096  # <= 64 MiB decoded at 4 bytes a pixel
    c = TestClient(app, base_url=LOCAL)
    big = encode(Image.new("L", (5000, 5000), 128))  # 25 MP, a few KiB on the wire
    assert len(big) < 100_000
    assert_refused(upload(c, big), 413, "5000x5000", f"{cap:,}")
    side = math.isqrt(cap)
    assert_refused(upload(c, encode(Image.new("L", (side + 1, side), 9))), 413, "at most")
    assert_refused(upload(c, png_header_only(30000, 30000)), 413, "pixels")  # PIL's own bomb limit: also a 413
    assert_refused(upload(c, png_header_only(side, side + 64)), 413, f"{side}x{side + 64}")
    assert upload(c, encode(Image.new("RGB", (side, side // 3), (10, 20, 30)))).status_code == 200
    # a JPEG is decoded at 1/8 scale when the model is small: what counts is the pixels decoded
    jpeg = encode(Image.new("RGB", (side + 800, side + 800), (200, 40, 40)), "JPEG", quality=50)
    assert upload(c, jpeg, "a.jpg").status_code == 200


def _prepared_both_ways(data: bytes, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    direct = api.load_image(data, channels, size).numpy()  # the full-size preparation, as folder data
    shrunk = serve_app.read_upload(data, channels, size).numpy()
    assert shrunk.shape == direct.shape == (1, channels, size, size)
    return direct, shrunk


def _smooth(w: int, h: int, bands: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = [127.5 + 127.5 * np.sin(x / w * (2 + k) + y / h * (3 - k) + k) for k in range(bands)]
    return np.clip(np.rint(np.stack(out, -1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P", "P+transparency", "1", "I;16", "F", "CMYK"])
def test_shrunk_uploads_are_prepared_as_before(mode):
    """Reducing right after decoding changes the prepared image only by resampling noise (a guard, not a repro:
    the old code prepared at full size, which is what this compares with)."""
    w, h = 1100, 700  # landscape: a centre crop, and a 5x box reduction for size 64
    a = _smooth(w, h, 4)
    if mode == "RGBA":
        img = Image.fromarray(a, "RGBA")
    elif mode in ("RGB", "CMYK"):
        img = Image.fromarray(a[..., :3], "RGB").convert(mode)
    elif mode == "L":
        img = Image.fromarray(a[..., 0], "L")
    elif mode == "LA":
        img = Image.fromarray(a[..., :2].copy(), "LA")
    elif mode == "1":
        img = Image.fromarray(a[..., 0], "L").convert("1")
    elif mode == "I;16":
        img = Image.fromarray(a[..., 0].astype(np.uint16) * 257)
        assert img.mode == "I;16"
    elif mode == "F":
        img = Image.fromarray(a[..., 0].astype(np.float32) / 255)
    else:
        img = Image.fromarray(a[..., :3], "RGB").quantize(64)
        if mode == "P+transparency":
            img.info["transparency"] = 0
    fmt = "TIFF" if mode in ("F", "CMYK") else "PNG"
    data = encode(img, fmt)
    for channels in (1, 3):
        direct, shrunk = _prepared_both_ways(data, channels, 64)
        tol = 0.35 if mode == "1" else 0.06  # dithered 1-bit: box vs Lanczos filtering of dots
        assert np.abs(direct - shrunk).mean() < tol / 4 and np.abs(direct - shrunk).max() < tol * 2, (
            mode, channels, np.abs(direct - shrunk).mean(), np.abs(direct - shrunk).max())


def test_shrunk_uploads_keep_exif_orientation():
    a = _smooth(900, 600)
    a[:100, :100] = 255  # a white corner, so a wrong turn shows
    exif = Image.Exif()
    for orientation in (3, 6, 8):
        exif[0x0112] = orientation
        data = encode(Image.fromarray(a, "RGB"), "PNG", exif=exif.tobytes())
        direct, shrunk = _prepared_both_ways(data, 3, 32)
        assert np.abs(direct - shrunk).mean() < 0.02, orientation


def test_heavy_request_limit_answers_503(app, monkeypatch):
    monkeypatch.setitem(LIMITS, "heavy_requests", 1)
    monkeypatch.setitem(LIMITS, "heavy_wait_s", 0.3)
    entered, release = threading.Event(), threading.Event()
    real = serve_app.read_upload

    def held(data, channels, size):  # the first upload holds the only slot (decoding) until released
        entered.set()
        assert release.wait(20), "never released"
        return real(data, channels, size)

    monkeypatch.setattr(serve_app, "read_upload", held)
    small = encode(Image.new("RGB", (20, 12), (200, 40, 40)))
    first = {}

    def post_first():
        first["r"] = upload(TestClient(app, base_url=LOCAL), small)

    t = threading.Thread(target=post_first, daemon=True)
    t.start()
    try:
        assert entered.wait(20), "the first upload never started"
        c = TestClient(app, base_url=LOCAL)
        r = upload(c, small)
        assert_refused(r, 503, "busy")
        assert int(r.headers["retry-after"]) >= 1
        assert upload(c, small).status_code == 503  # still held
        assert c.get("/api/run/0/grid.png?n=4").status_code == 200  # light requests are not limited
    finally:
        release.set()
        t.join(20)
    assert first["r"].status_code == 200, first["r"].text
    # the slot is free again, also after refused uploads
    c = TestClient(app, base_url=LOCAL)
    assert_refused(upload(c, b"not an image"), 400, "not a readable image")
    assert_refused(upload(c, b""), 400, "empty")
    assert upload(c, small).status_code == 200
    assert app.state.heavy.busy == 0


MEASURE = textwrap.dedent('''
    import asyncio, io, json, sys, warnings
    warnings.simplefilter("ignore")
    import httpx
    from PIL import Image
    from ganvae.serve import LIMITS, make_app

    run, image, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    LIMITS["heavy_wait_s"] = 120  # every upload is served (in turn): what is measured is the work, not refusals
    with open(image, "rb") as f:  # made by the parent: making it here would raise the peak before the measurement
        data = f.read()
    side = Image.open(io.BytesIO(data)).size[0]
    app = make_app([run])

    def status(key):  # bytes, from /proc/self/status (Linux)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    def reset_peak():  # the high-water mark back to the current RSS: earlier peaks (imports, loading) don't count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=300) as c:
            warm = io.BytesIO()
            Image.new("RGBA", (300, 200), (1, 2, 3, 4)).save(warm, format="PNG")
            r = await c.post("/api/run/0/reconstruct", files={"image": ("a.png", warm.getvalue(), "image/png")})
            assert r.status_code == 200, r.text
            reset_peak()
            before = status("VmRSS")
            rs = await asyncio.gather(*[c.post("/api/run/0/reconstruct",
                                               files={"image": ("a.png", data, "image/png")}) for _ in range(n)])
            print(json.dumps({"side": side, "bytes": len(data), "status": [r.status_code for r in rs],
                              "before": before, "peak": status("VmHWM")}))

    asyncio.run(main())
''')


def test_six_concurrent_largest_uploads_stay_bounded(vae, tmp_path):
    """Peak RSS growth (Linux's VmHWM, reset just before), in a fresh process, for six concurrent uploads of the
    largest image allowed, RGBA.

    Bound: an upload holds one full-size buffer, its decoded pixels (4 bytes a pixel at most; conversions and
    the reduction go a band at a time), and only LIMITS["heavy_requests"] uploads are decoded at once; plus
    128 MiB for the rest (bands, PNG decoder, upload bytes, allocator slack). At the defaults (4096 x 4096, 2)
    that is 256 MiB (measured: ~150 MiB); before the limits it was ~1.9 GB.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("measures the peak RSS through Linux's /proc/self/status and /proc/self/clear_refs")
    side = math.isqrt(LIMITS["max_upload_pixels"])  # the largest square image allowed
    image = tmp_path / "largest.png"  # RGBA: 4 bytes a pixel decoded, ~80 KB on the wire
    Image.linear_gradient("L").resize((side, side)).convert("RGBA").save(image, compress_level=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(vae), str(image), "6"], capture_output=True,
                         text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["status"] == [200] * 6, m
    assert m["side"] ** 2 <= LIMITS["max_upload_pixels"] and m["bytes"] < LIMITS["max_upload_bytes"]
    growth = m["peak"] - m["before"]
    slots = LIMITS.get("heavy_requests", 2)  # .get: without the limit (the old code) the bound fails, not this
    bound = slots * 4 * LIMITS["max_upload_pixels"] + 128 * 2**20
    print(f"six concurrent {m['side']}x{m['side']} RGBA uploads: peak RSS {m['before'] / 2**20:.0f} -> "
          f"{m['peak'] / 2**20:.0f} MiB, +{growth / 2**20:.0f} MiB "
          f"(bound {bound / 2**20:.0f} MiB)")
    assert growth < bound, f"peak RSS grew by {growth / 2**20:.0f} MiB; bound {bound / 2**20:.0f} MiB"

"""`ganvae serve` in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Generates a grid, changes the seed (the picture changes; back to the first seed, it comes back), moves a latent
slider (the slider image changes), types a bad seed (a visible error message, and the page recovers), picks a
class on a conditional run and uploads an image to a VAE. Screenshots go to the test's tmp folder and, when
GANVAE_SCREENSHOT_DIR is set, there too. Skips, saying why, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from ganvae.serve import make_app
from helpers import train_tiny
from PIL import Image

CHROMIUM = os.environ.get("GANVAE_CHROMIUM") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium, or set GANVAE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _browser_or_skip()
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    runs = [train_tiny(root / "gan", steps=2).path,
            train_tiny(root / "vae", "mlp-vae", steps=3, latent_dim=4, enc_hidden=[16], dec_hidden=[16]).path,
            train_tiny(root / "cgan", "cdcgan", steps=2).path]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free port, held until uvicorn takes the socket over
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(runs), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def page(server):
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 1000})
            pg.on("pageerror", lambda e: pytest.fail(f"JavaScript error on the page: {e}"))
            pg.goto(server + "/")
            pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
            yield pg
        finally:
            browser.close()


def screenshot(pg, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    pg.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("GANVAE_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    return path


def src(pg, selector: str) -> str:
    return pg.locator(selector).get_attribute("src") or ""


def wait_src_change(pg, selector: str, old: str) -> str:
    pg.wait_for_function("([s, old]) => { const i = document.querySelector(s);"
                         " return i && i.src && i.src !== old && !i.classList.contains('busy'); }",
                         arg=[selector, old], timeout=30_000)
    return src(pg, selector)


def test_explore_runs_in_the_browser(page, tmp_path):
    pg = page
    panels = pg.locator(".panel")
    assert panels.count() == 3
    boxes = [panels.nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"] and boxes[0]["y"] == boxes[1]["y"]  # side by side
    assert [panels.nth(i).locator("h2").inner_text() for i in range(3)] == ["gan", "vae", "cgan"]

    g = ".panel[data-run='0']"
    grid = f"{g} img.grid"
    first = src(pg, grid)
    assert first.startswith("data:image/png;base64,")
    assert pg.locator(grid).evaluate("i => i.naturalWidth") > 0

    # a new seed gives a new grid; the first seed gives the first grid back
    pg.fill(f"{g} input.seed", "7")
    pg.click(f"{g} button.generate")
    seven = wait_src_change(pg, grid, first)
    assert seven != first
    pg.fill(f"{g} input.seed", "0")
    pg.click(f"{g} button.generate")
    assert wait_src_change(pg, grid, seven) == first

    # moving a latent slider changes the slider image
    trav = f"{g} img.traverse"
    before = src(pg, trav)
    assert before.startswith("data:image/png;base64,")
    slider = pg.locator(f"{g} input.slider[data-dim='0']")
    slider.fill("2.5")
    moved = wait_src_change(pg, trav, before)
    assert moved != before and slider.input_value() == "2.5"
    assert pg.locator(f"{g} .sliders .v").first.inner_text() == "2.5"

    # conditional run: a class picker; another class, another grid
    c = ".panel[data-run='2']"
    assert pg.locator(f"{c} select.cls option").count() == 11  # "random" + 10 digits
    assert not pg.locator(".panel[data-run='0'] .cls-label").is_visible()
    cgrid = src(pg, f"{c} img.grid")
    pg.select_option(f"{c} select.cls", "3")
    wait_src_change(pg, f"{c} img.grid", cgrid)

    # a VAE reconstructs an uploaded image; the GAN panels offer no upload
    v = ".panel[data-run='1']"
    assert pg.locator(f"{v} input.upload").is_visible() and not pg.locator(f"{g} input.upload").is_visible()
    buf = io.BytesIO()
    Image.new("L", (28, 28), 30).save(buf, format="PNG")
    pg.set_input_files(f"{v} input.upload", {"name": "digit.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    wait_src_change(pg, f"{v} img.recon", "")
    screenshot(pg, tmp_path, "serve.png")

    # a bad seed: a visible error, the last good grid stays; a good seed clears it
    err = pg.locator(f"{g} .error")
    assert not err.is_visible()
    pg.fill(f"{g} input.seed", "-5")
    pg.click(f"{g} button.generate")
    err.wait_for(state="visible", timeout=30_000)
    assert "seed -5" in err.inner_text() and "0 to" in err.inner_text()
    assert src(pg, grid) == first
    pg.fill(f"{g} input.steps", "5000")
    pg.click(f"{g} button.interp-go")
    pg.wait_for_function("s => document.querySelector(s).innerText.includes('steps 5000')",
                         arg=f"{g} .error", timeout=30_000)
    shot = screenshot(pg, tmp_path, "serve-error.png")
    assert Image.open(shot).size[0] >= 1440
    pg.fill(f"{g} input.seed", "7")
    pg.click(f"{g} button.generate")
    assert wait_src_change(pg, grid, first) == seven
    pg.fill(f"{g} input.steps", "6")
    pg.click(f"{g} button.interp-go")
    err.wait_for(state="hidden", timeout=30_000)

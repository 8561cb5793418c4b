"""The README's pictures from well-trained runs: the `ganvae serve` screenshot and sample grids, with their numbers.

    .venv/bin/python benchmarks/readme_images.py --train-minutes 10          # trains cdcgan and vae on mnist first
    .venv/bin/python benchmarks/readme_images.py --gan runs/mnist-cgan --vae runs/mnist-vae   # existing runs
    # smoke test of the script only (pictures meaningless; not for docs/images):
    .venv/bin/python benchmarks/readme_images.py --data digits --train-minutes 0.05 --out /tmp/readme-images \\
        --runs /tmp/readme-runs

With ``--train-minutes M`` it trains a conditional GAN (``--gan-model``, cdcgan) and a VAE (``--vae-model``, vae)
on ``--data`` for M minutes each (training time, 2 CPU cores unless the machine has more), then scores each with
``ganvae eval`` (domain FID, 10000 samples vs the test split) so the caption can say what the pictures show.
Writes into ``--out`` (default docs/images): ``serve.png`` (headless Chromium through Playwright: the two runs
side by side, the GAN panel showing class 7, the VAE reconstructing a real test image), ``samples-gan.png`` and
``samples-vae.png`` (64 samples, seed 0; the GAN one class per row), and ``readme-images.json`` (runs, minutes,
steps, FID, machine and command) for the caption.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

import ganvae
from ganvae import api
from ganvae.images import save_grid
from ganvae.util.cpu import model_name

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan", help="an existing conditional GAN run (else --train-minutes trains one)")
    p.add_argument("--vae", help="an existing VAE run (else --train-minutes trains one)")
    p.add_argument("--train-minutes", type=float, help="train each missing run this long")
    p.add_argument("--gan-model", default="cdcgan")
    p.add_argument("--vae-model", default="vae")
    p.add_argument("--data", default="mnist")
    p.add_argument("--n", type=int, default=10000, help="samples for the FID in the caption")
    p.add_argument("--runs", default="benchmarks/runs/readme")
    p.add_argument("--out", default="docs/images")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    a = p.parse_args(argv)
    if (a.gan is None or a.vae is None) and not a.train_minutes:
        p.error("give --gan and --vae runs, or --train-minutes M to train them")
    return a


def _run(a, which: str) -> Path:
    given = getattr(a, which)
    if given:
        return Path(given)
    model = a.gan_model if which == "gan" else a.vae_model
    out = Path(a.runs) / f"{model}-{a.data}"
    api.train(model, a.data, out=out, overwrite=True, steps=10**9, max_minutes=a.train_minutes, progress=False,
              log=lambda *x: None, set=["train.report=false", "train.tensorboard=false"])
    return out


def _serve(runs: list[Path]):
    import uvicorn

    from ganvae.serve import make_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(make_app([str(r) for r in runs]), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _wait_src(pg, selector: str, old: str) -> None:
    pg.wait_for_function("([s, old]) => { const i = document.querySelector(s);"
                         " return i && i.src && i.src !== old && !i.classList.contains('busy'); }",
                         arg=[selector, old], timeout=120_000)


def screenshot(a, gan: Path, vae: Path, path: Path, test_png: bytes) -> None:
    from playwright.sync_api import sync_playwright

    srv, thread, url = _serve([gan, vae])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1000, "height": 1000})
            pg.goto(url + "/")
            pg.wait_for_selector("body[data-ready='1']", timeout=120_000)
            g, v = ".panel[data-run='0']", ".panel[data-run='1']"
            old = pg.locator(f"{g} img.grid").get_attribute("src") or ""
            pg.select_option(f"{g} select.cls", "7")
            _wait_src(pg, f"{g} img.grid", old)
            pg.set_input_files(f"{v} input.upload", {"name": "test-digit.png", "mimeType": "image/png",
                                                       "buffer": test_png})
            _wait_src(pg, f"{v} img.recon", "")
            pg.screenshot(path=str(path), full_page=True)
            browser.close()
    finally:
        srv.should_exit = True
        thread.join(10)


def _test_png(data: str) -> bytes:
    from PIL import Image

    from ganvae.data import DataConfig, load_data

    x = load_data(DataConfig(source=data), progress=False).test.images[0]  # (C, H, W) uint8
    img = Image.fromarray(x[0].numpy()) if x.shape[0] == 1 else Image.fromarray(x.permute(1, 2, 0).numpy())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fid(run: Path, n: int) -> float | None:
    recs = api.evaluate(run, "fid", n=n, seed=0, log=None, progress=False)
    return next((r["value"] for r in recs if r["metric"] == "fid"), None)


def main(argv=None) -> int:
    a = parse(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gan, vae = _run(a, "gan"), _run(a, "vae")
    record = {"command": " ".join(shlex.quote(x) for x in ["python", *(sys.argv if argv is None else
                                                                       ["benchmarks/readme_images.py", *argv])]),
              "machine": f"{model_name()}, {platform.machine()}", "ganvae": ganvae.__version__, "runs": {}}
    for name, run in (("gan", gan), ("vae", vae)):
        info = api.info(run)
        model = api.load(run)
        kw = {"labels": [i // 8 % model.config.num_classes for i in range(64)]} if model.conditional else {}
        save_grid(model.sample(64, seed=0, **kw), out / f"samples-{name}.png", nrow=8)
        record["runs"][name] = {"run": str(run), "model": info.get("model"), "step": info.get("step"),
                                "train_s": info.get("train_time_s"), "fid": _fid(run, a.n),
                                "fid_protocol": f"ganvae eval --metrics fid -n {a.n} (test split, auto features)"}
    screenshot(a, gan, vae, out / "serve.png", _test_png(a.data))
    (out / "readme-images.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`ganvae serve`: the web explorer's endpoints on tiny trained runs, bad requests, and the CLI's checks."""

from __future__ import annotations

import io
import socket
import warnings

import numpy as np
import pytest
from ganvae.cli import main
from ganvae.serve import LIMITS, make_app
from helpers import train_tiny
from PIL import Image

with warnings.catch_warnings():  # starlette >= 1 nudges towards httpx2 for its test client; httpx works
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {
        "gan": train_tiny(root / "gan", steps=2).path,
        "vae": train_tiny(root / "vae", "mlp-vae", steps=3, latent_dim=4, enc_hidden=[16], dec_hidden=[16]).path,
        "cgan": train_tiny(root / "cgan", "cdcgan", steps=2).path,
    }


@pytest.fixture(scope="module")
def client(runs):
    # base_url: the app, made for 127.0.0.1, answers only loopback Host names (not TestClient's "testserver")
    with TestClient(make_app([runs["gan"], runs["vae"], runs["cgan"]]), base_url="http://127.0.0.1") as c:
        yield c


def png(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def grid_side(n_per_row: int, tile: int, pad: int = 2) -> int:
    return n_per_row * (tile + pad) + pad


def png_bytes(size=(20, 12), colour=(200, 40, 40), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def assert_refused(r, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert msg and all(w in msg for w in words), msg


def test_page_and_run_list(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/app.js">' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    js = client.get("/app.js")
    assert js.status_code == 200 and "http" not in js.text.replace("HTTP ", "")
    body = client.get("/api/runs").json()
    names = [(r["name"], r["model"], r["family"], r["conditional"], r["reconstruct"]) for r in body["runs"]]
    assert names == [("gan", "dcgan", "gan", False, False), ("vae", "mlp-vae", "vae", False, True),
                     ("cgan", "cdcgan", "gan", True, False)]
    assert body["runs"][2]["num_classes"] == 10 and body["runs"][0]["latent_dim"] == 8
    assert body["limits"]["max_n"] == LIMITS["max_n"]


def test_grid_sizes_and_seeds(client):
    a = png(client.get("/api/run/0/grid.png?seed=1&n=4"))
    assert a.shape == (grid_side(2, 64), grid_side(2, 64))  # 8x8 images enlarged to 64, 2x2
    assert np.array_equal(a, png(client.get("/api/run/0/grid.png?seed=1&n=4")))  # same seed, same picture
    assert not np.array_equal(a, png(client.get("/api/run/0/grid.png?seed=2&n=4")))  # another seed differs
    big = png(client.get("/api/run/1/grid.png?seed=0&n=25"))
    assert big.shape == (grid_side(5, 32), grid_side(5, 32))
    top = png(client.get(f"/api/run/0/grid.png?seed={2**63 - 1}&n=1"))  # the largest seed is fine
    assert top.shape == (grid_side(1, 64), grid_side(1, 64))


def test_class_picker_changes_conditional_samples(client):
    g3 = png(client.get("/api/run/2/grid.png?seed=5&n=4&cls=3"))
    assert np.array_equal(g3, png(client.get("/api/run/2/grid.png?seed=5&n=4&cls=3")))
    assert not np.array_equal(g3, png(client.get("/api/run/2/grid.png?seed=5&n=4&cls=7")))


def test_sliders_and_interpolation(client):
    base = png(client.get("/api/run/0/traverse.png?seed=3"))
    assert base.shape == (grid_side(1, 128), grid_side(1, 128))
    assert np.array_equal(base, png(client.get("/api/run/0/traverse.png?seed=3&dims=")))
    moved = png(client.get("/api/run/0/traverse.png?seed=3&dims=2:2.5"))
    assert not np.array_equal(base, moved)
    assert np.array_equal(moved, png(client.get("/api/run/0/traverse.png?seed=3&dims=2:2.5,5:0")))
    # the slider base is the code sample(1, seed) decodes: the same picture as a one-image grid
    one = png(client.get("/api/run/0/grid.png?seed=3&n=1"))
    assert np.array_equal(one[2:-2:8, 2:-2:8], base[2:-2:16, 2:-2:16])
    row = png(client.get("/api/run/0/interpolate.png?a=1&b=2&steps=5"))
    assert row.shape == (grid_side(1, 64), grid_side(5, 64))
    first, last = row[2:66, 2:66], row[2:66, -66:-2]
    assert np.array_equal(first[::8, ::8], png(client.get("/api/run/0/grid.png?seed=1&n=1"))[2:-2:8, 2:-2:8])
    assert not np.array_equal(first, last)
    crow = png(client.get("/api/run/2/interpolate.png?a=1&b=2&steps=3&cls=4"))
    assert crow.shape == (grid_side(1, 64), grid_side(3, 64))


@pytest.mark.parametrize("url, status, words", [
    ("/api/run/0/grid.png?seed=-1", 400, ["seed -1", "0 to"]),
    (f"/api/run/0/grid.png?seed={2**63}", 400, ["seed", str(2**63)]),
    ("/api/run/0/grid.png?seed=abc", 400, ["seed 'abc'"]),
    ("/api/run/0/grid.png?seed=1.5", 400, ["seed"]),
    (f"/api/run/0/grid.png?n={LIMITS['max_n'] + 1}", 400, ["n ", str(LIMITS["max_n"])]),
    ("/api/run/0/grid.png?n=0", 400, ["n 0"]),
    ("/api/run/2/grid.png?cls=10", 400, ["class 10", "0 to 9"]),
    ("/api/run/2/grid.png?cls=-1", 400, ["class -1"]),
    ("/api/run/0/grid.png?cls=1", 400, ["not class-conditional"]),
    ("/api/run/0/traverse.png?dims=0:nan", 400, ["slider 0", "nan"]),
    ("/api/run/0/traverse.png?dims=0:inf", 400, ["slider 0"]),
    ("/api/run/0/traverse.png?dims=1:1e308", 400, ["slider 1", "-10 to 10"]),
    ("/api/run/0/traverse.png?dims=0:11", 400, ["slider 0", "11"]),
    ("/api/run/0/traverse.png?dims=8:1", 400, ["dimension must be 0 to 7"]),
    ("/api/run/0/traverse.png?dims=zz", 400, ["DIM:VALUE"]),
    ("/api/run/0/interpolate.png?steps=1000", 400, ["steps 1000"]),
    ("/api/run/0/interpolate.png?a=-3", 400, ["seed -3"]),
    ("/api/run/3/grid.png", 404, ["run 3", "no such run"]),
    ("/api/run/-1/traverse.png", 404, ["no such run"]),
    ("/api/run/x/interpolate.png", 404, ["no such run"]),
])
def test_bad_requests_get_a_message_and_the_server_keeps_serving(client, url, status, words):
    assert_refused(client.get(url), status, *words)
    png(client.get("/api/run/0/grid.png?seed=0&n=1"))


def test_reconstruct_for_vaes_only(client):
    r = client.post("/api/run/1/reconstruct", files={"image": ("a.png", png_bytes(), "image/png")})
    pair = png(r)
    assert pair.shape == (grid_side(1, 128), grid_side(2, 128))  # input | reconstruction, 8x8 enlarged
    jpg = client.post("/api/run/1/reconstruct", files={"image": ("a.jpg", png_bytes(fmt="JPEG"), "image/jpeg")})
    png(jpg)
    assert_refused(client.post("/api/run/0/reconstruct", files={"image": ("a.png", png_bytes(), "image/png")}),
                   400, "dcgan", "VAE")
    assert_refused(client.post("/api/run/1/reconstruct", files={"image": ("a.png", b"not an image", "image/png")}),
                   400, "not a readable image")
    too_big = b"\0" * (LIMITS["max_upload_bytes"] + 1)
    assert_refused(client.post("/api/run/1/reconstruct", files={"image": ("a.png", too_big, "image/png")}),
                   413, "at most")
    far_too_big = b"\0" * (LIMITS["max_upload_bytes"] + 2**20)  # refused from its Content-Length alone
    assert_refused(client.post("/api/run/1/reconstruct", files={"image": ("a.png", far_too_big, "image/png")}),
                   413, "at most")
    assert_refused(client.post("/api/run/1/reconstruct", files={"image": ("a.png", b"", "image/png")}),
                   400, "empty")
    assert_refused(client.post("/api/run/1/reconstruct", data={"other": "x"}), 400, "field 'image'")
    assert_refused(client.post("/api/run/1/reconstruct", content=b"raw", headers={"content-type": "image/png"}),
                   400, "field 'image'")
    assert client.get("/api/run/1/reconstruct").status_code == 405
    png(client.post("/api/run/1/reconstruct", files={"image": ("a.png", png_bytes(), "image/png")}))


def test_conditional_vae_reconstructs_with_a_class(tmp_path):
    out = train_tiny(tmp_path / "cvae", "cvae", steps=2, latent_dim=4).path
    with TestClient(make_app([out]), base_url="http://127.0.0.1") as c:
        files = {"image": ("a.png", png_bytes(), "image/png")}
        assert_refused(c.post("/api/run/0/reconstruct", files=files), 400, "class")
        assert_refused(c.post("/api/run/0/reconstruct", files=files, data={"cls": "99"}), 400, "class 99")
        png(c.post("/api/run/0/reconstruct", files=files, data={"cls": "2"}))


def test_cli_serve_refuses_missing_runs_and_bad_ports(runs, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganvae: error:") and "missing" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", str(runs["gan"]), str(tmp_path)]) == 2  # a folder without an exported model
    err = capsys.readouterr().err
    assert "no exported model" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", str(runs["gan"]), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "--port 70000" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as busy:  # a port in use: one line, not a traceback
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(runs["gan"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}" in err and "choose another --port" in err and len(err.strip().splitlines()) == 1

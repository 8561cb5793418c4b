"""The translation panel of `ganvae serve`: upload an image, get it beside its translation; refusals as JSON."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from ganvae.serve import make_app
from helpers import train_tiny

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("tserve")
    p2p = train_tiny(root / "p2p", "pix2pix", "shapes-edges", steps=1, batch_size=4,
                     more=["data.n=20", "data.image_size=8"]).path
    gan = train_tiny(root / "gan", steps=1).path
    with TestClient(make_app([p2p, gan]), base_url="http://127.0.0.1") as c:
        yield c


def upload(mode="L", size=(20, 20)) -> dict:
    buf = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (128, 10, 10)).save(buf, format="PNG")
    return {"image": ("x.png", buf.getvalue(), "image/png")}


def test_runs_say_which_translate(client):
    runs = client.get("/api/runs").json()["runs"]
    assert runs[0]["translate"] and runs[0]["directions"] == ["a2b"]
    assert not runs[1]["translate"] and runs[1]["directions"] == []


def test_translate_returns_input_beside_output(client):
    r = client.post("/api/run/0/translate?direction=a2b", files=upload())
    assert r.status_code == 200, r.text
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape[1] > img.shape[0]  # two tiles side by side
    # a colour upload is converted to the source domain's channels, as reconstruction does
    assert client.post("/api/run/0/translate", files=upload("RGB")).status_code == 200


@pytest.mark.parametrize("url,match", [
    ("/api/run/0/translate?direction=b2a", "direction 'b2a'"),
    ("/api/run/1/translate", "translation needs a pix2pix or cyclegan run"),
])
def test_translate_refusals(client, url, match):
    r = client.post(url, files=upload())
    assert r.status_code == 400 and match in r.json()["error"]


def test_the_page_has_the_panel(client):
    page = client.get("/").text
    assert 'class="translate-section"' in page and 'class="gen-sections"' in page
    assert "updateTranslate" in client.get("/app.js").text

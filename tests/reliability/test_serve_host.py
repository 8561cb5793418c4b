"""`ganvae serve` against DNS rebinding and framing: loopback Host names only, no absolute paths, security headers.

A page on another site can point its own host name at 127.0.0.1 (DNS rebinding) and then read the explorer as
same-origin: the app made for a loopback address must refuse any Host that is not a loopback name, and what it
does serve must not reveal where the runs live on disk. Every answer carries a content security policy that lets
only the page's own script run, and the headers that stop sniffing and framing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest
from ganvae.serve import make_app
from helpers import train_tiny

with warnings.catch_warnings():  # starlette >= 1 nudges towards httpx2 for its test client; httpx works
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs whose folders are both called "vae" (so the names need a parent) and a GAN, by absolute path."""
    root = tmp_path_factory.mktemp("serve-host").resolve()
    a = train_tiny(root / "a" / "vae", "mlp-vae", steps=2, latent_dim=4).path
    b = root / "b" / "vae"
    shutil.copytree(a, b)
    gan = train_tiny(root / "gan", steps=2).path
    return [Path(a), b, Path(gan)]


@pytest.fixture(scope="module")
def app(runs):
    return make_app(runs)  # the default host: 127.0.0.1


def test_foreign_host_names_are_refused_on_loopback(app):
    c = TestClient(app, base_url=LOCAL)
    for host in ("evil.example", "evil.example:7860", "127.0.0.1.evil.example", "testserver", "0.0.0.0"):
        for url in ("/", "/api/runs", "/api/run/0/grid.png?n=1"):
            r = c.get(url, headers={"Host": host})
            assert r.status_code == 400, (host, url, r.status_code)
            assert b"vae" not in r.content and b"PNG" not in r.content
    assert c.post("/api/run/0/reconstruct", headers={"Host": "evil.example"}, files={"image": ("a", b"x")}
                  ).status_code == 400
    for host in ("127.0.0.1", "127.0.0.1:7860", "localhost", "localhost:7860", "LOCALHOST:1", "[::1]:7860", "[::1]"):
        r = c.get("/api/runs", headers={"Host": host})
        assert r.status_code == 200, (host, r.text)
        assert c.get("/", headers={"Host": host}).status_code == 200


def test_other_bind_addresses(runs):
    # bound to another loopback address: that one is a loopback name too
    c = TestClient(make_app(runs[2:], host="127.0.0.2"), base_url=LOCAL)
    assert c.get("/api/runs", headers={"Host": "127.0.0.2:7860"}).status_code == 200
    assert c.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    c6 = TestClient(make_app(runs[2:], host="::1"), base_url=LOCAL)
    assert c6.get("/api/runs", headers={"Host": "[::1]:7860"}).status_code == 200
    assert c6.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    # bound for other machines (--host 0.0.0.0: the user asked for it, with a warning): any Host is answered
    anyhost = TestClient(make_app(runs[2:], host="0.0.0.0"), base_url=LOCAL)
    assert anyhost.get("/api/runs", headers={"Host": "explorer.lan:7860"}).status_code == 200


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_run_list_has_no_absolute_paths(app, runs):
    r = TestClient(app, base_url=LOCAL).get("/api/runs")
    assert r.status_code == 200
    body = r.json()
    for s in _strings(body):
        assert not s.startswith("/") and not re.match(r"^[A-Za-z]:[\\/]", s), s
    root = runs[0].parents[1]
    for p in (root, root.parent, Path.home()):
        assert str(p) not in r.text, p
    # still told apart: the folder name, with its parent where two are called the same
    assert [x["name"] for x in body["runs"]] == ["a/vae", "b/vae", "gan"]
    assert all("path" not in x for x in body["runs"])


def test_the_same_folder_twice_gets_numbered(runs):
    body = TestClient(make_app([runs[2], runs[2]]), base_url=LOCAL).get("/api/runs").json()
    names = [x["name"] for x in body["runs"]]
    assert len(set(names)) == 2 and all(not n.startswith("/") for n in names), names


def _csp(headers) -> dict[str, list[str]]:
    out = {}
    for part in headers["content-security-policy"].split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_security_headers(r) -> None:
    h = r.headers
    assert h.get("x-content-type-options") == "nosniff", (r.url, dict(h))
    assert h.get("x-frame-options") == "DENY"
    assert h.get("referrer-policy") == "no-referrer"
    csp = _csp(h)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in h["content-security-policy"]


def test_security_headers_on_every_answer(app):
    c = TestClient(app, base_url=LOCAL)
    for url in ("/", "/app.js", "/api/runs", "/api/run/2/grid.png?n=1", "/api/run/9/grid.png", "/no-such-page"):
        assert_security_headers(c.get(url))
    assert_security_headers(c.post("/api/run/0/reconstruct", data={"other": "x"}))  # a 400
    assert_security_headers(c.get("/", headers={"Host": "evil.example"}))  # the refusal too
    assert c.get("/app.js").headers["content-type"].startswith("text/javascript")


def test_the_policy_allows_the_page_as_it_is(app):
    """The page works under its policy: no inline script or handlers, and its inline style by hash."""
    r = TestClient(app, base_url=LOCAL).get("/")
    page = r.content
    scripts = re.findall(rb"<script([^>]*)>(.*?)</script>", page, flags=re.S | re.I)
    assert scripts and all(b'src="/app.js"' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(rb"\son[a-z]+\s*=", page, flags=re.I)  # no onclick= etc.
    assert not re.search(rb"\sstyle\s*=", page, flags=re.I)  # style attributes would need 'unsafe-inline'
    allowed = _csp(r.headers)["style-src"]
    for block in re.findall(rb"<style[^>]*>(.*?)</style>", page, flags=re.S):
        assert f"'sha256-{base64.b64encode(hashlib.sha256(block).digest()).decode()}'" in allowed


# ------------------------------------------------------------------------------------ in a real browser
CHROMIUM = os.environ.get("GANVAE_CHROMIUM") or (  # as tests/test_browser.py finds it
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium, or set GANVAE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    return sync_playwright, CHROMIUM, CHROMIUM_ARGS


def test_page_runs_under_its_policy_in_chromium(runs):
    """No CSP violation reported, the script ran (panels built) and the inline style applied."""
    sync_playwright, chromium, args = _chromium_or_skip()
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app([runs[0], runs[2]]), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            try:
                pg = browser.new_page()
                messages = []
                pg.on("console", lambda m: messages.append(m.text))
                pg.goto(f"http://127.0.0.1:{port}/")
                pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
                assert pg.locator(".panel").count() == 2
                assert pg.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"
                assert pg.evaluate("document.querySelector('img.grid').src").startswith("data:image/png")
                violations = [m for m in messages if "Content Security Policy" in m or "Refused" in m]
                assert not violations, json.dumps(violations, indent=1)
            finally:
                browser.close()
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()

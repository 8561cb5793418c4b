"""A small local web explorer for trained runs: ``make_app(runs) -> Starlette``, ``serve(runs, host, port)``.

The page (``index.html`` + ``app.js`` beside this file) is plain HTML and vanilla JavaScript served by the
app itself: no CDN, no fonts, no external assets, nothing phones home, so it works offline. (Gradio was
ruled out for exactly that: it fetches fonts and assets from CDNs and sends analytics, which fails offline.)

Endpoints (``i`` is the run's index, in the order the runs were given):

    GET  /                                  the page
    GET  /api/runs                          JSON: every run's name, model, family, classes, latent size; the limits
    GET  /api/run/{i}/grid.png?seed=&n=&cls=            a grid of n samples from a seed (cls: one class)
    GET  /api/run/{i}/traverse.png?seed=&dims=&cls=     the seed's code with offsets, dims="k:v,k:v,..."
    GET  /api/run/{i}/interpolate.png?a=&b=&steps=&cls= a row: the slerp between the codes of seeds a and b
    POST /api/run/{i}/reconstruct           multipart field "image" (VAEs; cvae also "cls"): input | reconstruction
    POST /api/run/{i}/translate?direction=  multipart field "image" (pix2pix, cyclegan): input | translation

A bad request (seed outside 0..2**63-1, class out of range, too many images, a non-finite or too large
slider value, an upload that is not an image or is too large, an unknown run) gets a 4xx answer with JSON
``{"error": message}``; the server keeps serving. Model calls run under ``torch.inference_mode`` and one
lock per run (uvicorn serves requests from several threads).

Memory stays bounded under any mix of requests: model calls are one at a time per run (the run's lock), and an
upload is a "heavy" request: at most ``LIMITS["heavy_requests"]`` are read and decoded at once (the others wait
up to ``LIMITS["heavy_wait_s"]`` seconds before their body is read, then get 503 with ``Retry-After``). An upload
is decoded once at its stored size (JPEG: at the reduced scale its draft mode gives), capped at
``LIMITS["max_upload_pixels"]``, and its centre square is box-reduced at once, a band of rows at a time, to 2-4x
the model's size; only that small image goes through the usual preparation (``api.load_image``), so an upload
holds one full-size buffer (at most 4 bytes a pixel) and band-sized ones.

Bound to a loopback address (the default), the app answers only requests whose ``Host`` is a loopback name
(127.0.0.1, localhost, [::1]): a page on another site cannot reach it through DNS rebinding. Every answer
carries a content security policy that allows only the page's own script and style (no inline script, no
framing) and ``X-Content-Type-Options: nosniff``; ``/api/runs`` names runs by their folder, never by an
absolute path.
"""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .. import api
from ..errors import GanvaeError
from .limits import LIMITS, BadRequest
from .security import check_port, is_loopback, middleware
from .translate_panel import translate_route
from .uploads import HeavySlots, _check_length, _upload, read_upload, shrink_upload  # noqa: F401 (tests patch them here)

@dataclass
class RunHandle:
    index: int
    name: str
    path: Path
    model: object
    lock: threading.Lock

    def describe(self) -> dict:
        m = self.model
        c = m.config
        meta = getattr(m, "meta", {}) or {}
        data = meta.get("data") or {}
        conditional = bool(m.conditional)
        return {
            "index": self.index, "name": self.name,  # never the path: the page needs no absolute paths
            "model": m.registered_name, "family": m.family, "conditional": conditional,
            "num_classes": c.num_classes if conditional else None,
            "class_names": (data.get("class_names") or None) if conditional else None,
            "latent_dim": c.latent_dim, "image_size": c.image_size, "channels": c.channels,
            "data": data.get("source"), "step": meta.get("step"),
            "reconstruct": bool(m.has_encoder),
            "translate": bool(m.translation),  # translation runs: an upload panel instead of sampling
            "directions": list(m.directions) if m.translation else [],
        }


def load_runs(runs, device: str = "cpu") -> list[RunHandle]:
    """Run (or model) folders -> loaded models; a missing or unreadable folder is a GanvaeError."""
    paths = [Path(r) for r in runs]
    if not paths:
        raise GanvaeError("give at least one run folder")
    handles = []
    for p in paths:
        if not p.exists():
            raise GanvaeError(f"{p}: no such run folder")
    for i, (p, name) in enumerate(zip(paths, run_names(paths))):
        handles.append(RunHandle(i, name, p, api.load(p, device=device), threading.Lock()))
    return handles


def run_names(paths: list[Path]) -> list[str]:
    """Display names: each run's folder name (a run's ``model`` folder counts as the run), with as many parent
    folders as it takes to tell equal names apart, then ``#i`` for the same folder given twice. Relative:
    never an absolute path, which the page (and any site that could read it) has no need for."""
    tails = []
    for p in paths:
        f = Path(os.path.abspath(p))
        if f.name == "model" and f.parent.name:
            f = f.parent
        tails.append(f.parts[1:] or ("run",))  # without the anchor ("/", "C:\\")
    depth = [1] * len(tails)
    while True:
        names = ["/".join(t[-d:]) for t, d in zip(tails, depth)]
        equal = [i for i, n in enumerate(names) if names.count(n) > 1 and depth[i] < len(tails[i])]
        if not equal:
            break
        for i in equal:
            depth[i] += 1
    return [f"{n} #{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


# ---------------------------------------------------------------------------------------------- parsing
def _int(params, key: str, default: int | None, lo: int, hi: int, what: str) -> int | None:
    raw = params.get(key)
    if raw is None or raw.strip() == "":
        if default is None:
            return None
        return default
    try:
        v = int(raw.strip())
    except ValueError:
        raise BadRequest(f"{what} {raw!r}: expected a whole number from {lo} to {hi}") from None
    if not lo <= v <= hi:
        raise BadRequest(f"{what} {v}: expected a whole number from {lo} to {hi}")
    return v


def _seed(params, key: str = "seed", default: int = 0) -> int:
    return _int(params, key, default, 0, LIMITS["max_seed"], "seed")


def _psi(params) -> float | None:
    """The truncation psi in (0, 1] (``psi=``; empty or 1: none)."""
    raw = (params.get("psi") or "").strip()
    if not raw:
        return None
    try:
        psi = float(raw)
    except ValueError:
        psi = math.nan
    if not 0 < psi <= 1:
        raise BadRequest(f"psi {raw!r}: expected a truncation in (0, 1] (1: none)")
    return None if psi == 1 else psi


def _cls(run: RunHandle, params) -> int | None:
    raw = params.get("cls")
    if raw is None or raw.strip() == "":
        return None
    if not getattr(run.model, "conditional", False):
        raise BadRequest(f"class {raw!r}: run {run.name} ({run.model.registered_name}) is not class-conditional")
    return _int(params, "cls", None, 0, run.model.config.num_classes - 1, "class")


def _offsets(run: RunHandle, raw: str | None) -> dict[int, float]:
    """``"k:v,k:v"`` -> {dimension: offset}, each dimension in range and each offset finite and capped."""
    out: dict[int, float] = {}
    k_max = run.model.config.latent_dim - 1
    cap = LIMITS["max_offset"]
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition(":")
        try:
            d, x = int(k), float(v)
        except ValueError:
            raise BadRequest(f"slider {part!r}: expected DIM:VALUE, e.g. 3:1.5") from None
        if not sep or not 0 <= d <= k_max:
            raise BadRequest(f"slider {part!r}: dimension must be 0 to {k_max}")
        if not math.isfinite(x) or abs(x) > cap:
            raise BadRequest(f"slider {d}: value {v.strip()} is outside -{cap:g} to {cap:g}")
        out[d] = x
    return out


# ---------------------------------------------------------------------------------------------- images
def _png(images: torch.Tensor, nrow: int | None = None, min_tile: int = 64) -> bytes:
    buf = io.BytesIO()
    api.make_grid(images, nrow=nrow, min_tile=min_tile).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(run: RunHandle, seed: int, n: int, cls: int | None, psi: float | None = None) -> bytes:
    imgs = run.model.sample(n, seed=seed, labels=cls, truncation=psi)
    return _png(imgs, min_tile=32 if n > 16 else 64)


def traverse_png(run: RunHandle, seed: int, offsets: dict[int, float], cls: int | None) -> bytes:
    z = api.prior_code(run.model, seed, cls).clone()
    for d, v in offsets.items():
        z[d] = z[d] + v
    return _png(api.decode(run.model, z[None]), min_tile=128)


def interpolate_png(run: RunHandle, a: int, b: int, steps: int, cls: int | None) -> bytes:
    m = run.model
    za, zb = api.prior_code(m, a, cls), api.prior_code(m, b, cls)
    k = m.config.latent_dim
    path = api.slerp(za[:k], zb[:k], torch.linspace(0, 1, steps, dtype=za.dtype))
    if za.shape[0] > k:  # conditional: the class column stays seed a's (or cls)
        path = torch.cat([path, za[k:].expand(steps, -1)], 1)
    return _png(api.decode(m, path), nrow=steps, min_tile=64)


def reconstruct_png(run: RunHandle, x: torch.Tensor, cls: int | None) -> bytes:
    m = run.model
    x = x.to(m.device)
    if m.conditional:
        if cls is None:
            raise BadRequest(f"run {run.name} is a conditional VAE: choose the image's class to reconstruct it")
        rec = m.reconstruct(x, cls)
    else:
        rec = m.reconstruct(x)
    return _png(torch.cat([x, rec.clamp(0, 1)]), nrow=2, min_tile=128)


# ---------------------------------------------------------------------------------------------- the app
def make_app(runs, *, handles: list[RunHandle] | None = None, host: str = "127.0.0.1"):
    """A Starlette app serving the page and the endpoints for ``runs`` (run or model folders); ``host``: the
    address it will be served on (loopback: other ``Host`` names get 400, see :func:`security.middleware`)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    handles = handles if handles is not None else load_runs(runs)
    page = resources.files(__package__).joinpath("index.html").read_bytes()
    script = resources.files(__package__).joinpath("app.js").read_bytes()
    no_store = {"Cache-Control": "no-store"}
    heavy = HeavySlots()

    def run_of(request: Request) -> RunHandle:
        return _run_of(handles, request.path_params["i"])

    async def compute(run: RunHandle, fn, *args) -> Response:
        def work():
            with run.lock, torch.inference_mode():
                return fn(run, *args)
        try:
            png = await run_in_threadpool(work)
        except GanvaeError as e:
            raise BadRequest(str(e)) from None
        return Response(png, media_type="image/png", headers=no_store)

    async def index(request):
        return Response(page, media_type="text/html; charset=utf-8", headers=no_store)

    async def app_js(request):
        return Response(script, media_type="text/javascript; charset=utf-8", headers=no_store)

    async def api_runs(request):
        return JSONResponse({"runs": [h.describe() for h in handles], "limits": LIMITS})

    async def grid(request):
        run, q = run_of(request), request.query_params
        n = _int(q, "n", 16, 1, LIMITS["max_n"], "n")
        return await compute(run, grid_png, _seed(q), n, _cls(run, q), _psi(q))

    async def traverse(request):
        run, q = run_of(request), request.query_params
        return await compute(run, traverse_png, _seed(q), _offsets(run, q.get("dims")), _cls(run, q))

    async def interpolate(request):
        run, q = run_of(request), request.query_params
        steps = _int(q, "steps", 8, 2, LIMITS["max_steps"], "steps")
        return await compute(run, interpolate_png, _seed(q, "a", 0), _seed(q, "b", 1), steps, _cls(run, q))

    async def reconstruct(request):
        run = run_of(request)
        if not run.describe()["reconstruct"]:
            raise BadRequest(f"run {run.name} is a {run.model.registered_name} ({run.model.family.upper()}): "
                             "reconstruction needs a VAE's encoder")
        _check_length(request)  # refused before waiting for a slot
        await heavy.take()  # the body is read only with a slot: at most LIMITS["heavy_requests"] in memory
        try:
            data, raw = await _upload(request)
            cls = _cls(run, {} if raw is None else {"cls": raw})
            c = run.model.config
            x = await run_in_threadpool(read_upload, data, c.channels, c.image_size)
            del data
            return await compute(run, reconstruct_png, x, cls)
        finally:
            heavy.give()

    routes = [
        Route("/", index), Route("/app.js", app_js), Route("/api/runs", api_runs),
        Route("/api/run/{i}/grid.png", grid), Route("/api/run/{i}/traverse.png", traverse),
        Route("/api/run/{i}/interpolate.png", interpolate),
        Route("/api/run/{i}/reconstruct", reconstruct, methods=["POST"]), translate_route(run_of, heavy, compute),
    ]
    app = Starlette(routes=routes, middleware=middleware(host, page),
                    exception_handlers={BadRequest: _bad_request, HTTPException: _http_error})
    app.state.runs = handles
    app.state.heavy = heavy
    return app


def serve(runs, host: str = "127.0.0.1", port: int = 7860, log=print, device: str = "auto") -> None:
    """Load ``runs`` and serve the page until Ctrl-C."""
    import uvicorn

    handles = load_runs(runs, device=str(api.resolve_device(device, "--device")))
    check_port(host, port)
    app = make_app(None, handles=handles, host=host)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {len(handles)} run{'s' if len(handles) != 1 else ''} "
        f"({', '.join(h.name for h in handles)}) at http://{shown}:{port}/  (Ctrl-C to stop)")
    if not is_loopback(host):
        log(f"warning: --host {host} makes the page reachable from other machines; it has no login")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _run_of(handles: list[RunHandle], raw: str) -> RunHandle:
    """The run at index ``raw`` (a path parameter), or a 404."""
    try:
        i = int(raw)
    except ValueError:
        i = -1
    if not 0 <= i < len(handles):
        raise BadRequest(f"run {raw}: no such run (there are {len(handles)}: 0 to {len(handles) - 1})", 404)
    return handles[i]


async def _bad_request(request, exc: BadRequest):
    from starlette.responses import JSONResponse
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _http_error(request, exc):
    from starlette.responses import JSONResponse
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

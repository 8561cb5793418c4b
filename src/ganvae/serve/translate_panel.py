"""The translation panel's endpoint: ``POST /api/run/{i}/translate?direction=a2b|b2a`` with the multipart field
"image" -> a PNG of the upload (as the model sees it) beside its translation (pix2pix, cyclegan runs).

The upload is read like a reconstruction's (a heavy request: one of ``LIMITS["heavy_requests"]`` slots, the
size cap, bounded decoding) and converted to the source domain's channel count and the run's size.
"""

from __future__ import annotations

import torch

from .. import api
from ..errors import GanvaeError
from .limits import BadRequest
from .uploads import _check_length, _upload, read_upload


def translate_png(run, x: torch.Tensor, direction: str) -> bytes:
    """The input (1, C, S, S) beside its translation, as PNG bytes (grey tiles shown as RGB beside colour)."""
    import io

    y = api.translate(run.model, x.to(run.model.device), direction=direction, log=None).cpu()
    c = max(x.shape[1], y.shape[1])
    buf = io.BytesIO()
    api.make_grid(torch.cat([x.cpu().expand(-1, c, -1, -1), y.expand(-1, c, -1, -1)]), nrow=2,
                  min_tile=128).save(buf, format="PNG")
    return buf.getvalue()


def translate_route(run_of, heavy, compute):
    """The Starlette route; ``run_of(request)``, ``heavy`` (the upload slots) and ``compute(run, fn, *args)``
    are the app's (see :func:`ganvae.serve.app.make_app`)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    async def translate(request):
        run = run_of(request)
        if not run.model.translation:
            raise BadRequest(f"run {run.name} is a {run.model.registered_name}: translation needs a pix2pix or "
                             "cyclegan run")
        direction = request.query_params.get("direction", "a2b")
        try:
            channels = run.model.input_channels(direction)  # refuses a direction the model does not go
        except GanvaeError as e:
            raise BadRequest(str(e)) from None
        _check_length(request)  # refused before waiting for a slot
        await heavy.take()
        try:
            data, _ = await _upload(request)
            x = await run_in_threadpool(read_upload, data, channels, run.model.config.image_size)
            del data
            return await compute(run, translate_png, x, direction)
        finally:
            heavy.give()

    return Route("/api/run/{i}/translate", translate, methods=["POST"])

"""`ganvae models` and `ganvae serve`."""

from __future__ import annotations

import sys

from .. import api
from .common import DEVICE_HELP


def _add_models(sub) -> None:
    sub.add_parser("models", aliases=["list"], help="list the models, GAN objectives, data sources and metrics",
                   description="One line each: models (--model), GAN objectives (--objective), data sources "
                               "(--data), metrics (ganvae eval --metrics).").set_defaults(func=cmd_models)


def _summary(entry) -> str:
    """An entry's ``summary``, else the first line of its docstring (or of its module's), as plain text."""
    doc = (getattr(entry, "summary", None) or (callable(entry) and entry.__doc__)
           or getattr(sys.modules.get(entry.__module__), "__doc__", None) or "")
    return next((ln.strip() for ln in doc.splitlines() if ln.strip()), "").replace("``", "").rstrip(".")


def cmd_models(a) -> int:
    for i, (title, reg) in enumerate([("models (ganvae train --model NAME)", api.MODELS),
                                      ("GAN objectives (ganvae train --objective NAME)", api.GAN_OBJECTIVES),
                                      ("data sources (ganvae train --data NAME; also folder:PATH, idx:PATH, npz:PATH, "
                                       "a folder of images, an .npz file)", api.SOURCES),
                                      ("metrics (ganvae eval --metrics NAME,NAME)", api.METRICS)]):
        print(("\n" if i else "") + title + ":")
        for name in reg.names():
            print(f"  {name:<{max(map(len, reg.names()))}}  {_summary(reg.get(name))}")
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="explore trained runs in the browser: samples, classes, latent sliders, interpolation",
        description="A local web page (no external assets, works offline): a sample grid per run from a seed, "
                    "a class picker for conditional models, latent sliders, interpolation between two seeds, and "
                    "image reconstruction for VAEs. Several runs are shown side by side.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their model/ folders)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    from ..serve import serve

    serve(a.runs, host=a.host, port=a.port, device=a.device)
    return 0



def add(sub) -> None:
    _add_serve(sub)
    _add_models(sub)

"""``ganvae serve RUN [RUN ...]``: a local web page to explore trained runs (see :mod:`ganvae.serve.app`)."""

from .app import LIMITS, make_app, serve

__all__ = ["LIMITS", "make_app", "serve"]

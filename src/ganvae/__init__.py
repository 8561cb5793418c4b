"""ganvae: train, evaluate, control and audit image generators (GANs and VAEs).

    import ganvae
    run = ganvae.train(model="dcgan", data="mnist", steps=2000, out="runs/x")
    g = ganvae.load("runs/x")
    imgs = g.sample(16, seed=0)        # (16, C, H, W) float in [0, 1]

The names below load on first use (PEP 562), so ``import ganvae`` and ``ganvae --help`` stay quick and a
Ctrl-C while torch loads is handled by the command line like any other.
"""

from __future__ import annotations

import importlib

from .version import __version__

_EXPORTS = {
    "train": "api", "load": "api", "info": "api", "evaluate": "api", "audit": "api", "report": "api",
    "export": "api", "Run": "api", "prepare_data": "api", "data_info": "api", "translate": "api",
    "SOURCES": "data", "DataConfig": "data", "load_data": "data",
    "GanvaeError": "errors", "MODELS": "models", "GAN_OBJECTIVES": "objectives", "LIKELIHOODS": "objectives",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ganvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Shared test setup. Helpers the tests import live in ``helpers.py`` (``from helpers import ...``)."""

from __future__ import annotations

import pytest

from helpers import tiny_config, tiny_model  # noqa: F401  (re-exported for old imports)


@pytest.fixture(autouse=True)
def _data_cache_in_tmp(monkeypatch, tmp_path_factory):
    """Data caches (a folder of images is cached on disk under $GANVAE_CACHE) go to this session's temporary
    folder, never ~/.cache/ganvae; a test may point it elsewhere itself."""
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path_factory.getbasetemp() / "ganvae-cache"))

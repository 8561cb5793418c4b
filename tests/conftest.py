"""Shared test setup. Helpers the tests import live in ``helpers.py`` (``from helpers import ...``)."""

from __future__ import annotations

from helpers import tiny_config, tiny_model  # noqa: F401  (re-exported for old imports)

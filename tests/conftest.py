"""Shared test setup. Helpers the tests import live in ``helpers.py`` and ``model_helpers.py``."""

from __future__ import annotations

from model_helpers import tiny_config, tiny_model  # noqa: F401  (re-exported for old imports)

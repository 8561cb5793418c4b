"""Shared fixtures for the data tests: a private cache dir and tiny image writers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch ~/.cache: the default cache dir points into tmp_path."""
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "cache")


def _prep(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _rgb(path, rgb, size=(8, 8), fmt=None) -> Path:
    """A solid-colour RGB image."""
    path = _prep(path)
    Image.new("RGB", size, tuple(rgb)).save(path, format=fmt)
    return path


def _gray(path, value, size=(8, 8)) -> Path:
    path = _prep(path)
    Image.new("L", size, value).save(path)
    return path


def _array(path, arr, mode=None, **save_kw) -> Path:
    path = _prep(path)
    img = Image.fromarray(np.asarray(arr), mode) if mode else Image.fromarray(np.asarray(arr))
    img.save(path, **save_kw)
    return path


@pytest.fixture
def imgs():
    """Writers for tiny test images: imgs.rgb(path, (r, g, b)), imgs.gray(path, v), imgs.array(path, arr)."""
    return SimpleNamespace(rgb=_rgb, gray=_gray, array=_array)

"""Helpers the tests import: ``from helpers import tiny_config, tiny_model, tiny_set, train_tiny``.

Kept out of conftest.py: ``tests/data/conftest.py`` also exists, and ``from conftest import``
would bind whichever conftest was imported first.

- :func:`tiny_config` / :func:`tiny_model`: a registered model's config (or model) shrunk generically.
- :func:`tiny_set`: the same shrinking as ``--set`` strings for ``ganvae.train(set=...)`` or the CLI
  (:func:`set_args`), with a quiet CPU run by default (no TensorBoard, no report).
- :func:`train_tiny`: one tiny training run (or its resume) through ``ganvae.train``; returns the Run.
- :func:`assert_same_state`: nested checkpoint states equal to the bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import torch

import ganvae
from ganvae.models import MODELS, build
from ganvae.training import TrainConfig

TRAIN_DEFAULTS = {"device": "cpu", "tensorboard": False, "report": False}  # what tiny_set adds under train.
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def tiny_config(name: str, image_size: int = 8, channels: int = 1, **over):
    """The registered config of ``name`` shrunk generically: widths 8, hidden layers (32,), latent 8, 3 classes."""
    cls = MODELS.get(name).config_class
    kw = {"image_size": image_size, "channels": channels, "latent_dim": 8, "num_classes": 3}
    for f in dataclasses.fields(cls):
        if f.name.endswith("width"):
            kw[f.name] = 8
        elif f.name.endswith("hidden"):
            kw[f.name] = (32,)
        elif f.name == "clusters":  # sc-dcgan: 3 clusters, as the classes
            kw[f.name] = 3
    kw.update(over)
    return cls(**kw)


def tiny_model(name: str, seed: int = 0, **kw):
    """``build`` of :func:`tiny_config`; a model that trains on a released target (``needs_release``: dp-merf)
    gets one, without noise, and one fitted to its data (``needs_fit``: sc-dcgan) is fitted, both on fixed
    random images (the same for every call)."""
    torch.manual_seed(seed)
    m = build(name, tiny_config(name, **kw))
    if getattr(m, "needs_release", False):
        c = m.config
        g = torch.Generator().manual_seed(1234)
        x = torch.rand(24, c.channels, c.image_size, c.image_size, generator=g)
        m.set_target(m.embed_sum(x, torch.arange(24) % c.num_classes))
    if getattr(m, "needs_fit", False):
        c = m.config
        m.fit_data(torch.rand(24, c.channels, c.image_size, c.image_size,
                              generator=torch.Generator().manual_seed(1234)), seed=0)
    return m


def _model_fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(MODELS.get(name).config_class)]


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return str(value)


def tiny_set(name: str, *, more: Iterable[str] = (), **over) -> list[str]:
    """``--set`` strings that make the registered model ``name`` tiny, then ``more``.

    From the model's config fields, like :func:`tiny_config`: ``*width`` 8 (``max_width``, a cap, is left
    alone), ``*hidden`` [32], ``latent_dim`` 8, ``embed_dim`` 4; then ``train.device=cpu``,
    ``train.tensorboard=false``, ``train.report=false``. A keyword overrides or adds a model field
    (``latent_dim=4``, ``d_steps=2``) or a train field (``report=True``, ``log_every=2``); ``None`` drops
    the key. ``tiny_set("dcgan")``: ``model.latent_dim=8``, ``model.g_width=8``, ``model.d_width=8`` and the
    three train keys.
    """
    fields = _model_fields(name)
    model: dict = {"latent_dim": 8}
    for f in fields:
        if f.endswith("width") and f != "max_width":
            model[f] = 8
        elif f.endswith("hidden"):
            model[f] = [32]
    if "embed_dim" in fields:
        model["embed_dim"] = 4
    train = dict(TRAIN_DEFAULTS)
    for key, value in over.items():
        if key in fields:
            model[key] = value
        elif key in _TRAIN_KEYS:
            train[key] = value
        else:
            raise TypeError(f"tiny_set: {key!r} is neither a {name} config field nor a train field")
    out = [f"model.{k}={_yaml(v)}" for k, v in model.items() if v is not None]
    out += [f"train.{k}={_yaml(v)}" for k, v in train.items() if v is not None]
    return out + list(more)


def set_args(items: Iterable[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]`` for the CLI."""
    return [a for s in items for a in ("--set", s)]


def train_tiny(out: str | Path, model: str = "dcgan", data: str = "digits", *, steps: int = 4,
               batch_size: int = 16, resume: bool = False, more: Iterable[str] = (), **kw) -> ganvae.Run:
    """A tiny run of ``model`` on ``data`` in ``out``, quiet; returns the :class:`ganvae.Run`.

    ``kw`` naming a field of the model's config or of the train section goes to :func:`tiny_set`
    (``d_steps=2``, ``report=True``); the rest to ``ganvae.train`` (``seed=3``, ``log=print``).
    ``more``: further ``--set`` strings. ``resume=True`` continues the run in ``out`` up to ``steps``
    (``more`` may change the train keys a resume allows).
    """
    kw.setdefault("log", lambda *a: None)
    if resume:
        return ganvae.train(out=out, resume=True, steps=steps, progress=False, set=list(more) or None, **kw)
    fields = {*_model_fields(model), *_TRAIN_KEYS}
    tiny = {k: kw.pop(k) for k in list(kw) if k in fields}
    return ganvae.train(model, data, out=out, steps=steps, batch_size=batch_size, progress=False,
                        set=tiny_set(model, more=more, **tiny), **kw)


def assert_same_state(a, b, path="state"):
    """Nested checkpoint states equal to the bit (tensors with their dtype); wall-clock seconds excepted."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif not path.endswith("seconds"):  # wall clock: train_seconds, the fit plugin's seconds
        assert a == b, path


# -- stand-in discriminators for hand-computed GAN losses and penalties --------------------------------------
def logit_D(x):
    """A stand-in discriminator: the logit is the first value of each image (its input gradient has norm 1)."""
    return x.flatten(1)[:, 0]


def as_images(logits):
    """Logits (a list) as (B, 1, 1, 1) float64 'images' for :func:`logit_D`."""
    return torch.tensor(logits, dtype=torch.float64).view(-1, 1, 1, 1)


def linear_D(w):
    """D(x) = <w, x> with x flattened: grad_x D = w for every x."""
    return lambda x: x.flatten(1) @ w


def assert_one_step_lowers_each_phase_loss(m, batch) -> None:
    """The contract's step test: for each phase, one Adam step on ``batch`` (fixed draws) lowers that phase's loss."""
    for ph in m.phases():
        opt = torch.optim.Adam(ph.parameters(), lr=1e-3, betas=ph.betas)
        before = ph.loss(batch, torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        before.backward()
        opt.step()
        with torch.no_grad():
            after = ph.loss(batch, torch.Generator().manual_seed(0))["loss"]
        assert after.item() < before.item(), (ph.name, before.item(), after.item())

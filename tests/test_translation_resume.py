"""Translation runs through the one loop: exact resume (the history buffer and domain B's order included),
and sample grids that show inputs beside outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from ganvae.training import checkpoint as ckpt
from helpers import assert_same_state, train_tiny

LOOP = dict(seed=3, log_every=2, sample_every=4, checkpoint_every=2)


def runs(tmp_path: Path) -> dict:
    np.savez(tmp_path / "b.npz", images=(np.random.default_rng(0).random((40, 8, 8)) * 255).astype(np.uint8))
    return {
        "pix2pix": dict(model="pix2pix", data="shapes-edges", more=["data.n=40", "data.image_size=8"], **LOOP),
        "cyclegan": dict(model="cyclegan", data="digits", pool_size=6,
                         more=["data.limit=48", f"data.source_b=npz:{tmp_path / 'b.npz'}", "data.cache=off"], **LOOP),
    }


@pytest.mark.parametrize("name", ["pix2pix", "cyclegan"])
def test_resume_is_bit_identical(tmp_path, name):
    kw = runs(tmp_path)[name]
    straight = train_tiny(tmp_path / "a", steps=7, batch_size=4, **kw)
    train_tiny(tmp_path / "b", steps=3, batch_size=4, **kw)
    resumed = train_tiny(tmp_path / "b", steps=7, resume=True)
    assert straight.step == resumed.step == 7
    sa = ckpt.load_state(tmp_path / "a" / "checkpoints" / "latest.pt")
    sb = ckpt.load_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert_same_state(sa, sb)
    assert_same_state(load_file(tmp_path / "a" / "model" / "model.safetensors"),
                      load_file(tmp_path / "b" / "model" / "model.safetensors"))
    if name == "cyclegan":  # the buffer filled (6 slots, 4 fakes per step) and B's own order are in the state
        flat = repr(sa)
        assert "pool_b.count" in flat and "epoch_b" in flat


def test_grid_shows_inputs_outputs_and_targets(tmp_path):
    kw = runs(tmp_path)["pix2pix"]
    train_tiny(tmp_path / "p", steps=4, batch_size=4, **kw)
    grid = np.asarray(Image.open(tmp_path / "p" / "samples" / "step_000004.png").convert("RGB"))
    # 64 tiles asked for, 3 columns per example: 2 examples per row, a 6 x 6 grid of 32 px tiles (2 px gaps)
    assert grid.shape[:2] == (6 * 34 + 2, 6 * 34 + 2)

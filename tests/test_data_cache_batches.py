"""The on-disk data cache gives training exactly the in-memory batches (and after a resume); under data
parallelism each rank reads only its rows of the cache, and together the ranks read the epoch's batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganvae.data import DataConfig, load_data
from ganvae.data.cache_view import CachedImages, is_cached
from ganvae.training import checkpoint as ckpt
from ganvae.training.batches import BatchStream
from helpers import assert_same_state, train_tiny


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "env-cache"))


def make_folder(root: Path, n: int = 40) -> Path:
    """``n`` random colour images (10x12) in two class subfolders."""
    rng = np.random.default_rng(1)
    for i in range(n):
        path = root / ("a" if i % 3 else "b") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    return root


def load(root, cache: str, **kw):
    kw.setdefault("holdout", 0.2)
    return load_data(DataConfig(source=str(root), image_size=8, cache=cache, **kw), progress=False)


def test_cached_splits_equal_the_in_memory_ones(tmp_path):
    root = make_folder(tmp_path / "pics")
    for kw in ({}, {"limit": 10, "split_seed": 3}, {"channels": 1}):
        mem, cached = load(root, "off", **kw), load(root, "auto", **kw)
        assert is_cached(cached.train.images) and not is_cached(mem.train.images)
        assert cached.meta["cache"] == ("written" if not kw or "channels" in kw else "hit")
        for part in ("train", "test"):
            a, b = getattr(mem, part), getattr(cached, part)
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels), (kw, part)
        drop = {"cache", "cache_dir"}
        assert {k: v for k, v in mem.meta.items() if k not in drop} == \
               {k: v for k, v in cached.meta.items() if k not in drop}


def _batches(stream: BatchStream, n: int) -> list:
    return [stream.next() for _ in range(n)]


def test_batches_are_the_same_across_epochs_and_after_a_resume(tmp_path):
    root = make_folder(tmp_path / "pics")
    mem, cached = load(root, "off"), load(root, "auto")
    n = len(mem.train)  # 32: 4 batches of 8 per epoch; 10 steps cross two epoch boundaries
    assert n == 32
    a = BatchStream(mem.train.images, mem.train.labels, 8, seed=5)
    b = BatchStream(cached.train.images, cached.train.labels, 8, seed=5)
    ref = _batches(a, 10)
    got = _batches(b, 10)
    for i, (x, y) in enumerate(zip(ref, got)):
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y), f"step {i}"
    # resume from step 6 (mid-epoch 1): a fresh stream on the cache continues exactly as the in-memory one
    a6 = BatchStream(mem.train.images, mem.train.labels, 8, seed=5)
    _batches(a6, 6)
    resumed = BatchStream(cached.train.images, cached.train.labels, 8, seed=5)
    resumed.load_state_dict(a6.state_dict())
    for i, (x, y) in enumerate(zip(ref[6:], _batches(resumed, 4))):
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y), f"step {6 + i} after the resume"


def test_training_from_the_cache_equals_training_in_memory_and_resumes_exactly(tmp_path):
    root = make_folder(tmp_path / "pics")
    kw = dict(model="dcgan", data=str(root), batch_size=8, seed=3, checkpoint_every=2, log_every=2)
    train_tiny(tmp_path / "mem", steps=4, more=["data.image_size=8", "data.cache=off"], **kw)
    train_tiny(tmp_path / "cached", steps=2, more=["data.image_size=8"], **kw)
    train_tiny(tmp_path / "cached", steps=4, resume=True)
    state = {r: ckpt.load_state(tmp_path / r / "checkpoints" / "latest.pt") for r in ("mem", "cached")}
    assert state["mem"]["step"] == state["cached"]["step"] == 4
    assert_same_state(state["mem"], state["cached"])


def test_two_ranks_read_disjoint_rows_that_cover_the_epoch(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pics", n=45)
    train = load(root, "auto").train  # 36 images: 4 batches of 8 per epoch, 4 left over
    reads: list[np.ndarray] = []
    real = CachedImages.read_file_rows

    def recording(self, rows):
        reads.append(np.asarray(rows).copy())
        return real(self, rows)

    monkeypatch.setattr(CachedImages, "read_file_rows", recording)
    single = BatchStream(train.images, train.labels, 8, seed=2)
    whole = _batches(single, 4)
    epoch = set(np.concatenate(reads).tolist())
    assert len(epoch) == 32
    per_rank = []
    for rank in range(2):
        reads.clear()
        stream = BatchStream(train.images, train.labels, 8, seed=2, rank=rank, world=2)
        for i, b in enumerate(_batches(stream, 4)):
            assert torch.equal(b.x, whole[i].x[rank * 4:(rank + 1) * 4]), (rank, i)  # its slice of the global batch
            assert torch.equal(b.y, whole[i].y[rank * 4:(rank + 1) * 4])
        assert all(len(r) == 4 for r in reads)  # only its own rows: 4 per batch
        per_rank.append(set(np.concatenate(reads).tolist()))
    assert not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == epoch

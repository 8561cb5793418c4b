"""Data-parallel training: 2 CPU processes (gloo, loopback) match one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ganvae import rng
from ganvae.training.batches import BatchStream
from helpers import set_args, tiny_set

TRAIN = ["--data", "digits", "--batch-size", "16", "--quiet"]
LOOP = dict(sample_every=1000, grid_size=4, log_every=2, checkpoint_every=3)
GAN = ["--model", "dcgan", *set_args(tiny_set("dcgan", g_norm="none", d_norm="layer", augment="translation,cutout",
                                              **LOOP))]
VAE = ["--model", "vae", *set_args(tiny_set("vae", latent_dim=4, more=["data.binarize=true"], **LOOP))]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _train(args: list[str], nproc: int = 1) -> None:
    if nproc == 1:
        cmd = [sys.executable, "-m", "ganvae", "train", *args, "--set", "train.threads=1"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ganvae", "train", *args, "--set", "train.threads=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_sharded_draws_are_slices_of_the_single_process_draw():
    g = torch.Generator().manual_seed(3)
    whole = (rng.randn((6, 2), g), rng.rand((6, 1), g), rng.randint(0, 9, (6,), g))
    parts = []
    for rank in range(3):
        g = torch.Generator().manual_seed(3)
        with rng.shard(rank, 3):
            parts.append((rng.randn((2, 2), g), rng.rand((2, 1), g), rng.randint(0, 9, (2,), g)))
    for i in range(3):
        assert torch.equal(torch.cat([p[i] for p in parts]), whole[i])


def test_batch_stream_ranks_split_the_global_batch():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    single = BatchStream(images, None, 8, seed=1)
    ranks = [BatchStream(images, None, 8, seed=1, rank=r, world=2) for r in range(2)]
    for _ in range(12):  # crosses epochs
        want = single.next().x
        got = torch.cat([s.next().x for s in ranks])
        assert torch.equal(want, got)
    assert [s.state_dict() for s in ranks] == [single.state_dict()] * 2


@pytest.mark.parametrize("model", [GAN, VAE], ids=["dcgan", "vae"])
def test_two_processes_equal_one_process(tmp_path, model):
    one, two = tmp_path / "one", tmp_path / "two"
    _train([*model, *TRAIN, "--steps", "8", "--out", str(one)])
    _train([*model, *TRAIN, "--steps", "8", "--out", str(two)], nproc=2)
    _assert_close(_weights(one), _weights(two))
    # only rank 0 wrote: one metrics line per log step, with the mean loss over the ranks
    lines_one = (one / "metrics.jsonl").read_text().splitlines()
    lines_two = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines_two) == len(lines_one) == 4
    import json
    for a, b in zip(lines_one, lines_two):
        a, b = json.loads(a), json.loads(b)
        assert a["images_seen"] == b["images_seen"]
        for k in a:
            if k.startswith("loss/"):
                assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), k
    assert json.loads((two / "run.json").read_text())["processes"] == 2


def test_checkpoint_resumes_under_another_world_size(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    _train([*GAN, *TRAIN, "--steps", "8", "--out", str(ref)])
    _train([*GAN, *TRAIN, "--steps", "6", "--out", str(run)], nproc=2)   # checkpoint at step 6
    _train(["--resume", str(run), "--steps", "8", "--quiet"])           # one process takes over
    _assert_close(_weights(ref), _weights(run))


def test_batch_must_split_evenly(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ganvae", "train", *GAN, *TRAIN[:1], "digits", "--batch-size", "15", "--steps", "2",
           "--quiet", "--out", str(tmp_path / "r")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode != 0
    assert "multiple of 2" in r.stderr


def test_cpu_generator_draws_the_same_numbers_for_another_device():
    # a CPU noise generator gives a GPU run the CPU run's numbers (benchmarks/gpu_step_check.py relies on it);
    # "meta" stands in for the other device here
    g = torch.Generator().manual_seed(5)
    x = rng.randn((4, 3), g, device="meta")
    assert x.device.type == "meta" and x.shape == (4, 3)
    assert not torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state())  # drawn on the CPU generator

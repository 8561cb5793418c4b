"""benchmarks/quality.py end to end on a tiny data set: budgets as cumulative stops, and ``--resume``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--models", "dcgan", "--n", "64", "--nll-n", "64", "--set", "model.g_width=8", "--set", "model.d_width=8"]


def _script(tmp: Path, data: str, budgets: str, results: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), *TINY, "--data", data, "--budgets", budgets,
           "--runs", str(tmp / "runs"), "--results", str(tmp / results), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _run(tmp: Path, data: str, budgets: str, results: str, *extra: str) -> list[dict]:
    proc = _script(tmp, data, budgets, results, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp / results).with_suffix(".json").read_text())["dcgan"]


def test_quality_benchmark_resume_continues_the_run(tmp_path):
    g = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=g.integers(0, 256, (256, 28, 28), dtype=np.uint8), labels=g.integers(0, 10, 256),
             test_images=g.integers(0, 256, (64, 28, 28), dtype=np.uint8), test_labels=g.integers(0, 10, 64))
    first = _run(tmp_path, f"npz:{data}", "0.01", "a.md")
    assert [r["budget_min"] for r in first] == [0.01] and first[0]["step"] > 0
    # the same run continued: the budget already trained is skipped, the next one trains on from the checkpoint
    # (the next budget set from the time the first stop took: a loaded machine may overshoot a tiny budget)
    nxt = round(first[0]["train_s"] / 60 + 0.02, 3)
    again = _run(tmp_path, f"npz:{data}", f"0.01,{nxt}", "b.md", "--resume")
    assert [r["budget_min"] for r in again] == [nxt]
    assert again[0]["step"] > first[0]["step"]
    assert again[0]["train_s"] >= nxt * 60 > first[0]["train_s"]
    assert "fid" in again[0]["scores"] and "floor" in again[0]["scores"]["fid"]
    # every budget already trained: one line, non-zero exit, the run untouched
    before = (tmp_path / "runs" / "dcgan" / "checkpoints" / "latest.pt").read_bytes()
    done = _script(tmp_path, f"npz:{data}", f"{nxt}", "c.md", "--resume")
    assert done.returncode != 0 and "past every budget" in done.stderr.strip().splitlines()[-1]
    assert (tmp_path / "runs" / "dcgan" / "checkpoints" / "latest.pt").read_bytes() == before

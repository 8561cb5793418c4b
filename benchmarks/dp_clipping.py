"""Private training steps with ghost clipping against Opacus's per-sample gradients, in one process.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/dp_clipping.py \
        --results benchmarks/results/dp-clipping.md

For each model (its default config but for the row's overrides; MNIST-sized, 28 x 28 x 1, 10 classes, batch
128, noise sigma 1, C = 1, and ``privacy.clip_fakes`` where the row says so), two trainers from the same seed, one per
``privacy.clipping`` mode, take turns: blocks of ``--block`` steps, ``--rounds`` times, after ``--warmup``
steps each. Reported: the median seconds per training step (one G step and its D steps) of each mode, their
ratio, and the largest difference between the two modes' weights after the same steps (the sums are equal up to
rounding, so the runs stay close). Data: random uint8 images (the step's cost does not depend on them).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganvae.models import MODELS, build
from ganvae.privacy import PrivacyConfig
from ganvae.privacy.dp import DPPlugin
from ganvae.training import TrainConfig, Trainer

ROWS = {  # key: (model, config overrides, clip_fakes); the key names the row
    "cdcgan-featd-clipfakes": ("cdcgan", {"d_features": "effnet", "d_feature_grid": 2, "d_width": 16,
                                                          "d_steps": 1, "d_feature_precision": "bf16"}, True),
    "cdcgan-featd": ("cdcgan", {"d_features": "effnet", "d_feature_grid": 2, "d_width": 16,
                                             "d_steps": 1, "d_feature_precision": "bf16"}, False),
    "mlp-gan": ("mlp-gan", {}, False),
    "mlp-vae": ("mlp-vae", {}, False),
}


def trainer(name: str, over: dict, clip_fakes: bool, mode: str, out: Path, n: int = 6000) -> Trainer:
    spec = MODELS.get(name)
    cfg = spec.config_class(**{"image_size": 28, "channels": 1, **({"num_classes": 10} if "num_classes" in
                               {f.name for f in dataclasses.fields(spec.config_class)} else {}), **over})
    cfg = spec.model_class.private_config(cfg, name)
    torch.manual_seed(0)
    model = build(name, cfg)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    train = TrainConfig(steps=10**6, batch_size=128, seed=0, device="cpu", tensorboard=False, report=False)
    privacy = PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, clipping=mode, clip_fakes=clip_fakes)
    return Trainer(model, train, images, labels if model.conditional else None, out, torch.device("cpu"),
                   plugins=[DPPlugin(privacy)])


def measure(label: str, args) -> dict:
    name, over, clip_fakes = ROWS[label]
    label = f"{name} " + " ".join(f"{k}={v}" for k, v in over.items()) + (" privacy.clip_fakes" if clip_fakes else "")
    label = label.strip()
    with tempfile.TemporaryDirectory() as tmp:
        trs = {m: trainer(name, over, clip_fakes, m, Path(tmp) / m) for m in ("ghost", "per-sample")}
        for tr in trs.values():
            for _ in range(args.warmup):
                tr.train_step()
        times = {m: [] for m in trs}
        for _ in range(args.rounds):
            for m, tr in trs.items():
                t0 = time.perf_counter()
                for _ in range(args.block):
                    tr.train_step()
                times[m].append((time.perf_counter() - t0) / args.block)
        a, b = (trs[m].model.state_dict() for m in ("ghost", "per-sample"))
        diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    g, p = statistics.median(times["ghost"]), statistics.median(times["per-sample"])
    return {"label": label, "ghost": g, "per_sample": p, "ratio": p / g, "diff": diff,
            "steps": args.warmup + args.rounds * args.block}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = [measure(label, args) for label in args.rows.split(",")]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    lines = [
        "# Private steps: ghost clipping against Opacus's per-sample gradients",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, affinity "
        f"{len(os.sched_getaffinity(0))} core(s); torch {torch.__version__}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} "
        "UTC.",
        "",
        "Protocol: " + " ".join(__doc__.split("\n\n")[2].split()),
        "",
        "| model | s/step ghost | s/step per-sample | per-sample / ghost | max weight difference after the steps |",
        "|---|---|---|---|---|",
    ] + [f"| {r['label']} | {r['ghost']:.4f} | {r['per_sample']:.4f} | **{r['ratio']:.2f}x** | {r['diff']:.2e} "
         f"({r['steps']} steps) |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

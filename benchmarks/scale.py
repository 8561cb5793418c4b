"""Data at scale: decoding a large folder into the on-disk cache, and training from it against memory.

    .venv/bin/python benchmarks/scale.py                        # 200,000 PNGs at 64 px (the full benchmark)
    .venv/bin/python benchmarks/scale.py --n 2000 --steps 3 --warmup 1 --blocks 1 --results /tmp/scale.md   # smoke

What it does, in a temporary folder deleted at the end (``--keep`` keeps it):

1. writes ``--n`` PNGs of ``--size`` px, procedurally (ganvae's ``shapes`` renderer: coloured shapes on black, one
   subfolder per shape, so the folder has 3 classes), in worker processes;
2. decode rate: ``ganvae data prepare FOLDER --image-size S --channels 3 --out DIR --workers K`` for each K in
   ``--workers`` (default 1 and 2), each in its own process: images/s from the build itself (listing, header scan,
   decoding, flush), the command's wall time and its peak RSS (the largest process: the main one or a worker);
3. training: dcgan at the registered default widths, batch ``--batch-size``, on the folder at ``--size`` px, once
   from the cache (``data.cache=DIR``) and once in memory (``data.cache=off``: the folder decoded into one tensor,
   today's path), each in its own process: ``--warmup`` steps, then the median img/s of ``--blocks`` timed blocks
   of ``--steps`` steps (``Trainer.train_step``, the loop's step), the time to load the data, and the process's
   peak RSS (``ru_maxrss`` from ``wait4``). Both arms train the same model on the same batches (same seed).

Targets (the issue): training from the cache within 5% of the in-memory img/s; the cache arm's peak RSS under
1.5 GB for 200,000 images. The results go to ``--results`` (default ``benchmarks/results/scale.md``) with the
command and the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RSS_TARGET_GB = 1.5
SPEED_TARGET = 0.95


# --------------------------------------------------------------------------- the folder
def _write_chunk(args) -> int:
    folder, start, count, size, seed = args
    import numpy as np
    from PIL import Image

    from ganvae.data.shapes import SHAPE_NAMES, render, sample_factors

    factors = sample_factors(count, seed + start)
    images = render(factors, size)  # (count, 3, size, size) uint8
    for i in range(count):
        name = SHAPE_NAMES[int(factors[i, 0])]
        arr = np.ascontiguousarray(images[i].numpy().transpose(1, 2, 0))
        Image.fromarray(arr).save(Path(folder) / name / f"{start + i:07d}.png")
    return count


def make_folder(folder: Path, n: int, size: int, procs: int) -> float:
    from ganvae.data.shapes import SHAPE_NAMES

    for name in SHAPE_NAMES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chunks = [(str(folder), s, min(1000, n - s), size, 7) for s in range(0, n, 1000)]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        done = 0
        for k in pool.imap_unordered(_write_chunk, chunks):
            done += k
            print(f"\r  writing PNGs: {done}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- child processes
def rss_of(argv: list[str]) -> tuple[dict | None, float, float]:
    """Run ``argv`` in a fresh process and read its own peak RSS (``wait4``): (JSON, wall s, GB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    chunks_out, chunks_err = [], []

    def drain(stream, into):
        for line in iter(stream.readline, b""):
            into.append(line)

    threads = [threading.Thread(target=drain, args=(p.stdout, chunks_out)),
               threading.Thread(target=drain, args=(p.stderr, chunks_err))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(p.pid, 0)
    for t in threads:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out = b"".join(chunks_out).decode(errors="replace")
    err = b"".join(chunks_err).decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {shlex.join(argv)}\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), wall, usage.ru_maxrss / 2**20  # KB -> GB


def train_arm(a) -> None:
    """One training arm, in this process; prints one JSON line."""
    import torch

    from ganvae.data import DataConfig, load_data
    from ganvae.models import MODELS, build
    from ganvae.training import TrainConfig, Trainer

    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    splits = load_data(DataConfig(source=a.folder, image_size=a.size, channels=3, cache=a.cache), progress=False)
    load_s = time.perf_counter() - t0
    cfg = MODELS.get("dcgan").config_class(image_size=a.size, channels=3)
    torch.manual_seed(0)
    model = build("dcgan", cfg)
    with tempfile.TemporaryDirectory() as out:
        tr = Trainer(model, TrainConfig(batch_size=a.batch_size, tensorboard=False, seed=0), splits.train.images,
                     splits.train.labels, out, torch.device("cpu"))
        for _ in range(a.warmup):
            tr.train_step()
        rates = []
        for _ in range(a.blocks):
            t = time.perf_counter()
            for _ in range(a.steps):
                tr.train_step()
            rates.append(a.steps * a.batch_size / (time.perf_counter() - t))
    print(json.dumps({"img_s": statistics.median(rates), "blocks": rates, "load_s": load_s,
                      "n_train": len(splits.train), "cached": type(splits.train.images).__name__ == "CachedImages"}))


# --------------------------------------------------------------------------- the report
def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}; {cpus} CPUs usable, {mem:.0f} GiB RAM; Python {platform.python_version()}, {platform.system()}"


def report(a, gen_s: float, decode: list[dict], arms: dict, disk: dict) -> str:
    mem, cache = arms["memory"], arms["cache"]
    ratio = cache["img_s"] / mem["img_s"]
    lines = [
        "# Data at scale: the on-disk image cache",
        "",
        f"Command: `{shlex.join([sys.executable.replace(str(ROOT) + '/', ''), 'benchmarks/scale.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Data: {a.n:,} PNGs of {a.size}x{a.size} px (ganvae's shapes renderer, 3 class subfolders), written in "
        f"{gen_s:.0f} s; cache {disk['cache_gb'] * 1000:,.0f} MB, PNGs {disk['png_gb'] * 1000:,.0f} MB on disk.",
        "",
        "## Decoding into the cache (`ganvae data prepare`)",
        "",
        "| workers | images/s (build) | build s | command wall s | peak RSS (largest process) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for d in decode:
        lines.append(f"| {d['workers']} | {d['images_per_s']:,.0f} | {d['seconds']:.1f} | {d['wall']:.1f} | "
                     f"{d['rss_gb']:.2f} GB |")
    lines += [
        "",
        f"Caches built with different worker counts are byte-identical: {'yes' if disk['identical'] else 'NO'}.",
        "",
        f"## Training dcgan at {a.size} px (registered default widths, batch {a.batch_size}, CPU"
        + (f", {a.threads} threads" if a.threads else "") + ")",
        "",
        f"{a.warmup} warm-up steps, then the median of {a.blocks} blocks of {a.steps} steps; each arm in its own process.",
        "",
        "| data path | img/s | blocks | data load s | peak RSS |",
        "|---|---:|---|---:|---:|",
    ]
    for name, label in (("memory", "in memory (`data.cache=off`)"), ("cache", "from the cache (`data.cache=DIR`)")):
        r = arms[name]
        lines.append(f"| {label} | {r['img_s']:.1f} | {', '.join(f'{x:.1f}' for x in r['blocks'])} | "
                     f"{r['load_s']:.1f} | {r['rss_gb']:.2f} GB |")
    speed_ok, rss_ok = ratio >= SPEED_TARGET, cache["rss_gb"] < RSS_TARGET_GB
    lines += [
        "",
        f"Cache / memory speed: {ratio:.3f} (target at least {SPEED_TARGET}: {'met' if speed_ok else 'NOT met'}). "
        f"Cache arm peak RSS {cache['rss_gb']:.2f} GB (target under {RSS_TARGET_GB} GB"
        + (f" for 200,000 images: {'met' if rss_ok else 'NOT met'})" if a.n >= 200_000 else
           f"; this run has {a.n:,} images, so the target is not judged)") + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="PNGs to generate (default 200000)")
    p.add_argument("--size", type=int, default=64, help="image size in px (default 64)")
    p.add_argument("--workers", default="1,2", help="decode worker counts to measure (default 1,2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=10, help="untimed training steps first (default 10)")
    p.add_argument("--steps", type=int, default=40, help="training steps per timed block (default 40)")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per arm; the median counts (default 3)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the training arms (default: torch's)")
    p.add_argument("--tmp", help="where the temporary folder goes (default: the system's temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated folder and caches")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "scale.md"))
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one training arm (cache=DIR or off)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.arm:
        train_arm(a)
        return 0

    work = Path(tempfile.mkdtemp(prefix="ganvae-scale-", dir=a.tmp))
    try:
        folder = work / "pngs"
        print(f"generating {a.n} PNGs in {folder}", file=sys.stderr)
        gen_s = make_folder(folder, a.n, a.size, max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                     else os.cpu_count() or 1))
        decode = []
        for k in [int(w) for w in a.workers.split(",") if w.strip()]:
            out = work / f"cache-w{k}"
            print(f"decoding with {k} worker(s)", file=sys.stderr)
            _, wall, rss = rss_of([sys.executable, "-m", "ganvae", "data", "prepare", str(folder), "--image-size",
                                   str(a.size), "--channels", "3", "--out", str(out), "--workers", str(k), "--quiet"])
            meta = json.loads((out / "meta.json").read_text())
            decode.append({"workers": k, "wall": wall, "rss_gb": rss, **meta["build"]})
        caches = [work / f"cache-w{d['workers']}" for d in decode]
        identical = all(_same_file(caches[0] / "images.u8", c / "images.u8") for c in caches[1:])
        disk = {"cache_gb": (caches[0] / "images.u8").stat().st_size / 1e9, "identical": identical,
                "png_gb": sum(f.stat().st_size for f in folder.rglob("*.png")) / 1e9}
        arms = {}
        for name, cache in (("memory", "off"), ("cache", str(caches[0]))):
            print(f"training from {name}", file=sys.stderr)
            res, _, rss = rss_of([sys.executable, str(Path(__file__).resolve()), "--arm", name, "--folder", str(folder),
                                  "--cache", cache, "--size", str(a.size), "--batch-size", str(a.batch_size),
                                  "--warmup", str(a.warmup), "--steps", str(a.steps), "--blocks", str(a.blocks),
                                  "--threads", str(a.threads)])
            assert res["cached"] == (name == "cache"), res
            arms[name] = {**res, "rss_gb": rss}
        text = report(a, gen_s, decode, arms, disk)
        Path(a.results).parent.mkdir(parents=True, exist_ok=True)
        Path(a.results).write_text(text)
        print(text)
        print(f"written: {a.results}", file=sys.stderr)
    finally:
        if a.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _same_file(a: Path, b: Path, chunk: int = 1 << 24) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    raise SystemExit(main())

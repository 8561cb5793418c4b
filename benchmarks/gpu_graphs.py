"""CUDA graphs and bf16 on a GPU: img/s of dcgan-28/32/64 and the conv VAE, the share of the bf16 peak, and one
graphed training step against the eager one.

    PYTHONPATH=src python benchmarks/gpu_graphs.py                # a CUDA machine (part of benchmarks/gpu_check.sh)
    PYTHONPATH=src python benchmarks/gpu_graphs.py --cpu-smoke    # the same code on the CPU: tiny, graphs emulated

1. Agreement: for dcgan-28, the conv VAE and cdcgan with DiffAugment, the same initial weights and data through
   ``Trainer.train_step`` eagerly and with ``train.cuda_graphs=true`` (fp32 with TF32 off, and bf16): the largest
   weight difference after 1 and 5 steps beside the largest change the steps made, and the noise generator's
   offset (each replay must draw the eager step's numbers). Fails (exit 1) when a 1-step difference exceeds
   ``TOL`` of the change (bf16: ``TOL_BF16``).
2. Throughput: ganvae's step (``Trainer.train_step`` plus the loop's loss accumulation) at batch 128 and 512,
   fp32 (TF32) and bf16, eager and graphed; the median of 3 timed blocks of about ``--block-s`` seconds after
   warm-up (the capture included there). FLOPs per image from ``FlopCounterMode`` over one eager step (forward and
   backward, every phase); the share is achieved FLOP/s over the GPU's dense bf16 peak (:data:`PEAK_BF16`, from
   the vendor's data sheets, by device name).
Each model runs in its own worker process (a failure stays there). Targets (the issue): dcgan-28 >= 100k img/s and
dcgan-64 >= 20k img/s on an H100/H200-class GPU. Writes ``gpu-graphs.md`` and ``gpu-graphs.jsonl`` into ``$OUT``
when set, and the Markdown to ``--results``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TOL, TOL_BF16 = 1e-3, 2e-2
SPECS = {"dcgan-28": ("dcgan", 28, {}), "dcgan-32": ("dcgan", 32, {}), "dcgan-64": ("dcgan", 64, {}),
         "vae-28": ("vae", 28, {})}
AGREE = {"dcgan-28": ("dcgan", 28, {}), "vae-28": ("vae", 28, {}),
         "cdcgan-28+diffaugment": ("cdcgan", 28, {"augment": "translation,cutout"})}
SMOKE = {"latent_dim": 8, "g_width": 8, "d_width": 8, "width": 8}  # --cpu-smoke: every model this small, 16 px
# dense bf16 tensor-core peak, TFLOP/s (vendor data sheets; sparsity not counted); first match in the name wins
PEAK_BF16 = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("B200", 2250.0),
             ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0)]


def peak_bf16(name: str) -> float | None:
    for key, tflops in PEAK_BF16:
        if key in name:
            return tflops
    return None


# --------------------------------------------------------------------------- building
def model_for(name: str, size: int, over: dict, smoke: bool):
    from ganvae.models import MODELS, build

    cls = MODELS.get(name).config_class
    fields = {f for f in cls.__dataclass_fields__}
    kw = {**({k: v for k, v in SMOKE.items() if k in fields} if smoke else {}), **over}
    torch.manual_seed(0)
    return build(name, cls(image_size=16 if smoke else size, channels=1, num_classes=10, **kw))


def data_for(model, n: int = 2048):
    g = torch.Generator().manual_seed(1)
    size = model.config.image_size
    return (torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=g))


def trainer_for(model, device: str, batch: int, precision: str, graphs: bool, smoke: bool, tf32: bool = True):
    from ganvae.training import TrainConfig, Trainer
    from ganvae.training.graphs import GraphedStep

    images, labels = data_for(model, max(2048, 4 * batch))
    cfg = TrainConfig(batch_size=batch, precision=precision, tensorboard=False, report=False, device=device,
                      channels_last=False, tf32=tf32, seed=3, cuda_graphs=graphs and not smoke)
    tmp = tempfile.mkdtemp(prefix="gv-graphs-")
    tr = Trainer(model.to(device), cfg, images, labels, tmp, torch.device(device))
    tr.defer_finite_check = True  # the CUDA default; on the CPU too, so the emulated graph can run
    if graphs and smoke:
        tr.graphs = GraphedStep(tr, insist=True, emulate=True)
    return tr


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- 1. agreement
def weights(model) -> dict[str, torch.Tensor]:
    """The floating-point state (weights, BatchNorm statistics) on the CPU; step counters left out."""
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items() if v.is_floating_point()}


def agreement(device: str, smoke: bool) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = []
    for label, (name, size, over) in (list(AGREE.items())[:1] if smoke else AGREE.items()):
        for precision in (["fp32"] if smoke else ["fp32", "bf16"]):
            model = model_for(name, size, over, smoke)
            init = weights(model)
            eager = trainer_for(copy.deepcopy(model), device, 64, precision, False, smoke, tf32=False)
            graph = trainer_for(copy.deepcopy(model), device, 64, precision, True, smoke, tf32=False)
            row = {"model": label, "precision": precision}
            for steps in (1, 5):
                while eager.step < (steps if not smoke else min(steps, 2)):
                    eager.train_step()
                    graph.train_step()
                a, b = weights(eager.model), weights(graph.model)
                row[f"diff_{steps}"] = max((a[k] - b[k]).abs().max().item() for k in a)
                row[f"change_{steps}"] = max((a[k] - init[k]).abs().max().item() for k in a)
            row["graphed"] = graph.graphs is not None and graph.graphs.graph is not None and not graph.graphs.disabled
            if device.startswith("cuda"):
                row["noise_offset_equal"] = eager.noise.get_offset() == graph.noise.get_offset()
            tol = TOL if precision == "fp32" else TOL_BF16
            row["ok"] = bool(row["graphed"] and row["diff_1"] <= tol * row["change_1"]
                             and row.get("noise_offset_equal", True))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# --------------------------------------------------------------------------- 2. throughput
def rate(tr, device: str, block_s: float, warmup: int = 5, blocks: int = 3) -> float:
    from ganvae.training.clock import Clock

    clock = Clock(0.0, None, 0)
    for _ in range(warmup):  # the capture happens in the first
        clock.add(tr.train_step())
    sync(device)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < block_s / 4 or n < 3:  # calibrate the block length
        clock.add(tr.train_step())
        n += 1
    sync(device)
    steps = max(3, int(n * block_s / max(time.perf_counter() - t, 1e-9)))
    rates = []
    for _ in range(blocks):
        start, imgs = time.perf_counter(), 0
        for _ in range(steps):
            clock.add(tr.train_step())
            imgs += tr._images_this_step
        sync(device)
        rates.append(imgs / (time.perf_counter() - start))
    return statistics.median(rates)


def flops_per_image(model, device: str, smoke: bool) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    tr = trainer_for(copy.deepcopy(model), device, 64, "fp32", False, smoke)
    tr.train_step()
    with FlopCounterMode(display=False) as fc:
        tr.train_step()
    return fc.get_total_flops() / tr._images_this_step


def throughput(spec: str, device: str, smoke: bool, batches: list[int], precisions: list[str],
               block_s: float) -> list[dict]:
    name, size, over = SPECS[spec]
    model = model_for(name, size, over, smoke)
    flops = flops_per_image(model, device, smoke)
    peak = peak_bf16(torch.cuda.get_device_name(0)) if device.startswith("cuda") else None
    rows = []
    for batch in batches:
        for precision in precisions:
            for graphs in (False, True):
                row = {"model": spec, "batch": batch, "precision": precision, "graphs": graphs}
                try:
                    tr = trainer_for(copy.deepcopy(model), device, batch, precision, graphs, smoke)
                    row["img_s"] = rate(tr, device, block_s, *((2, 1) if smoke else ()))
                    row["graphed"] = tr.graphs is not None and not tr.graphs.disabled
                    del tr
                except Exception as e:  # noqa: BLE001 - one failed variant is a row, not the end of the run
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                row["gflop_per_img"] = flops / 1e9
                if "img_s" in row:
                    row["tflop_s"] = row["img_s"] * flops / 1e12
                    if peak:
                        row["bf16_peak_share"] = row["tflop_s"] / peak
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


# --------------------------------------------------------------------------- the report
def run_job(job: dict) -> list[dict]:
    if job["kind"] == "agree":
        return agreement(job["device"], job["smoke"])
    return throughput(job["spec"], job["device"], job["smoke"], job["batches"], job["precisions"], job["block_s"])


def in_worker(job: dict, timeout: float) -> list[dict]:
    """``run_job`` in a fresh process (a CUDA error or a capture gone wrong stays there)."""
    try:
        r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                           timeout=max(timeout, 10))
    except subprocess.TimeoutExpired:
        return [{"model": job.get("spec", "agreement"), "error": f"worker timed out after {timeout:.0f}s"}]
    sys.stderr.write(r.stderr[-2000:])
    out = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 and not out:
        out = [{"model": job.get("spec", "agreement"), "error": (r.stderr.strip().splitlines() or ["?"])[-1]}]
    return out


def fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def markdown(agree: list[dict], rows: list[dict], args, machine: str, skipped: list[str]) -> str:
    lines = ["# CUDA graphs and bf16 on the GPU", "",
             f"- Date: {dt.date.today()}; machine: {machine}; torch {torch.__version__}",
             f"- Command: `{' '.join(['python', *sys.argv])}`",
             "- img/s: real training images per second through `Trainer.train_step` plus the loop's loss "
             "accumulation; median of 3 timed blocks after warm-up (the capture included there). fp32 rows use "
             "TF32. Share: achieved FLOP/s (FlopCounterMode FLOPs of one eager step per image) over the GPU's "
             "dense bf16 peak from its data sheet.", "",
             "## A graphed step against the eager step", "",
             f"Same weights and data; largest weight difference after 1 and 5 steps beside the largest change the "
             f"steps made (tolerance: {TOL:g} of the change in fp32 with TF32 off, {TOL_BF16:g} in bf16).", "",
             "| model | precision | graphed | diff 1 step | change 1 step | diff 5 steps | change 5 steps | "
             "noise offsets equal | ok |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in agree:
        if "error" in r:
            lines.append(f"| {r['model']} | | | error: {r['error']} | | | | | no |")
            continue
        lines.append(f"| {r['model']} | {r['precision']} | {r['graphed']} | {r['diff_1']:.2e} | {r['change_1']:.2e} "
                     f"| {r['diff_5']:.2e} | {r['change_5']:.2e} | {r.get('noise_offset_equal', 'n/a')} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    lines += ["", "## Throughput", "",
              "| model | batch | precision | CUDA graphs | img/s | x eager fp32 | GFLOP/img | TFLOP/s | "
              "share of bf16 peak |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    base = {(r["model"], r["batch"]): r["img_s"] for r in rows
            if r.get("precision") == "fp32" and not r.get("graphs") and "img_s" in r}
    for r in rows:
        if "img_s" not in r:
            lines.append(f"| {r['model']} | {r.get('batch', '')} | {r.get('precision', '')} | "
                         f"{'on' if r.get('graphs') else 'off'} | error: {r.get('error')} | | | | |")
            continue
        ref = base.get((r["model"], r["batch"]))
        graphs = ("on" if r["graphed"] else "refused") if r["graphs"] else "off"
        lines.append(f"| {r['model']} | {r['batch']} | {r['precision']} | {graphs} | {r['img_s']:,.0f} | "
                     f"{fmt(r['img_s'] / ref if ref else None, '.2f')} | {r['gflop_per_img']:.3f} | "
                     f"{r['tflop_s']:.2f} | {fmt(r.get('bf16_peak_share'), '.1%')} |")
    lines += ["", "## Targets (H100/H200-class GPU)", ""]
    for spec, target in (("dcgan-28", 100_000), ("dcgan-64", 20_000)):
        best = max((r for r in rows if r["model"] == spec and "img_s" in r), key=lambda r: r["img_s"], default=None)
        if best is None:
            lines.append(f"- {spec}: not measured")
        else:
            lines.append(f"- {spec}: best {best['img_s']:,.0f} img/s (batch {best['batch']}, {best['precision']}, "
                         f"graphs {'on' if best['graphs'] else 'off'}) against the target {target:,}: "
                         f"{'met' if best['img_s'] >= target else 'NOT met'}")
    if skipped:
        lines += ["", f"Not measured (time budget of {args.budget_s:g} s spent): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU, graphs emulated (a test)")
    ap.add_argument("--models", default=",".join(SPECS))
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--block-s", type=float, default=0.5, help="seconds per timed block")
    ap.add_argument("--budget-s", type=float, default=330, help="stop starting measurements after this long")
    ap.add_argument("--results", default="benchmarks/results/gpu-graphs.md")
    args = ap.parse_args()
    if args.worker:
        for _ in run_job(json.loads(args.worker)):
            pass  # each row is printed as it is measured
        return 0
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (--cpu-smoke runs the same code on the CPU)")
        return 1
    device = "cpu" if smoke else "cuda"
    if smoke:  # tiny and quick; in this process (no worker start-up)
        args.models, args.batches, args.precisions, args.block_s = "dcgan-28", "8", "fp32", 0.01
    machine = (f"{torch.cuda.get_device_name(0)}" if not smoke else "CPU (smoke: tiny models, graphs emulated)")
    print(json.dumps({"machine": machine, "torch": torch.__version__}), flush=True)
    t0 = time.perf_counter()
    jobs = [{"kind": "agree", "device": device, "smoke": smoke}]
    jobs += [{"kind": "time", "spec": m, "device": device, "smoke": smoke, "block_s": args.block_s,
              "batches": [int(b) for b in args.batches.split(",")], "precisions": args.precisions.split(",")}
             for m in args.models.split(",")]
    agree, rows, skipped = [], [], []
    for job in jobs:
        left = args.budget_s - (time.perf_counter() - t0)
        if left <= 0:
            skipped.append(job.get("spec", "agreement"))
            continue
        got = run_job(job) if smoke else in_worker(job, left + 60)
        (agree if job["kind"] == "agree" else rows).extend(got)
    text = markdown(agree, rows, args, machine, skipped)
    outs = [Path(args.results)] + ([Path(os.environ["OUT"]) / "gpu-graphs.md"] if os.environ.get("OUT") else [])
    for path in outs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "gpu-graphs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in agree + rows))
    return 0 if agree and all(r.get("ok") for r in agree) else 1


if __name__ == "__main__":
    sys.exit(main())

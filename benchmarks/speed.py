"""Training speed against a tutorial-style reference loop and against the hardware.

    .venv/bin/python benchmarks/speed.py                       # every model, fp32 + channels_last + bf16 check
    .venv/bin/python benchmarks/speed.py --models dcgan-64 --repeats 5
    .venv/bin/python benchmarks/speed.py --device cuda --precisions fp32,bf16 --compile dcgan-64,vae-28 \\
        --results benchmarks/results/speed-gpu.md

For each model at its default sizes (registered config, default widths, batch 64 unless
``--batch``) it measures:

- training images/s of ganvae's loop (``Trainer.train_step``), the median of ``--repeats``
  timed blocks of ``--steps`` steps after warm-up steps (compile warm-up included there);
- the same for a *reference loop* over the same networks written the way the PyTorch
  tutorials write it: a ``Dataset`` with per-item tensor transforms behind a shuffling
  ``DataLoader``, ``Sigmoid`` + ``BCELoss`` for the GAN (PyTorch's DCGAN tutorial: D on
  the real batch, D on ``fake.detach()``, then D on ``fake`` for G; ``.item()`` every
  step), sigmoid + ``binary_cross_entropy(reduction="sum")`` + KL for the VAE (PyTorch's
  VAE example);
- FLOPs per training image (``torch.utils.flop_counter.FlopCounterMode`` over one step,
  forward and backward, all phases) and achieved GFLOP/s as a share of the matmul peak
  measured in this run (2048x2048 fp32 / bf16 ``torch.mm``);
- sampling images/s (``model.sample``, batches of 256) and peak resident memory over the
  process's baseline (``ru_maxrss`` after minus before building the model);
- for ganvae's fp32 loop, the profile's top operators (``torch.profiler``, self CPU time);
- bf16 beside fp32 for every model where the device computes bf16 in hardware (GPUs; CPUs with
  AVX512-BF16 or AMX, :func:`ganvae.util.cpu.cpu_bf16`), and where it does, a short training curve
  of dcgan on ``--curve-data`` (mnist) in both precisions with a final FID, to show the quality is
  unchanged (``--curve on`` forces it, ``off`` skips it). The bf16 target: 1.6x the reference loop
  at dcgan-28/32/64. Without bf16 instructions the results say so in a sentence.

All loops of one model (the reference, ganvae contiguous, ganvae channels_last, other precisions,
compile) are built in one worker process and timed in alternating blocks, so the noise of a shared
machine hits them alike; FLOPs, memory, sampling and the profile come from one more worker per loop
(so peak memory is its own). The ratio is img/s over the reference's img/s of the same model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference import TutorialGAN, TutorialVAE  # noqa: E402

from ganvae.util.cpu import model_name  # noqa: E402

SPECS = {  # name -> (registered model, image size, channels)
    "dcgan-28": ("dcgan", 28, 1),
    "dcgan-32": ("dcgan", 32, 1),
    "dcgan-64": ("dcgan", 64, 1),
    "vae-28": ("vae", 28, 1),
    "vae-32": ("vae", 32, 1),
    "mlp-gan-28": ("mlp-gan", 28, 1),
    "mlp-vae-28": ("mlp-vae", 28, 1),
}


# --------------------------------------------------------------------------- hardware
def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n x n matmul, the best of 3 timed blocks of about ``seconds`` each."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = time.perf_counter()
    a @ b  # warm-up, and a first timing (an emulated dtype can be 50x slower)
    one = time.perf_counter() - t
    if one > 2.0 and n > 512:
        return matmul_peak(dtype, n // 2, seconds)
    reps = max(1, int(seconds / max(one, 1e-6)))
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best




def cpu_has_bf16() -> str | None:
    """"amx", "avx512_bf16" or None (GANVAE_CPU_BF16 forces the answer)."""
    from ganvae.util.cpu import cpu_bf16

    return cpu_bf16()


# --------------------------------------------------------------------------- the two loops
def build_model(spec: str):
    from ganvae.models import MODELS, build

    name, size, ch = SPECS[spec]
    cfg = MODELS.get(name).config_class(image_size=size, channels=ch, num_classes=10)
    return build(name, cfg)


def fake_data(spec: str, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    _, size, ch = SPECS[spec]
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, ch, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=g))


class OursLoop:
    def __init__(self, spec, args, device):
        from ganvae.training import TrainConfig, Trainer

        self.model = build_model(spec).to(device)
        images, labels = fake_data(spec)
        cfg = TrainConfig(batch_size=args.batch, precision=args.precision, channels_last=args.channels_last,
                          compile=args.compile, tensorboard=False, report=False, device=str(device),
                          cuda_graphs=getattr(args, "graphs", None))  # CUDA: graphs by default, as ganvae trains
        self.tmp = tempfile.TemporaryDirectory()
        self.trainer = Trainer(self.model, cfg, images, labels, self.tmp.name, device)
        if args.defer is not None:  # the non-finite loss check: after every phase (a host sync) or deferred
            self.trainer.defer_finite_check = args.defer

    def step(self) -> int:
        self.trainer.train_step()
        return self.trainer._images_this_step

    def sample_rate(self, n: int = 512) -> float:
        self.model.sample(64, seed=0)
        t = time.perf_counter()
        self.model.sample(n, seed=0)
        return n / (time.perf_counter() - t)


def ReferenceLoop(spec, args, device):
    """The tutorial-style loop (:mod:`reference`) over fresh copies of the same networks."""
    model = build_model(spec).to(device)
    images, labels = fake_data(spec)
    if model.family == "gan":
        return TutorialGAN(model.G, model.D, model.config.latent_dim, images, labels, args.batch, device)
    return TutorialVAE(model.encoder, model.decoder, images, labels, args.batch, device)


# --------------------------------------------------------------------------- one measurement
def make_loop(spec: str, v: dict, base: dict, device):
    args = argparse.Namespace(**{**base, **v})
    return (OursLoop if args.impl == "ours" else ReferenceLoop)(spec, args, device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_worker(job: dict) -> dict:
    """img/s of every variant of one model, built in this process and timed in alternating blocks."""
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["base"]["device"])
    loops = [make_loop(job["spec"], v, job["base"], device) for v in job["variants"]]
    warm = []
    for v, loop in zip(job["variants"], loops):
        t = time.perf_counter()
        for _ in range(job["base"]["warmup"] + (3 if v.get("compile") else 0)):
            loop.step()
        sync(device)
        warm.append(time.perf_counter() - t)
    rates: list[list[float]] = [[] for _ in loops]
    for r in range(job["base"]["repeats"]):
        order = list(range(len(loops)))
        order = order if r % 2 == 0 else order[::-1]  # drift hits every variant alike
        for i in order:
            t = time.perf_counter()
            imgs = sum(loops[i].step() for _ in range(job["base"]["steps"]))
            sync(device)
            rates[i].append(imgs / (time.perf_counter() - t))
    return {"img_s": [statistics.median(r) for r in rates], "img_s_all": rates, "warmup_s": warm}


def detail_worker(job: dict) -> dict:
    """FLOPs per image, peak memory, sampling rate and profile of one variant, alone in this process."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    v = job["variant"]
    loop = make_loop(job["spec"], {**v, "graphs": False}, job["base"], device)  # FLOPs, profile: eager ops
    for _ in range(2):
        loop.step()
    out = {}
    if not v.get("compile"):  # FlopCounterMode does not see inside compiled graphs
        with FlopCounterMode(display=False) as fc:
            imgs = loop.step()
        out["flops_per_img"] = fc.get_total_flops() / imgs
    out["rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if v["impl"] == "ours":
        out["sample_img_s"] = loop.sample_rate()
        if v.get("profile"):
            out["top_ops"] = profile(loop, job["base"]["steps"])
    return out


def profile(loop, steps: int) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile as prof

    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(max(2, steps // 2)):
            loop.step()
    events = [e for e in p.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:6]]


def run_worker(job: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]))
    r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the table
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--models", default=",".join(SPECS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per loop (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default=None,
                    help="comma list; default fp32, plus bf16 on GPUs and on CPUs with bf16 instructions "
                         "(avx512_bf16 or amx_bf16)")
    ap.add_argument("--channels-last", default="dcgan-28,dcgan-32,dcgan-64,vae-28,vae-32",
                    help="models to also measure with channels_last, ganvae's CPU default for conv nets "
                         "(comma list, or none)")
    ap.add_argument("--compile", default="", help="models to also measure with torch.compile (comma list)")
    ap.add_argument("--finite-check", default="", help="models to also measure with the other non-finite loss "
                    "check than the device's default (every phase with a host sync on CUDA; deferred on the CPU)")
    ap.add_argument("--curve", choices=["auto", "on", "off"], default="auto",
                    help="the fp32-vs-bf16 training curve (auto: where the device has bf16 instructions)")
    ap.add_argument("--curve-steps", type=int, default=600, help="training steps of each curve (batch 64)")
    ap.add_argument("--curve-data", default="mnist", help="data source of the curve")
    ap.add_argument("--curve-fid", type=int, default=5000, help="samples of the final FID of each curve (0: none)")
    ap.add_argument("--peak-seconds", type=float, default=1.0, help="seconds per timed block of the matmul peak")
    ap.add_argument("--results", default="benchmarks/results/speed.md")
    args = ap.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps((time_worker if job["kind"] == "time" else detail_worker)(job)))
        return

    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in SPECS:
            raise SystemExit(f"--models: unknown {m!r}; valid: {', '.join(SPECS)}")
    bf16_hw = "GPU" if args.device.startswith("cuda") else cpu_has_bf16()
    if args.precisions:
        precisions = {m: args.precisions.split(",") for m in models}
    else:
        precisions = {m: ["fp32", "bf16"] if bf16_hw else ["fp32"] for m in models}
    cl = set() if args.channels_last == "none" else set(args.channels_last.split(","))
    comp = set(filter(None, args.compile.split(",")))
    # without bf16 instructions a bf16 matmul is emulated (about 1 GFLOP/s on a 2-core EPYC): measure it small
    peak = {"fp32": matmul_peak(torch.float32, seconds=args.peak_seconds),
            "bf16": matmul_peak(torch.bfloat16, 2048 if bf16_hw else 256, args.peak_seconds)}
    print(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    base = dict(batch=args.batch, steps=args.steps, repeats=args.repeats, warmup=args.warmup,
                threads=args.threads, device=args.device, precision="fp32", channels_last=False, compile=False,
                defer=None)
    rows = []
    for m in models:
        # ganvae: contiguous fp32, its default (channels_last on for conv nets on the CPU), other precisions
        variants = [dict(impl="ref"), dict(impl="ours", channels_last=False, profile=True)]
        if m in cl:
            variants.append(dict(impl="ours", channels_last=True))
        variants += [dict(impl="ours", precision=p, channels_last=m in cl) for p in precisions[m] if p != "fp32"]
        if m in comp:
            variants.append(dict(impl="ours", compile=True, channels_last=m in cl))
        if m in args.finite_check.split(","):
            variants.append(dict(impl="ours", defer=not args.device.startswith("cuda"), channels_last=m in cl))
        timing = run_worker({"kind": "time", "spec": m, "variants": variants, "base": base,
                             "threads": args.threads})
        if "error" in timing:
            print(f"{m}: error {timing['error']}", flush=True)
            rows.append({"model": m, "impl": "ref", "error": timing["error"]})
            continue
        for v, rate in zip(variants, timing["img_s"]):
            d = run_worker({"kind": "detail", "spec": m, "variant": v, "base": base, "threads": args.threads,
                            "device": args.device})
            row = {"model": m, **{**base, **v}, "img_s": rate, **{k: d[k] for k in d if k != "error"}}
            if "flops_per_img" in row:
                row["gflop_s"] = row["img_s"] * row["flops_per_img"] / 1e9
            rows.append(row)
        ref = rows[-len(variants)]
        for r in rows[-len(variants):]:
            r["ratio"] = r["img_s"] / ref["img_s"]
            print(f"{m:11s} {label(r):30s} {r['img_s']:8.1f} img/s  x{r['ratio']:.2f}", flush=True)
    # the peak again at the end: the machine is noisy, the larger measurement is the closer to the truth
    for k, n in (("fp32", 2048), ("bf16", 2048 if bf16_hw else 256)):
        peak[k] = max(peak[k], matmul_peak(getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[k]), n,
                                           args.peak_seconds))
    print(f"matmul peak (max of start and end): fp32 {peak['fp32']:.0f} GFLOP/s", flush=True)
    for r in rows:
        if "gflop_s" in r:
            r["peak_share"] = r["gflop_s"] / peak[r["precision"]]
    curves = curve(args) if args.curve == "on" or (args.curve == "auto" and bf16_hw) else None
    write(rows, peak, bf16_hw, args, curves)


def curve(args) -> list[dict]:
    """dcgan on ``--curve-data`` for ``--curve-steps`` steps in fp32 and in bf16: logged losses, img/s, final FID."""
    import ganvae

    out = []
    every = max(1, args.curve_steps // 6)
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run = ganvae.train("dcgan", args.curve_data, out=Path(tmp) / precision, steps=args.curve_steps,
                               batch_size=64, seed=0, device=args.device, precision=precision, progress=False,
                               log=lambda *a: None, set=[f"train.log_every={every}", "train.tensorboard=false",
                                                         "train.report=false", f"train.threads={args.threads}",
                                                         f"train.sample_every={args.curve_steps}"])
            seconds = time.perf_counter() - t
            lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
            lines = [x for x in lines if "loss/D" in x]
            fid = None
            if args.curve_fid:
                recs = ganvae.evaluate(run.path, metrics="fid", n=args.curve_fid, baselines=False, write=False,
                                       log=None, progress=False, device=args.device)
                fid = next((r["value"] for r in recs if r.get("metric") == "fid"), None)
        row = {"precision": precision, "seconds": seconds, "fid": fid,
               "curve": [(x["step"], x["loss/D"], x["loss/G"], x["img_per_s"]) for x in lines]}
        print(f"curve {precision}: {seconds:.0f}s, fid {fid}", flush=True)
        out.append(row)
    return out


def label(r: dict) -> str:
    if r["impl"] == "ref":
        return "reference (tutorial)"
    parts = ["ganvae", r.get("precision", "fp32")]
    parts.append("channels_last" if r.get("channels_last") else "contiguous")
    if r.get("compile"):
        parts.append("compile")
    if r.get("defer") is not None:
        parts.append("deferred finite check" if r["defer"] else "finite check every phase")
    return " ".join(parts)


def write(rows: list[dict], peak: dict, bf16_hw, args, curves: list[dict] | None = None) -> None:
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        machine = f"{torch.cuda.get_device_name(0)}"
    else:
        machine = f"{model_name()}, {os.cpu_count()} cores, {args.threads} torch threads"
    lines = [
        "# Training speed: ganvae's loop against a tutorial-style reference loop",
        "",
        f"- Date: {dt.date.today()}; machine: {machine}; torch {torch.__version__}; "
        f"bf16 instructions: {bf16_hw or 'no (bf16 is emulated: slower than fp32 here)'}",
        f"- Command: `{' '.join(shlex.quote(a) for a in [sys.executable.split('/')[-1], *sys.argv])}`",
        f"- Matmul peak measured in this run (2048^3 torch.mm): fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16']:.0f} GFLOP/s",
        f"- Batch {args.batch}; img/s = real training images per second: every loop of a model is built in one "
        f"worker process and timed in {args.repeats} alternating blocks of {args.steps} steps after "
        f"{args.warmup} warm-up steps (median); FLOPs, memory and sampling come from one more worker per loop; "
        "ratio = img/s / reference img/s of the same model; FLOPs per training image from FlopCounterMode "
        "over one whole step (all phases, forward + backward); share = achieved GFLOP/s / matmul peak of "
        "that precision (the larger of two measurements, at the start and the end); memory = peak RSS over the "
        "worker's baseline (CPU). ganvae's default on the CPU is channels_last for conv nets; on CUDA its loop "
        "runs as it trains by default, the step captured in a CUDA graph (train.cuda_graphs), except the 'finite "
        "check every phase' rows (a host sync per phase: eager).",
        "",
        "| model | loop | img/s | x reference | GFLOP/img | GFLOP/s | share of peak | sample img/s | memory MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {label({**r, 'precision': r.get('precision', 'fp32')})} | error: "
                         f"{r['error']} | | | | | | |")
            continue
        f = lambda k, fmt: format(r[k], fmt) if k in r else ""  # noqa: E731
        lines.append(f"| {r['model']} | {label(r)} | {r['img_s']:.1f} | {f('ratio', '.2f')} | "
                     f"{r['flops_per_img'] / 1e9:.3f} | {f('gflop_s', '.0f')} | {f('peak_share', '.0%')} | "
                     f"{f('sample_img_s', '.0f')} | {f('rss_mb', '.0f')} |" if "flops_per_img" in r else
                     f"| {r['model']} | {label(r)} | {r['img_s']:.1f} | {f('ratio', '.2f')} | | | | "
                     f"{f('sample_img_s', '.0f')} | {f('rss_mb', '.0f')} |")
    lines += [""] + bf16_lines(rows, bf16_hw, curves, args)
    lines += ["", "## Where the time goes (ganvae fp32, torch.profiler, share of self CPU time)", ""]
    for r in rows:
        if r.get("top_ops"):
            ops = ", ".join(f"{k} {v:.0%}" for k, v in r["top_ops"])
            lines.append(f"- {r['model']}: {ops}")
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def bf16_lines(rows: list[dict], bf16_hw, curves: list[dict] | None, args) -> list[str]:
    """The bf16 section: the 1.6x target at dcgan-28/32/64, the fp32-vs-bf16 curve, or why there is none."""
    out = ["## bf16", ""]
    if not bf16_hw:
        out.append(f"This CPU ({model_name()}) has no AVX512-BF16 or AMX instructions, so bf16 was not measured: "
                   "it runs emulated here, far slower than fp32 (`--precision bf16` warns; `--precision auto` "
                   "keeps fp32). Run this script on a CPU with them (or a GPU) for the bf16 columns and curve.")
    elif not any(r.get("precision") == "bf16" for r in rows):
        out.append("bf16 was not measured in this run (--precisions).")
    for m in ("dcgan-28", "dcgan-32", "dcgan-64"):
        got = [r for r in rows if r["model"] == m and r.get("precision") == "bf16" and "ratio" in r]
        if got:
            best = max(got, key=lambda r: r["ratio"])
            out.append(f"- {m}: bf16 {best['img_s']:.1f} img/s = {best['ratio']:.2f}x the reference loop (target "
                       f"1.6x: {'met' if best['ratio'] >= 1.6 else 'NOT met'})")
    if curves:
        out += ["", f"Training curve: dcgan on `{args.curve_data}`, batch 64, {args.curve_steps} steps, seed 0, in "
                f"each precision (loss/D, loss/G at the logged steps; FID of the EMA generator on "
                f"{args.curve_fid} samples against the test split, feature net `auto`).", "",
                "| precision | wall s | final FID | step: loss/D, loss/G (img/s) |", "|---|---:|---:|---|"]
        for c in curves:
            pts = "; ".join(f"{st}: {d:.3f}, {g:.3f} ({ips:.0f})" for st, d, g, ips in c["curve"])
            fid = f"{c['fid']:.2f}" if c["fid"] is not None else ""
            out.append(f"| {c['precision']} | {c['seconds']:.0f} | {fid} | {pts} |")
    return out


if __name__ == "__main__":
    main()

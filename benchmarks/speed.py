"""Training speed against a tutorial-style reference loop and against the hardware.

    .venv/bin/python benchmarks/speed.py                       # every model, fp32 + channels_last + bf16 check
    .venv/bin/python benchmarks/speed.py --models dcgan-64 --repeats 5
    .venv/bin/python benchmarks/speed.py --device cuda --precisions fp32,bf16 --compile dcgan-64,vae-28 \\
        --results benchmarks/results/speed-gpu.md

For each model at its default sizes (registered config, default widths, batch 64 unless
``--batch``), one worker process per measurement (so peak memory is its own) measures:

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
- for ganvae's fp32 loop, the profile's top operators (``torch.profiler``, self CPU time).

Workers run one after another, alternating ganvae and reference per model, so slow drift of
a noisy machine hits both; the ratio is ganvae img/s over reference img/s of the same model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
                          compile=args.compile, tensorboard=False, report=False, device=str(device))
        self.tmp = tempfile.TemporaryDirectory()
        self.trainer = Trainer(self.model, cfg, images, labels, self.tmp.name, device)

    def step(self) -> int:
        self.trainer.train_step()
        return self.trainer._images_this_step

    def sample_rate(self, n: int = 512) -> float:
        self.model.sample(64, seed=0)
        t = time.perf_counter()
        self.model.sample(n, seed=0)
        return n / (time.perf_counter() - t)


class TutorialDataset(torch.utils.data.Dataset):
    """Per-item work, as tutorials do with ``transforms.ToTensor()`` + ``Normalize((0.5,), (0.5,))``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, normalize: bool):
        self.images = images.numpy()
        self.labels = labels.numpy()
        self.normalize = normalize

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255)
        if self.normalize:
            x = (x - 0.5) / 0.5
        return x, int(self.labels[i])


class ReferenceLoop:
    def __init__(self, spec, args, device):
        from torch import nn

        model = build_model(spec).to(device)
        self.family = model.family
        images, labels = fake_data(spec)
        self.loader = torch.utils.data.DataLoader(TutorialDataset(images, labels, self.family == "gan"),
                                                  batch_size=args.batch, shuffle=True, drop_last=True)
        self.it = iter(self.loader)
        self.device = device
        self.latent_dim = model.config.latent_dim
        if self.family == "gan":
            self.netG, self.netD = model.G, nn.Sequential(model.D, nn.Sigmoid())
            self.criterion = nn.BCELoss()
            self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
            self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        else:
            self.enc, self.dec = model.encoder, model.decoder
            self.opt = torch.optim.Adam(list(self.enc.parameters()) + list(self.dec.parameters()), lr=1e-3)
        self.losses: list[float] = []

    def _batch(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def step(self) -> int:
        import torch.nn.functional as F

        x, _ = self._batch()
        x = x.to(self.device)
        b = x.shape[0]
        if self.family == "gan":
            self.netD.zero_grad()
            label = torch.full((b,), 1.0, device=self.device)
            err_real = self.criterion(self.netD(x).view(-1), label)
            err_real.backward()
            fake = self.netG(torch.randn(b, self.latent_dim, device=self.device))
            label.fill_(0.0)
            err_fake = self.criterion(self.netD(fake.detach()).view(-1), label)
            err_fake.backward()
            self.optD.step()
            self.netG.zero_grad()
            label.fill_(1.0)
            err_g = self.criterion(self.netD(fake).view(-1), label)
            err_g.backward()
            self.optG.step()
            self.losses.append((err_real + err_fake).item())
            self.losses.append(err_g.item())
        else:
            self.opt.zero_grad()
            mu, logvar = self.enc(x).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = torch.sigmoid(self.dec(z))
            bce = F.binary_cross_entropy(recon, x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = bce + kld
            loss.backward()
            self.losses.append(loss.item())
            self.opt.step()
        return b


# --------------------------------------------------------------------------- one measurement
def worker(job: dict) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    args = argparse.Namespace(**job)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loop = (OursLoop if args.impl == "ours" else ReferenceLoop)(args.spec, args, device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    for _ in range(args.warmup):
        loop.step()
    sync()
    warm_s = time.perf_counter() - t
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        imgs = sum(loop.step() for _ in range(args.steps))
        sync()
        rates.append(imgs / (time.perf_counter() - t))
    out = {"img_s": statistics.median(rates), "img_s_all": rates, "warmup_s": warm_s}
    if not args.compile:  # FlopCounterMode does not see inside compiled graphs
        with FlopCounterMode(display=False) as fc:
            imgs = loop.step()
        out["flops_per_img"] = fc.get_total_flops() / imgs
    out["rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.impl == "ours":
        out["sample_img_s"] = loop.sample_rate()
        if args.profile:
            out["top_ops"] = profile(loop, args.steps)
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
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default=None,
                    help="comma list; default fp32, plus bf16 on GPUs and on CPUs with bf16 instructions "
                         "(avx512_bf16 or amx_bf16)")
    ap.add_argument("--channels-last", default="dcgan-28,dcgan-32,dcgan-64,vae-28,vae-32",
                    help="models to also measure with channels_last (comma list, or none)")
    ap.add_argument("--compile", default="", help="models to also measure with torch.compile (comma list)")
    ap.add_argument("--results", default="benchmarks/results/speed.md")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in SPECS:
            raise SystemExit(f"--models: unknown {m!r}; valid: {', '.join(SPECS)}")
    bf16_hw = args.device.startswith("cuda") or cpu_has_bf16()
    if args.precisions:
        precisions = {m: args.precisions.split(",") for m in models}
    else:
        precisions = {m: ["fp32", "bf16"] if bf16_hw else ["fp32"] for m in models}
    cl = set() if args.channels_last == "none" else set(args.channels_last.split(","))
    comp = set(filter(None, args.compile.split(",")))
    # without bf16 instructions a bf16 matmul is emulated (about 1 GFLOP/s on a 2-core EPYC): measure it small
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, 2048 if bf16_hw else 256)}
    print(f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    base = dict(batch=args.batch, steps=args.steps, repeats=args.repeats, warmup=args.warmup,
                threads=args.threads, device=args.device, precision="fp32", channels_last=False, compile=False,
                profile=False)
    rows = []
    for m in models:
        variants = [dict(impl="ref"), dict(impl="ours", profile=True)]
        variants += [dict(impl="ours", precision=p) for p in precisions[m] if p != "fp32"]
        if m in cl:
            variants.append(dict(impl="ours", channels_last=True))
        if m in comp:
            variants.append(dict(impl="ours", compile=True, warmup=args.warmup + 3))
        results = {}
        # ref and ours back to back, twice in opposite order, so drift hits both
        for order in (variants, variants[::-1]):
            for v in order:
                key = json.dumps(v, sort_keys=True)
                r = run_worker({**base, **v, "spec": m})
                results.setdefault(key, []).append(r)
        for v in variants:
            rs = results[json.dumps(v, sort_keys=True)]
            ok = [r for r in rs if "error" not in r]
            if not ok:
                rows.append({"model": m, **v, "error": rs[0]["error"]})
                print(f"{m} {v}: error {rs[0]['error']}", flush=True)
                continue
            row = {"model": m, **{**base, **v}, "img_s": statistics.median([r["img_s"] for r in ok]),
                   **{k: ok[0][k] for k in ("flops_per_img", "rss_mb", "sample_img_s", "top_ops", "cuda_peak_mb")
                      if k in ok[0]}}
            if "flops_per_img" in row:
                row["gflop_s"] = row["img_s"] * row["flops_per_img"] / 1e9
                row["peak_share"] = row["gflop_s"] / peak[row["precision"]]
            rows.append(row)
        ref = next((r for r in rows if r["model"] == m and r["impl"] == "ref" and "img_s" in r), None)
        for r in rows:
            if r["model"] == m and ref and "img_s" in r:
                r["ratio"] = r["img_s"] / ref["img_s"]
        for r in rows:
            if r["model"] == m and "img_s" in r:
                print(f"{m:11s} {label(r):22s} {r['img_s']:8.1f} img/s  x{r.get('ratio', float('nan')):.2f}  "
                      + (f"{r['peak_share']:.0%} of peak" if "peak_share" in r else ""), flush=True)
    write(rows, peak, bf16_hw, args)


def label(r: dict) -> str:
    if r["impl"] == "ref":
        return "reference (tutorial)"
    parts = ["ganvae", r["precision"]]
    if r.get("channels_last"):
        parts.append("channels_last")
    if r.get("compile"):
        parts.append("compile")
    return " ".join(parts)


def write(rows: list[dict], peak: dict, bf16_hw: bool, args) -> None:
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        machine = f"{torch.cuda.get_device_name(0)}"
    else:
        machine = f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} torch threads"
    lines = [
        "# Training speed: ganvae's loop against a tutorial-style reference loop",
        "",
        f"- Date: {dt.date.today()}; machine: {machine}; torch {torch.__version__}; "
        f"bf16 instructions: {'yes' if bf16_hw else 'no (bf16 is emulated: slower than fp32 here)'}",
        f"- Command: `{' '.join(shlex.quote(a) for a in [sys.executable.split('/')[-1], *sys.argv])}`",
        f"- Matmul peak measured in this run (2048^3 torch.mm): fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16']:.0f} GFLOP/s",
        f"- Batch {args.batch}; img/s = real training images per second, median of the per-worker medians "
        f"({args.repeats} blocks of {args.steps} steps after {args.warmup} warm-up steps, 2 workers each); "
        "ratio = img/s / reference img/s of the same model; FLOPs per training image from FlopCounterMode "
        "over one whole step (all phases, forward + backward); share = achieved GFLOP/s / matmul peak of "
        "that precision; memory = peak RSS over the worker's baseline (CPU).",
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
    lines += ["", "## Where the time goes (ganvae fp32, torch.profiler, share of self CPU time)", ""]
    for r in rows:
        if r.get("top_ops"):
            ops = ", ".join(f"{k} {v:.0%}" for k, v in r["top_ops"])
            lines.append(f"- {r['model']}: {ops}")
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

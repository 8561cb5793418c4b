"""Quality against wall-clock: the default GAN and VAE on `mnist` (or any data), scored after fixed training budgets.

    .venv/bin/python benchmarks/quality.py                          # 2, 5, 15 minutes on this machine's CPU
    .venv/bin/python benchmarks/quality.py --budgets 2,5 --models dcgan
    .venv/bin/python benchmarks/quality.py --device cuda --budgets 1,3 --results benchmarks/results/quality-gpu.md
    .venv/bin/python benchmarks/quality.py --models sc-dcgan,dcgan,reference-gan --budgets 10 --grids DIR
    .venv/bin/python benchmarks/quality.py --models sc-dcgan --budgets 60 --runs DIR --resume  # continue DIR's run
    .venv/bin/python benchmarks/photos.py /tmp/photos.npz && .venv/bin/python benchmarks/quality.py \
        --data npz:/tmp/photos.npz --n 1000 --models dcgan,dcgan-resize,resgan,vae --budgets 15  # colour photos

Models: ganvae's registered ones listed in MODELS below, and ``reference-gan``: PyTorch's DCGAN tutorial loop
(benchmarks/reference.py: per-item transforms, BCELoss on a sigmoid, batch 128) over ``dcgan``'s networks, timed
the same way (its steps only); variants of a registered model under their own names (``dcgan-resize``:
``dcgan`` with ``model.g_upsample=nearest``). ``--grids DIR``: a PNG of 64 samples per model and budget.

Each model trains once; the budgets are cumulative stops of the same run (train to the first
budget, score, resume exactly to the next, score, ...), so the 5-minute score is what a
5-minute run gives. The time counted is training time only (checkpoints and grids included,
scoring not). Protocol of every score: ``ganvae eval`` with ``--n N`` generated samples against
N images of the data's test split, features by ``--feature-net auto`` (on MNIST the shipped digit
classifier, ``mnist``; on other data the net ``auto`` picks and says why, EfficientNet-Lite0 for colour
photos), latent seed 0; floor = N real *train* images in place of samples, ceiling = the untrained
generator; pixel spectra (``spectrum``: blur and checkerboard) beside the feature scores. On MNIST the
VAEs train and are scored on dynamically binarised images (``data.binarize=true``), so their ELBO and
importance-weighted bound are comparable with Burda et al. (2016); on other data (``--binarize auto``)
they see the images as they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

import ganvae
from ganvae.api import evaluate
from ganvae.data import DataConfig, load_data
from ganvae.export import save_model
from ganvae.images import save_grid
from ganvae.models import MODELS as REGISTRY, build, standing_stats
from ganvae.training import checkpoint as ckpt
from ganvae.util.cpu import cpu_bf16, model_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import TutorialGAN  # noqa: E402

# the default GAN and VAE and their rivals; "model": the registered model of a variant (default: the name);
# "binarize": trains on binarised images where the data is MNIST (the likelihood protocol)
METRICS = "fid,kid,pr,dc,is,spectrum"
MODELS = {
    "dcgan": {"set": []},
    "dcgan-resize": {"model": "dcgan", "set": ["model.g_upsample=nearest"]},  # resize-convolution G
    "vae": {"set": [], "binarize": True},
    "vae-gan": {"set": []},
    "cdcgan": {"set": [], "metrics": METRICS + ",cacc"},  # the conditional DCGAN, for the same budgets
    "resgan": {"set": []},  # the R3GAN-style model, candidate default GAN
    "iwae": {"set": [], "binarize": True},  # the likelihood models
    "vamp-vae": {"set": [], "binarize": True},
    "sc-dcgan": {"set": []},  # self-conditioned: clusters of the data, no labels
    "sc-dcgan-resize": {"model": "sc-dcgan", "set": ["model.g_upsample=nearest"]},
    # PyTorch's DCGAN tutorial loop (benchmarks/reference.py) over dcgan's default networks, batch 128
    "reference-gan": {"set": []},
}
SHOW = ["fid", "kid", "precision", "recall", "density", "coverage", "is", "cacc", "spectral_distance",
        "checkerboard", "elbo", "nll", "nll_bits_per_dim"]


def metrics_for(name: str, args) -> str:
    """``name``'s metrics; without ``is`` where the feature net ``auto`` picks for the data has no classifier."""
    from ganvae.metrics.evaluate import pick_feature_net
    from ganvae.metrics.features import get_feature_net

    metrics = MODELS[name].get("metrics", METRICS)
    if not hasattr(args, "feature_net"):  # once per data set
        args.feature_net = pick_feature_net(load_data(DataConfig(source=args.data)), device=args.device)
    if get_feature_net(args.feature_net, args.device).num_classes is None:
        metrics = ",".join(m for m in metrics.split(",") if m != "is")
    return metrics


def model_sets(name: str, args) -> list[str]:
    """The --set strings of ``name``'s run: its variant's, binarised data where asked and allowed, then --set."""
    spec = MODELS[name]
    binarize = args.binarize == "on" or (args.binarize == "auto" and args.data == "mnist")
    return spec["set"] + (["data.binarize=true"] if spec.get("binarize") and binarize else []) + args.set


class ReferenceRun:
    """The tutorial loop over dcgan's networks, trained in wall-clock chunks; each stop exported into a run folder
    (made by one ganvae step, then overwritten) so that ``evaluate`` scores it like ours. Its G is scored with
    BatchNorm statistics recomputed on its own samples (as time_to_quality.py does), in its favour."""

    def __init__(self, run: Path, args):
        ganvae.train("dcgan", args.data, out=run, overwrite=True, seed=args.seed, steps=1, progress=False,
                     log=lambda *a: None, device=args.device, set=args.set)
        m = ganvae.load(run)
        torch.manual_seed(args.seed)
        self.model = build("dcgan", m.config).to(args.device)
        train = load_data(DataConfig(source=args.data)).train
        self.loop = TutorialGAN(self.model.G, self.model.D, m.config.latent_dim, train.images, train.labels, 128,
                                args.device)
        self.run, self.steps, self.images, self.seconds = run, 0, 0, 0.0

    def train(self, minutes: float) -> None:
        end = self.seconds + minutes * 60
        while self.seconds < end:
            t0 = time.perf_counter()
            self.images += self.loop.step()
            self.steps += 1
            self.seconds += time.perf_counter() - t0
        gen = torch.Generator(device=self.model.device).manual_seed(12345)
        save_model(self.model, self.run / "model", standing_stats(self.model.G, lambda n: self.model.latent(n, gen)),
                   {"step": self.steps, "images_seen": self.images})


def train_chunk(name: str, run: Path, fresh: bool, chunk: float, args, spec, ref) -> dict:
    """Train ``name`` for ``chunk`` more minutes; its step, images seen and training seconds so far."""
    if ref is not None:
        ref.train(chunk)
        return {"step": ref.steps, "images_seen": ref.images, "train_seconds": ref.seconds}
    kw = dict(steps=10**9, max_minutes=chunk, progress=False, log=lambda *a: None, device=args.device)
    if fresh:
        ganvae.train(spec.get("model", name), args.data, out=run, overwrite=True, seed=args.seed,
                     set=model_sets(name, args), **kw)
    else:
        ganvae.train(out=run, resume=True, **kw)
    return ckpt.load_state(run / "checkpoints" / "latest.pt")


def bench_model(name: str, budgets: list[float], args) -> list[dict]:
    spec = MODELS[name]
    run = Path(args.runs) / name
    ref = ReferenceRun(run, args) if name == "reference-gan" else None
    rows = []
    done = 0.0
    latest = run / "checkpoints" / "latest.pt"
    if args.resume and ref is None and latest.is_file():  # continue a run: budgets already trained are skipped
        done = float(ckpt.load_state(latest)["train_seconds"]) / 60
        budgets = [b for b in budgets if b > done]
        if not budgets:
            raise SystemExit(f"--resume: {run} has trained {done:.1f} minutes, past every budget in --budgets")
    for i, budget in enumerate(budgets):
        state = train_chunk(name, run, i == 0 and done == 0, budget - done, args, spec, ref)
        done = budget
        info = {"step": int(state["step"]), "images_seen": int(state["images_seen"])}
        secs = float(state["train_seconds"])
        if args.grids:  # 64 samples of the exported generator (EMA for ours), latent seed 0
            save_grid(ganvae.load(run).sample(64, seed=0), Path(args.grids) / f"{name}-{budget:g}min.png", nrow=8)
        t0 = time.perf_counter()
        recs = evaluate(run, metrics_for(name, args), n=args.n, seed=0, baselines=(i == 0), device=args.device,
                        kid_subset_size=min(1000, args.n), log=None)
        if ref is None and REGISTRY.get(spec.get("model", name)).model_class.has_likelihood:
            recs += evaluate(run, "nll", n=args.nll_n, k=args.nll_k, seed=0, baselines=(i == 0),
                             device=args.device, log=None)
        eval_s = time.perf_counter() - t0
        row = {"model": name, "budget_min": budget, "train_s": round(secs, 1), "step": info["step"],
               "kimg": round(info["images_seen"] / 1000, 1), "eval_s": round(eval_s, 1),
               "scores": {r["metric"]: r for r in recs}}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "scores"}
                         | {m: round(r["value"], 4) for m, r in row["scores"].items() if m in SHOW}), flush=True)
    return rows


def fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def protocol(all_rows: dict[str, list[dict]], args) -> str:
    """The protocol paragraph, from what the records say (feature net, reference split, sizes)."""
    fid = next((r["scores"]["fid"] for rows in all_rows.values() for r in rows if "fid" in r["scores"]), {})
    net, why = fid.get("feature_net", "?"), fid.get("feature_net_reason")
    text = (f"Protocol: `ganvae eval` scores the exported generator (EMA for the GAN) with n = {args.n} samples "
            f"(latent seed 0) against {fid.get('n_reference', args.n)} *{fid.get('reference_split', 'test')}* "
            f"images of `{args.data}`; features from the `{net}` feature net (`--feature-net auto`"
            + (f": {why}" if why else "") + "). FID: Frechet distance of Gaussian fits; KID: unbiased MMD^2 with "
            "the cubic kernel, subsets of up to 1000; precision/recall and density/coverage: k = 5 nearest "
            "neighbours; IS (where the net has a classifier): exp E KL(p(y|x) || p(y)). spectral_distance: mean "
            "|log10| ratio of the radially averaged pixel power spectra of samples and test images (0: the same; "
            "blur lowers the outer rings, upsampling artefacts raise them); checkerboard: the samples' share of "
            "power at the period-2 frequencies over the test images' (about 1 for real images). Floor: the same "
            "metric with real train images in place of samples; ceiling: the untrained generator (same config and "
            "seed). Budgets are cumulative stops of one run (exact resume), training time only.")
    if any("nll" in r["scores"] for rows in all_rows.values() for r in rows):
        binarised = args.binarize == "on" or (args.binarize == "auto" and args.data == "mnist")
        text += (f" VAE likelihood: ELBO and L_k with k = {args.nll_k} on {args.nll_n} test images, in nats"
                 + (" on dynamically binarised images (Bernoulli decoder), test images binarised once with a "
                    "fixed seed (Burda et al. 2016, k = 5000: VAE 86.76, IWAE k=50 84.78)." if binarised else "."))
    return text


def write_md(path: Path, all_rows: dict[str, list[dict]], args, started: str, load: tuple, seconds: float) -> None:
    dev = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
           else f"CPU {model_name()}, {os.cpu_count()} cores"
                f"{' with' if cpu_bf16() else ' without'} bf16 instructions, {torch.get_num_threads()} torch threads")
    lines = [
        f"# Quality against wall-clock on `{args.data}` ({dev})",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}`  ",
        f"Started {started} UTC; ganvae {ganvae.__version__}, torch {torch.__version__}; "
        f"load average before/after {load[0]:.2f}/{os.getloadavg()[0]:.2f}; total {seconds / 60:.1f} min.",
        "",
        protocol(all_rows, args),
        "",
    ]
    for name, rows in all_rows.items():
        keys = [k for k in SHOW if k in rows[0]["scores"]]
        first = rows[0]["scores"]
        cfg = " ".join(([MODELS[name]["model"]] if "model" in MODELS[name] else []) + model_sets(name, args))
        cfg = cfg or "defaults"
        lines += [f"## `{name}` ({cfg})", "",
                  "| budget (min) | train s | steps | kimg | " + " | ".join(keys) + " |",
                  "|---" * (4 + len(keys)) + "|"]
        for r in rows:
            vals = []
            for k in keys:
                v = r["scores"][k]["value"]
                vals.append(fmt(v))
            lines.append(f"| {r['budget_min']:g} | {r['train_s']:.0f} | {r['step']} | {r['kimg']} | " + " | ".join(vals) + " |")
        for label, key in (("floor: real train", "floor"), ("ceiling: untrained", "ceiling")):
            vals = []
            for k in keys:
                v = first[k].get(key)
                vals.append(fmt(v))
            lines.append(f"| {label} | | | | " + " | ".join(vals) + " |")
        lines += ["", f"Scoring took {', '.join(str(r['eval_s']) for r in rows)} s per budget.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    (path.with_suffix(".json")).write_text(json.dumps(all_rows, indent=1, default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="dcgan,vae")
    p.add_argument("--budgets", default="2,5,15", help="cumulative training minutes, comma-separated")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="mnist",
                   help="mnist, or the same data exported with train and test arrays (npz:PATH) on a machine "
                        "without the data package")
    p.add_argument("--n", type=int, default=10000, help="samples per score (and test images)")
    p.add_argument("--nll-k", type=int, default=100, help="importance samples for the VAE bound")
    p.add_argument("--nll-n", type=int, default=10000, help="test images for the VAE bound")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every model")
    p.add_argument("--binarize", choices=("auto", "on", "off"), default="auto",
                   help="the VAEs on binarised images: auto = only on mnist (the likelihood protocol)")
    p.add_argument("--runs", default="benchmarks/runs/quality", help="where the runs go (not committed)")
    p.add_argument("--results", default="benchmarks/results/quality-run.md",
                   help="Markdown (and .json) of this run (quality.md is the hand-kept summary of several)")
    p.add_argument("--grids", default="", help="folder for a sample grid per model and budget (PNG)")
    p.add_argument("--resume", action="store_true",
                   help="continue each model's run already in --runs from its last checkpoint (exact resume; "
                        "not reference-gan, which starts over); budgets it has trained past are skipped")
    args = p.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if budgets != sorted(budgets) or budgets[0] <= 0:
        p.error("--budgets: increasing positive minutes, e.g. 2,5,15")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    t0 = time.perf_counter()
    all_rows = {}
    for name in args.models.split(","):
        if name not in MODELS:
            p.error(f"--models: {name!r} is not one of {', '.join(MODELS)}")
        all_rows[name] = bench_model(name, budgets, args)
        write_md(Path(args.results), all_rows, args, started, load, time.perf_counter() - t0)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

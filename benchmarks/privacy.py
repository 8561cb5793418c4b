"""Differentially private conditional generators on MNIST: utility at epsilon in {1, 10, infinity}.

    .venv/bin/python benchmarks/privacy.py                                   # cdcgan, eps 1,10,inf, 30 min each
    .venv/bin/python benchmarks/privacy.py --minutes 60 --eps 1,10 --batch-size 256
    .venv/bin/python benchmarks/privacy.py --model cvae --eps 10,inf
    .venv/bin/python benchmarks/privacy.py --model dp-merf --minutes 5 --eps 1,10,inf \\
        --results benchmarks/results/privacy-dpmerf.md
    .venv/bin/python benchmarks/privacy.py --init runs/public-cdcgan --eps 1,10   # public pretraining, then DP
    # smoke test of the script only (numbers meaningless; not for results/privacy.md):
    .venv/bin/python benchmarks/privacy.py --minutes 0.5 --n-gen 2000 --cas-epochs 1 --n 500 \\
        --results /tmp/privacy-smoke.md --runs /tmp/privacy-runs

Per epsilon, one run of the conditional model (``cdcgan`` by default, ``cvae``, ``dp-merf``, or any conditional
model) on ``mnist`` (60k training images) with delta = 1e-5 (``--delta``):

* finite epsilon: ``ganvae train --dp-epsilon EPS --dp-delta 1e-5`` (Opacus DP-SGD on D, Poisson
  sampling, RDP accounting, per-sample clipping norm ``--max-grad-norm``). The noise multiplier is
  calibrated for a planned number of steps: ``--steps`` or, by default, as many as fit in ``--minutes``
  (measured by a short probe run of the same model). ``--minutes`` also stops the run; the epsilon
  actually spent is reported.
* ``dp-merf``: one Gaussian release of the random-feature mean embedding, calibrated for the target epsilon
  by the same accountant; its generator then trains for ``--minutes`` at no further cost (no probe).
* infinity: the same model, config and batch size trained without DP for ``--minutes``
  (D keeps the GroupNorm the DP runs use, so only the privacy differs).
* ``--init RUN``: every DP run starts from RUN's networks (public pretraining; the guarantee covers the private
  run's data only).

Scores of each exported generator:

* CAS (Classification Accuracy Score, Ravuri & Vinyals 2019; the DP-generation literature's "CNN
  accuracy"): ``ganvae cas`` (:func:`ganvae.api.cas`): ``--n-gen`` (60000) generated images, classes
  balanced, train the shared fixed classifier (ganvae.apps.classifier; ``--classifier FIELD=VALUE`` changes
  its recipe) only on them, tested on the 10k real MNIST test images; the same classifier trained on the 60k
  real training images is the reference.
* domain FID and cacc from ``ganvae eval`` (``--n`` samples against ``--n`` MNIST test images,
  features of the shipped digit classifier ``mnist``, latent seed 0).

Published anchors (delta = 1e-5, CNN accuracy on MNIST, different generators, budgets and hardware):
DP-GAN (Xie et al. 2018) 92.4% at eps 1 and
92.7% at eps 10; GS-WGAN (Chen et al. 2020) 75.3% at eps 10; DPDM (Dockhorn et al. 2022) 97.7% at eps 10.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

import ganvae
import ganvae.models
from ganvae.util.cpu import model_name
from ganvae.api import cas, evaluate
from ganvae.training import checkpoint as ckpt

ANCHORS = [("DP-GAN (Xie et al. 2018)", {"1": 92.4, "10": 92.7}),
           ("GS-WGAN (Chen et al. 2020)", {"10": 75.3}),
           ("DPDM (Dockhorn et al. 2022)", {"10": 97.7})]


# ----------------------------------------------------------------------------- training

def base_sets(args) -> list[str]:
    sets = ["train.tensorboard=false", "train.report=false", f"train.device={args.device}"]
    if "d_norm" in {f.name for f in dataclasses.fields(ganvae.models.MODELS.get(args.model).config_class)}:
        sets.append("model.d_norm=group")  # what the DP runs use (BatchNorm is not private), for eps = inf too
    return sets + args.set


def probe_steps(args, run: Path) -> int:
    """Steps of a DP run that fit in --minutes, from a short DP probe of the same config."""
    probe_s = min(30.0, max(5.0, args.minutes * 60 * 0.05))
    r = ganvae.train(args.model, args.data, out=run, overwrite=True, steps=10**6, batch_size=args.batch_size,
                     max_minutes=probe_s / 60, seed=args.seed, progress=False, log=lambda *a: None,
                     set=base_sets(args) + ["privacy.noise_multiplier=1.0", "train.sample_every=1000000",
                                            "train.checkpoint_every=1000000"])
    per_step = max(r.seconds, 1e-3) / max(r.step, 1)
    return max(10, int(0.9 * args.minutes * 60 / per_step))


def train_one(eps: float, args, runs: Path) -> dict:
    run = runs / f"{args.model}-eps{eps:g}"
    sets = base_sets(args)
    steps = 10**9
    if math.isfinite(eps):
        release = getattr(ganvae.models.MODELS.get(args.model).model_class, "needs_release", False)
        if not release:  # DP-SGD: sigma is calibrated for the planned steps; a release costs the same at any length
            steps = args.steps or probe_steps(args, runs / "probe")
        sets += [f"privacy.epsilon={eps}", f"privacy.delta={args.delta}", f"privacy.max_grad_norm={args.max_grad_norm}"]
        if args.init:
            sets.append(f"train.init={args.init}")
    t0 = time.perf_counter()
    r = ganvae.train(args.model, args.data, out=run, overwrite=True, steps=steps, batch_size=args.batch_size,
                     max_minutes=args.minutes, seed=args.seed, progress=False, log=lambda *a: None, set=sets)
    wall = time.perf_counter() - t0
    rj = json.loads((run / "run.json").read_text())
    st = ckpt.load_state(run / "checkpoints" / "latest.pt")
    return {"eps_target": eps, "run": str(run), "planned_steps": None if steps == 10**9 else steps,
            "init": rj.get("init"),
            "steps": int(st["step"]), "kimg": round(int(st["images_seen"]) / 1000, 1),
            "train_s": round(float(st["train_seconds"]), 1), "wall_s": round(wall, 1), "stopped": r.stopped,
            "privacy": rj.get("privacy")}


def score(row: dict, args) -> dict:
    run = Path(row["run"])
    t0 = time.perf_counter()
    c = cas(run, n=args.n_gen, seed=0, classifier=args.classifier, device=args.device, log=None)
    row["cas"], row["real_cas"] = round(100 * c["cas"], 2), round(100 * c["real_accuracy"], 2)
    row["classifier"] = c["classifier"]
    recs = evaluate(run, "fid,cacc", n=args.n, seed=0, baselines=False, device=args.device, log=None)
    for r in recs:
        row[r["metric"]] = r["value"]
    row["score_s"] = round(time.perf_counter() - t0, 1)
    return row


# ----------------------------------------------------------------------------- report

def fmt(v, spec=".4g") -> str:
    return "-" if v is None else format(v, spec)


def write_md(path: Path, rows: list[dict], args, started: str, load0: float, seconds: float) -> None:
    dev = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
           else f"CPU {model_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    release = getattr(ganvae.models.MODELS.get(args.model).model_class, "needs_release", False)
    how = ("one Gaussian release of the class-summed random-feature mean embedding (sensitivity 1), sigma "
           "calibrated for the target epsilon by the same accountant (one step at sample rate 1); the generator "
           "then trains on the release only" if release else
           "Opacus DP-SGD " + ("on D's real-data term only (G and the fake term are post-processing / not charged)"
                               if args.model in ("cdcgan", "cresgan") else "on the whole model")
           + f", Poisson sample rate {args.batch_size}/60000, clipping norm {args.max_grad_norm:g}, noise multiplier "
           "calibrated for the planned steps " + ("(`--steps`)" if args.steps else
                                                 "(as many as a short probe says fit the budget)"))
    clf = rows[0].get("classifier") if rows else None
    lines = [
        f"# Differentially private `{args.model}` on MNIST ({dev})", "",
        f"Command: `{cmd}`  ",
        f"Started {started} UTC; ganvae {ganvae.__version__}, torch {torch.__version__}; load average "
        f"before/after {load0:.2f}/{os.getloadavg()[0]:.2f}; total {seconds / 60:.1f} min.", "",
        f"Protocol: one run per epsilon on `{args.data}`, delta = {args.delta:g}, batch size {args.batch_size}, "
        f"{args.minutes:g} min of training each, seed {args.seed}. DP runs: {how}; RDP accountant; epsilon spent = "
        "what the accountant reports at the end. eps = inf: the same model and config trained without DP"
        + (f". DP runs start from `{args.init}` (--init: public pretraining; not covered by the guarantee)"
           if args.init else "")
        + f". CAS: `ganvae cas`: {args.n_gen} generated images (classes balanced) train the shared fixed classifier "
        f"(`{json.dumps(clf)}`), tested on the real test images; 'real' = the same classifier trained on the "
        f"real training images. FID/cacc: `ganvae eval`, {args.n} samples vs {args.n} test images, `mnist` feature "
        "net, latent seed 0 (floor and ceiling on this protocol: benchmarks/results/quality.md).", "",
        "| epsilon target | epsilon spent | noise multiplier | steps (planned) | kimg | train s | CAS % | real % | FID "
        "| cacc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r.get("privacy") or {}
        lines.append(f"| {r['eps_target']:g} | {fmt(p.get('epsilon'), '.3g')} | {fmt(p.get('noise_multiplier'), '.3g')}"
                     f" | {r['steps']} ({r['planned_steps'] or '-'}) | {r['kimg']} | {r['train_s']:.0f} | "
                     f"{fmt(r.get('cas'), '.2f')} | {fmt(r.get('real_cas'), '.2f')} | {fmt(r.get('fid'))} | "
                     f"{fmt(r.get('cacc'), '.3f')} |")
    lines += ["", "Stops: " + "; ".join(f"eps {r['eps_target']:g}: {r['stopped'] or 'planned steps done'}"
                                         for r in rows), "",
              "## Published anchors (delta = 1e-5, CNN accuracy on MNIST)", "",
              "| method | eps = 1 | eps = 10 |", "|---|---|---|"]
    for name, acc in ANCHORS:
        lines.append(f"| {name} | {acc.get('1', '-')} | {acc.get('10', '-')} |")
    lines += ["", "The anchors train for hours on GPUs with their own architectures and CNN classifiers; compare "
              "orders of magnitude, not decimals.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=1, default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cdcgan", help="a conditional model: cdcgan (default), cvae, dp-merf, ...")
    p.add_argument("--eps", default="1,10,inf", help="target epsilons, comma-separated; inf = no DP")
    p.add_argument("--minutes", type=float, default=30.0, help="training minutes per run")
    p.add_argument("--steps", type=int, help="planned DP steps (default: as many as fit in --minutes)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--init", help="start every DP run from this run's networks (public pretraining)")
    p.add_argument("--n-gen", type=int, default=60000, help="generated images that train the CAS classifier")
    p.add_argument("--classifier", action="append", default=[], help="FIELD=VALUE for the CAS classifier recipe")
    p.add_argument("--n", type=int, default=10000, help="samples (and test images) for FID and cacc")
    p.add_argument("--data", default="mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--runs", default="benchmarks/runs/privacy", help="where the runs go (not committed)")
    p.add_argument("--results", default="benchmarks/results/privacy.md")
    args = p.parse_args()
    try:
        eps_list = [float(e) for e in args.eps.split(",")]
    except ValueError:
        p.error(f"--eps {args.eps!r}: expected numbers or inf, e.g. 1,10,inf")
    if any(e <= 0 for e in eps_list) or args.minutes <= 0 or args.n_gen < 10:
        p.error("--eps must be > 0, --minutes > 0, --n-gen >= 10")
    models = ganvae.models.MODELS
    if args.model not in models.names() or not models.get(args.model).model_class.conditional:
        p.error(f"--model {args.model}: expected a registered conditional model")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    runs, rows = Path(args.runs), []
    for eps in eps_list:
        row = score(train_one(eps, args, runs), args)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("privacy", "run", "classifier")}
                         | {"eps_spent": (row["privacy"] or {}).get("epsilon")}), flush=True)
        write_md(Path(args.results), rows, args, started, load0, time.perf_counter() - t0)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

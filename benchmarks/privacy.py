"""Differentially private conditional generators: utility, cost and leakage at epsilon in {1, 10, infinity}.

    .venv/bin/python benchmarks/privacy.py --minutes 60 --eps 1,10           # cdcgan (DP-GAN) on MNIST
    .venv/bin/python benchmarks/privacy.py --model dp-merf --minutes 5 --eps 1,10,inf \
        --results benchmarks/results/privacy-dpmerf.md
    .venv/bin/python benchmarks/privacy.py --init runs/public-cdcgan --eps 10 --label "cdcgan + public init"
    .venv/bin/python benchmarks/privacy.py --model dp-merf --eps 10 --make-folder shapes:20000 \
        --feature-net train --n-gen 18000 --n 2000                         # a labelled folder no one tuned on
    .venv/bin/python benchmarks/privacy.py --combine A.json,B.json --results benchmarks/results/privacy.md
    # smoke test of the script only (numbers meaningless):
    .venv/bin/python benchmarks/privacy.py --minutes 0.2 --n-gen 200 --n 100 --audit-n 100 \
        --results /tmp/privacy-smoke.md --runs /tmp/privacy-runs

Per epsilon, one run of the conditional model (``cdcgan`` by default, ``cvae``, ``dp-merf``, or any conditional
model) on ``--data`` (``mnist`` by default, any labelled source) with delta = 1e-5 (``--delta``):

* finite epsilon: ``ganvae train --dp-epsilon EPS --dp-delta 1e-5`` (Opacus DP-SGD on D, Poisson
  sampling, RDP accounting, per-sample clipping norm ``--max-grad-norm``). The noise multiplier is
  calibrated for a planned number of steps: ``--steps`` or, by default, as many as fit in ``--minutes``
  (measured by a short probe run of the same model). ``--minutes`` also stops the run; the epsilon
  actually spent is reported.
* ``dp-merf``: one Gaussian release of the random-feature mean embedding, calibrated for the target epsilon
  by the same accountant; its generator then trains for ``--minutes`` at no further cost (no probe).
* infinity: the same model, config and batch size trained without DP for ``--minutes``
  (D keeps the GroupNorm and the D/G step ratio the DP runs use, so only the privacy differs).
* ``--init RUN``: every DP run starts from RUN's networks (public pretraining; the guarantee covers the private
  run's data only).

Scores of each exported generator:

* CAS (Classification Accuracy Score, Ravuri & Vinyals 2019; the DP-generation literature's "CNN
  accuracy"): ``ganvae cas`` (:func:`ganvae.api.cas`): ``--n-gen`` (60000) generated images, classes
  balanced, train the shared fixed classifier (ganvae.apps.classifier; ``--classifier FIELD=VALUE`` changes
  its recipe) only on them, tested on the real test images; the same classifier trained on the real
  training images is the reference.
* ``--metrics`` (domain FID and cacc) from ``ganvae eval`` (``--n`` samples against ``--n`` test images,
  ``--feature-net``: auto picks the shipped digit classifier on MNIST; ``train`` trains one on ``--data``
  first with ``ganvae featnet train``; latent seed 0).
* the leakage audit, ``ganvae audit`` with ``--audit-n`` samples (membership inference AUC and TPR at 1% FPR
  of its best attack, near-copies); it also writes each run's privacy card.

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
import ganvae.runfolder
from ganvae.util.cpu import model_name
from ganvae.api import audit, cas, evaluate
from ganvae.training import checkpoint as ckpt

ANCHORS = [("DP-GAN (Xie et al. 2018)", {"1": 92.4, "10": 92.7}),
           ("DP-GAN revisited, n_D = 50 (Bie et al. 2023; 450k D steps, 8 h on a V100)", {"10": 95.0}),
           ("GS-WGAN (Chen et al. 2020)", {"10": 75.3}),
           ("DPDM (Dockhorn et al. 2022)", {"10": 97.7})]


# ----------------------------------------------------------------------------- training

def base_sets(args) -> list[str]:
    sets = ["train.tensorboard=false", "train.report=false", f"train.device={args.device}"]
    cls = ganvae.models.MODELS.get(args.model).config_class
    fields = {f.name for f in dataclasses.fields(cls)}
    if "d_norm" in fields:
        sets.append("model.d_norm=group")  # what the DP runs use (BatchNorm is not private), for eps = inf too
    if "d_steps" in fields and not any(s.startswith("model.d_steps=") for s in args.set):
        sets.append(f"model.d_steps={cls.DP_D_STEPS}")  # the DP default step ratio, for eps = inf too
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
    cfg = ganvae.runfolder.read_config(run)
    return {"eps_target": eps, "run": str(run), "planned_steps": None if steps == 10**9 else steps,
            "d_steps": getattr(cfg.model, "d_steps", None), "n_train": (rj.get("data") or {}).get("n_train"),
            "init": rj.get("init"),
            "steps": int(st["step"]), "kimg": round(int(st["images_seen"]) / 1000, 1),
            "train_s": round(float(st["train_seconds"]), 1), "wall_s": round(wall, 1), "stopped": r.stopped,
            "privacy": rj.get("privacy")}


def score(row: dict, args) -> dict:
    run = Path(row["run"])
    t0 = time.perf_counter()
    score_cas(row, args.n_gen, args)
    recs = evaluate(run, args.metrics, n=args.n, seed=0, feature_net=args.feature_net, baselines=False,
                    device=args.device, log=None)
    for r in recs:
        row[r["metric"]] = r["value"]
    row["score_s"] = round(time.perf_counter() - t0, 1)
    if args.audit_n:
        score_audit(row, args)
    return row


def score_cas(row: dict, n_gen: int, args) -> None:
    """``ganvae cas`` of the row's run with ``n_gen`` generated images: CAS, the real-data reference, the recipe."""
    c = cas(Path(row["run"]), n=n_gen, seed=0, classifier=args.classifier, device=args.device, log=None)
    row["cas"], row["real_cas"] = round(100 * c["cas"], 2), round(100 * c["real_accuracy"], 2)
    row["classifier"] = c["classifier"]


def score_audit(row: dict, args) -> None:
    """``ganvae audit`` of the row's run (also writes its privacy card): the attacks' numbers into the row."""
    if args.audit_n:
        t0 = time.perf_counter()
        a = audit(row["run"], n_samples=args.audit_n, device=args.device, log=None, progress=False)
        row["audit"] = {k: a.get(k) for k in ("verdict", "mia_auc", "mia_best_attack", "mia_tpr_at_1pct_fpr",
                                               "n_near_copies", "z_u")}
        row["audit"]["n_members"] = a["protocol"]["n_members"]
        row["audit"]["auc_bar"] = a["thresholds"]["mia_auc"]
        row["audit_s"] = round(time.perf_counter() - t0, 1)


def audit_rows(path: str, args) -> None:
    """Audit the runs of an earlier result JSON that have no audit yet; rewrite the JSON with the numbers."""
    d = json.loads(Path(path).read_text())
    for row in d["rows"]:
        if not row.get("audit") and Path(row["run"]).is_dir():
            score_audit(row, args)
            print(json.dumps({"run": row["run"], **row["audit"]}), flush=True)
    Path(path).write_text(json.dumps(d, indent=1, default=str))


def rescore_cas(path: str, args) -> None:
    """Score the runs of an earlier result JSON again with today's CAS recipe (the classifier's defaults and
    ``--classifier``); the earlier numbers stay in the rows as ``cas_before`` / ``real_cas_before`` with the
    recipe that made them (``classifier_before``). Rewrites the JSON (run ``--combine`` afterwards)."""
    d = json.loads(Path(path).read_text())
    n_gen = (d.get("args") or {}).get("n_gen", args.n_gen)
    for row in d["rows"]:
        if not Path(row["run"]).is_dir():
            print(f"{row['run']}: not found, left as it was", flush=True)
            continue
        if "cas_before" not in row:
            row["cas_before"], row["real_cas_before"] = row.get("cas"), row.get("real_cas")
            row["classifier_before"] = row.get("classifier")
        score_cas(row, n_gen, args)
        print(json.dumps({"run": row["run"], "cas": row["cas"], "before": row["cas_before"]}), flush=True)
    Path(path).write_text(json.dumps(d, indent=1, default=str))


def make_folder(spec: str, root: Path) -> tuple[str, int]:
    """``SOURCE:N`` -> a folder of N labelled PNGs of the built-in SOURCE in class subfolders: (its path, the
    source's image size). Made once (a marker file beside it says it is complete)."""
    import numpy as np
    from PIL import Image
    from ganvae.data import DataConfig, load_data

    source, _, n = spec.partition(":")
    out, done = root / f"folder-{source}-{n}", root / f"folder-{source}-{n}.done"
    d = load_data(DataConfig(source=source, n=int(n) if n and source == "shapes" else None), progress=False)
    names = d.meta.get("class_names") or [str(i) for i in range(int(d.meta["num_classes"]))]
    if done.is_file():
        return str(out), int(d.meta["image_size"])
    images, labels = torch.cat([d.train.images, d.test.images]), torch.cat([d.train.labels, d.test.labels])
    if n and len(images) > int(n):
        images, labels = images[: int(n)], labels[: int(n)]
    for i, (x, y) in enumerate(zip(images, labels.tolist())):
        arr = x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()
        (out / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(arr)).save(out / names[y] / f"{i:06d}.png")
    done.write_text(f"{len(images)} images of {source}\n")
    return str(out), int(d.meta["image_size"])


# ----------------------------------------------------------------------------- report

def fmt(v, spec=".4g") -> str:
    return "-" if v is None else format(v, spec)


def method_name(args) -> str:
    return args.label or (args.model + (" + public init" if args.init else ""))


def table(rows: list[dict], method: bool = False) -> list[str]:
    """Markdown rows: guarantee, cost, utility and the audit of each run (``method``: a first column)."""
    head = ("| epsilon target | epsilon spent | sigma | D/G steps | steps (planned) | kimg | train min | CAS % "
            "| real % | FID | cacc | MIA AUC (bar) | TPR@1%FPR | near-copies |")
    lines = [("| method " if method else "") + head,
             "|" + "---|" * (head.count("|") - 1 + (1 if method else 0))]
    for r in rows:
        p, a = r.get("privacy") or {}, r.get("audit") or {}
        mia = f"{fmt(a.get('mia_auc'), '.3f')} ({fmt(a.get('auc_bar'), '.3f')})" if a else "-"
        lines.append((f"| {r.get('method', '-')} " if method else "")
                     + f"| {r['eps_target']:g} | {fmt(p.get('epsilon'), '.3g')} | "
                     f"{fmt(p.get('noise_multiplier'), '.3g')} | {r.get('d_steps') or '-'} | {r['steps']} ({r['planned_steps'] or '-'}) | {r['kimg']} | "
                     f"{r['train_s'] / 60:.1f} | {fmt(r.get('cas'), '.2f')} | {fmt(r.get('real_cas'), '.2f')} | "
                     f"{fmt(r.get('fid'))} | {fmt(r.get('cacc'), '.3f')} | {mia} | "
                     f"{fmt(a.get('mia_tpr_at_1pct_fpr'), '.3f')} | {fmt(a.get('n_near_copies'))} |")
    return lines


def header(args, started: str, load0: float, seconds: float) -> list[str]:
    dev = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
           else f"CPU {model_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                f"affinity {len(os.sched_getaffinity(0))} core(s)")
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    return [f"Command: `{cmd}`  ",
            f"Machine: {dev}. Started {started} UTC; ganvae {ganvae.__version__}, torch {torch.__version__}; load "
            f"average before/after {load0:.2f}/{os.getloadavg()[0]:.2f}; total {seconds / 60:.1f} min.", ""]


def protocol(args, rows: list[dict]) -> str:
    release = getattr(ganvae.models.MODELS.get(args.model).model_class, "needs_release", False)
    n_train = rows[0].get("n_train") if rows else None
    how = ("one Gaussian release of the class-summed random-feature mean embedding (sensitivity 1), sigma "
           "calibrated for the target epsilon by the same accountant (one step at sample rate 1); the generator "
           "then trains on the release only" if release else
           "Opacus DP-SGD " + ("on the whole model" if ganvae.models.MODELS.get(args.model).model_class.family
                               == "vae" else "on D's real-data term only (G and the fake term are post-processing, "
                               "not charged); D/G steps = D steps per G step")
           + f", Poisson sample rate {args.batch_size}/{n_train}, clipping norm {args.max_grad_norm:g} (per-sample "
           "clipping as `privacy.clipping` says, by default ghost clipping where the private nets are Linear/Embedding "
           "only, else Opacus's per-sample gradients; the same sums), noise "
           "multiplier calibrated for the planned steps " + ("(`--steps`)" if args.steps else
                                                            "(as many as a short probe says fit the budget)"))
    clf = rows[0].get("classifier") if rows else None
    return (f"Protocol: one run per epsilon on `{args.data}` ({n_train} training images), delta = {args.delta:g}, "
            f"batch size {args.batch_size}, {args.minutes:g} min of training each, seed {args.seed}. DP runs: {how}; "
            "RDP accountant; epsilon spent = what the accountant reports at the end. eps = inf: the same model and "
            "config trained without DP"
            + (f". DP runs start from `{args.init}` (--init: public pretraining; not covered by the guarantee)"
               if args.init else "")
            + f". CAS: `ganvae cas`: {args.n_gen} generated images (classes balanced) train the shared fixed "
            f"classifier (`{json.dumps(clf)}`), tested on the real test images; 'real' = the same classifier "
            f"trained on the real training images. {args.metrics}: `ganvae eval`, {args.n} samples vs {args.n} test "
            f"images, feature net `{rows[0].get('feature_net') if rows else args.feature_net}`, latent seed 0. "
            + (f"Audit: `ganvae audit`, {args.audit_n} samples; membership inference by the best of its attacks on "
               "members vs as many held-out images (bar: the audit's leak threshold); near-copies: samples whose "
               "nearest training image is 3x closer than the nearest held-out one." if args.audit_n else ""))


def write_md(path: Path, rows: list[dict], args, started: str, load0: float, seconds: float) -> None:
    lines = [f"# Differentially private `{method_name(args)}` on `{args.data}`", "", *header(args, started, load0,
                                                                                          seconds),
             protocol(args, rows), "", *table(rows), "",
             "Stops: " + "; ".join(f"eps {r['eps_target']:g}: {r['stopped'] or 'planned steps done'}" for r in rows),
             ""]
    if args.data == "mnist":
        lines += anchors()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"args": vars(args), "protocol": protocol(args, rows),
                                                     "rows": rows}, indent=1, default=str))


def anchors() -> list[str]:
    lines = ["## Published anchors (delta = 1e-5, CNN accuracy on MNIST)", "", "| method | eps = 1 | eps = 10 |",
             "|---|---|---|"]
    lines += [f"| {name} | {acc.get('1', '-')} | {acc.get('10', '-')} |" for name, acc in ANCHORS]
    return lines + ["", "The anchors train for hours on GPUs with their own architectures and CNN classifiers; "
                    "compare orders of magnitude, not decimals.", ""]


def combine(files: list[str], path: Path, started: str, args) -> None:
    """One table of the runs of several result JSONs (methods side by side), each with its protocol."""
    rows, notes = [], []
    for f in files:
        d = json.loads(Path(f).read_text())
        for r in d["rows"]:  # rows of files written before the script recorded these
            r.setdefault("method", (d.get("args") or {}).get("label") or Path(r["run"]).name.rsplit("-eps", 1)[0])
            if not r.get("data"):
                cfg = Path(r["run"]) / "config.yaml"
                r["data"] = ganvae.runfolder.read_config(r["run"]).data.source if cfg.is_file() else "?"
        rows += d["rows"]
        how = d.get("protocol", "(its protocol and machine are written in it)")
        notes.append(f"- `{Path(f).with_suffix('.md')}`: {how}")
    data = sorted({r.get("data", "?") for r in rows})
    lines = [f"# Private generators on {', '.join(f'`{x}`' for x in data)}: each method in one table", "",
             *header(args, started, os.getloadavg()[0], 0.0)[:1], "",
             "Rows from the result files below (each made by its own command, written in it); wall clock = "
             "training minutes (a DP-SGD run also spends a short probe; DP-MERF's release takes seconds).", "",
             *table(rows, method=True), "", "Sources and protocols:", "", *notes, ""]
    if data == ["mnist"]:
        lines += anchors()
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


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
    p.add_argument("--label", help="the method's name in the tables (default: the model, '+ public init')")
    p.add_argument("--n-gen", type=int, default=60000, help="generated images that train the CAS classifier")
    p.add_argument("--classifier", action="append", default=[], help="FIELD=VALUE for the CAS classifier recipe")
    p.add_argument("--n", type=int, default=10000, help="samples (and test images) for FID and cacc")
    p.add_argument("--metrics", default="fid,cacc", help="ganvae eval metrics of each run")
    p.add_argument("--feature-net", default="auto",
                   help="feature net for --metrics: auto, a path, or 'train' (ganvae featnet train on --data first)")
    p.add_argument("--audit-n", type=int, default=10000, help="samples for `ganvae audit` of each run (0: no audit)")
    p.add_argument("--data", default="mnist")
    p.add_argument("--make-folder", metavar="SOURCE:N",
                   help="write N labelled images of a built-in SOURCE (e.g. shapes:20000) as a folder of class "
                        "subfolders under --runs and train on that folder (a data set no one tuned on)")
    p.add_argument("--combine", metavar="JSON,JSON", help="only write --results: one table of these result files")
    p.add_argument("--audit-rows", metavar="JSON", help="only audit the runs of this result file that have no "
                   "audit yet (--audit-n samples) and write the numbers into it")
    p.add_argument("--rescore-cas", metavar="JSON", help="only score the runs of this result file again with "
                   "today's CAS recipe (the earlier numbers kept beside) and write them into it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--runs", default="benchmarks/runs/privacy", help="where the runs go (not committed)")
    p.add_argument("--results", help="the Markdown file (and .json beside it) of the results (default: "
                   "benchmarks/results/privacy-MODEL.md; benchmarks/results/privacy.md is the --combine table)")
    args = p.parse_args()
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    args.results = args.results or f"benchmarks/results/privacy-{args.model}.md"
    if args.combine:
        return combine(args.combine.split(","), Path(args.results), started, args)
    if args.audit_rows:
        return audit_rows(args.audit_rows, args)
    if args.rescore_cas:
        return rescore_cas(args.rescore_cas, args)
    try:
        eps_list = [float(e) for e in args.eps.split(",")]
    except ValueError:
        p.error(f"--eps {args.eps!r}: expected numbers or inf, e.g. 1,10,inf")
    if any(e <= 0 for e in eps_list) or args.minutes <= 0 or args.n_gen < 10:
        p.error("--eps must be > 0, --minutes > 0, --n-gen >= 10")
    models = ganvae.models.MODELS
    if args.model not in models.names() or not models.get(args.model).model_class.conditional:
        p.error(f"--model {args.model}: expected a registered conditional model")
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    runs, rows = Path(args.runs), []
    if args.make_folder:
        args.data, size = make_folder(args.make_folder, runs)
        args.set.append(f"data.image_size={size}")  # the source's own size (a folder would default to 64)
    if args.feature_net == "train":
        from ganvae.api.featnet import train_feature_net
        args.feature_net = str(runs / "featnet.safetensors")
        size = next((int(x.split("=")[1]) for x in args.set if x.startswith("data.image_size=")), None)
        fn = train_feature_net(args.data, image_size=size, out=args.feature_net, overwrite=True, device=args.device,
                               log=None, progress=False)
        print(f"feature net {args.feature_net}: {json.dumps(fn, default=str)[:300]}", flush=True)
    for eps in eps_list:
        row = score(train_one(eps, args, runs), args)
        row.update(method=method_name(args), data=args.make_folder or args.data, feature_net=args.feature_net)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("privacy", "run", "classifier")}
                         | {"eps_spent": (row["privacy"] or {}).get("epsilon")}, default=str), flush=True)
        write_md(Path(args.results), rows, args, started, load0, time.perf_counter() - t0)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

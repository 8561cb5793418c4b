"""Control and breadth at equal wall-clock: GAN objectives, conditional vs unconditional, DiffAugment, MIG.

    .venv/bin/python benchmarks/control.py --budget-s 120                       # this machine's CPU
    python benchmarks/control.py --device cuda --budget-s 25 \\
        --mnist npz:.gpu/mnist.npz --mnist5k npz:.gpu/mnist5k.npz               # a GPU without the data packages

Sections (``--sections``, comma list):

* ``objectives``: dcgan on mnist with nonsaturating, hinge, hinge + spectral norm, least-squares,
  wgan-gp (layer norm in D, n_critic 5, Adam (1e-4, (0, 0.9)) as in Gulrajani et al.) and wgan-gp
  + spectral norm, each for ``--budget-s`` seconds of training;
* ``conditional``: cdcgan vs dcgan on mnist, same budget: FID and conditional accuracy;
* ``augment``: dcgan on mnist-5k (4500 training digits) with and without DiffAugment
  (translation,cutout), scored against the full MNIST test set;
* ``mig``: vae, beta-vae and tcvae on shapes, 3 seeds each, MIG (and DCI) on the shapes test split.

Protocol of the image scores: ``--n`` samples (latent seed 0) against ``--n`` MNIST test images,
features of the shipped digit classifier; FID, KID (subsets of 1000), precision/recall (k = 5);
cacc = share of class-c samples the digit classifier calls c (classes balanced).
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
from ganvae.data import load_data
from ganvae.data.config import DataConfig
from ganvae.api import evaluate
from ganvae.metrics.features import get_feature_net
from ganvae.metrics.frechet import fid
from ganvae.metrics.kid import kid
from ganvae.metrics.prdc import prdc
from ganvae.training import checkpoint as ckpt

OBJECTIVES = [
    ("nonsaturating", []),
    ("hinge", ["model.objective=hinge"]),
    ("hinge + SN", ["model.objective=hinge", "model.d_spectral_norm=true"]),
    ("least-squares", ["model.objective=least-squares"]),
    ("wgan-gp", ["model.objective=wgan-gp", "model.d_norm=layer", "model.d_steps=5", "model.lr_g=1e-4",
                 "model.lr_d=1e-4", "model.betas_g=[0.0,0.9]", "model.betas_d=[0.0,0.9]"]),
    ("wgan-gp + SN", ["model.objective=wgan-gp", "model.d_norm=layer", "model.d_steps=5", "model.lr_g=1e-4",
                      "model.lr_d=1e-4", "model.betas_g=[0.0,0.9]", "model.betas_d=[0.0,0.9]",
                      "model.d_spectral_norm=true"]),
]


class Scorer:
    """FID/KID/PR of a model's samples against a fixed set of MNIST test features."""

    def __init__(self, mnist: str, n: int, device: str):
        self.n, self.device = n, device
        self.net = get_feature_net("mnist", device=device)
        test = load_data(DataConfig(source=mnist), progress=False).test
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(test.images.shape[0], generator=g)[:n].sort().values
        self.ref = self.net.features(test.images[idx].float() / 255).double()

    def __call__(self, model) -> dict:
        imgs = model.sample(self.n, seed=0).cpu()
        f = self.net.features(imgs).double()
        out = {"fid": fid(f, self.ref), "kid": kid(f, self.ref, subset_size=min(1000, self.n), seed=0)["kid"]}
        r = prdc(self.ref, f, k=5)
        out.update(precision=r["precision"], recall=r["recall"])
        if getattr(model, "conditional", False):
            c = model.config.num_classes
            labels = torch.arange(self.n) % c
            logits = self.net.logits(model.sample(self.n, seed=0, labels=labels).cpu())
            out["cacc"] = (logits.argmax(1) == labels).double().mean().item()
        return out


def train(name: str, data: str, run: Path, args, sets: list[str], seed: int = 0) -> dict:
    ganvae.train(name, data, out=run, overwrite=True, steps=10**9, max_minutes=args.budget_s / 60, seed=seed,
                 progress=False, log=lambda *a: None, device=args.device, set=sets)
    st = ckpt.load_state(run / "checkpoints" / "latest.pt")
    return {"steps": int(st["step"]), "kimg": round(int(st["images_seen"]) / 1000, 1),
            "train_s": round(float(st["train_seconds"]), 1)}


def table(rows: list[dict], keys: list[str]) -> list[str]:
    lines = ["| variant | train s | steps | kimg | " + " | ".join(keys) + " |", "|---" * (4 + len(keys)) + "|"]
    for r in rows:
        vals = [("-" if r.get(k) is None else f"{r[k]:.4g}") for k in keys]
        lines.append(f"| {r['variant']} | {r['train_s']:.0f} | {r['steps']} | {r['kimg']} | " + " | ".join(vals) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="objectives,conditional,augment,mig")
    p.add_argument("--budget-s", type=float, default=120, help="training seconds per variant")
    p.add_argument("--mig-budget-s", type=float, help="training seconds per MIG run (default: --budget-s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--mnist", default="mnist")
    p.add_argument("--mnist5k", default="mnist-5k")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the MIG runs")
    p.add_argument("--mig-models", default="vae,beta-vae,tcvae", help="models of the MIG runs")
    p.add_argument("--mig-set", default="model.latent_dim=10,data.n=50000",
                   help="comma list of --set overrides for every MIG run (all three models alike); the default: "
                        "10 latents as in Higgins et al. and Chen et al., 45000 training and 5000 test images")
    p.add_argument("--runs", default="benchmarks/runs/control")
    p.add_argument("--results", default="benchmarks/results/control.md")
    args = p.parse_args()
    runs, results = Path(args.runs), Path(args.results)
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    sections = args.sections.split(",")
    images = bool(set(sections) & {"objectives", "conditional", "augment"})
    budget = (f"{args.budget_s:g} s of training per variant" if images else
              f"{args.mig_budget_s or args.budget_s:g} s of training per run")
    title = "Control and breadth" if images else "Disentanglement: MIG and DCI on `shapes`"
    head = [f"# {title} at equal wall-clock ({dev})", "",
            f"Command: `{' '.join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}`  ",
            f"Started {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
            f"{budget} (checkpoints included, scoring not); "
            f"load average at start {os.getloadavg()[0]:.2f}.", ""]
    if images:
        head += [
            f"Image scores: {args.n} samples (latent seed 0) against {args.n} MNIST test images, features of the "
            "shipped digit classifier (`mnist`); FID, KID (unbiased, subsets of 1000), precision/recall (k = 5); "
            "cacc = share of class-c samples the classifier calls c, classes balanced. "
            "Floor on this protocol (real train vs test): see benchmarks/results/quality-2cores.md.", ""]
    body: list[str] = []
    log: dict = {}

    def flush():
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text("\n".join(head + body) + "\n")
        results.with_suffix(".json").write_text(json.dumps(log, indent=1))

    scorer = Scorer(args.mnist, args.n, args.device) if images else None
    if "objectives" in sections:
        rows = []
        for variant, sets in OBJECTIVES:
            r = {"variant": variant, **train("dcgan", args.mnist, runs / "obj" / variant.replace(" ", ""), args, sets)}
            r.update(scorer(ganvae.load(runs / "obj" / variant.replace(" ", ""), device=args.device)))
            rows.append(r)
            print(json.dumps(r), flush=True)
            log["objectives"] = rows
            body_obj = ["## GAN objectives (dcgan on mnist, defaults otherwise)", ""] + \
                table(rows, ["fid", "kid", "precision", "recall"]) + [""]
            body[:] = body_obj
            flush()
    base = list(body)
    if "conditional" in sections:
        rows = []
        for name in ("dcgan", "cdcgan"):
            r = {"variant": name, **train(name, args.mnist, runs / "cond" / name, args, [])}
            r.update(scorer(ganvae.load(runs / "cond" / name, device=args.device)))
            rows.append(r)
            print(json.dumps(r), flush=True)
        log["conditional"] = rows
        base += ["## Conditional vs unconditional (mnist, same budget)", ""] + \
            table(rows, ["fid", "kid", "precision", "recall", "cacc"]) + [""]
        body[:] = base
        flush()
    if "augment" in sections:
        rows = []
        for variant, sets in (("no augmentation", []), ("DiffAugment translation,cutout",
                                                         ["model.augment=translation,cutout"])):
            run = runs / "aug" / ("plain" if not sets else "aug")
            r = {"variant": variant, **train("dcgan", args.mnist5k, run, args, sets)}
            r.update(scorer(ganvae.load(run, device=args.device)))
            rows.append(r)
            print(json.dumps(r), flush=True)
        log["augment"] = rows
        base += ["## DiffAugment on small data (dcgan on mnist-5k's 4500 training digits, scored against the "
                 "full MNIST test set)", ""] + table(rows, ["fid", "kid", "precision", "recall"]) + [""]
        body[:] = base
        flush()
    if "mig" in sections:
        mig_args = argparse.Namespace(**{**vars(args), "budget_s": args.mig_budget_s or args.budget_s})
        per: dict[str, list[dict]] = {}
        for name in args.mig_models.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                run = runs / "mig" / f"{name}-{seed}"
                mig_sets = [x for x in args.mig_set.split(",") if x]
                r = {"variant": name, "seed": seed, **train(name, "shapes", run, mig_args, mig_sets, seed=seed)}
                recs = evaluate(run, "mig,dci", n=5000, seed=0, baselines=False, device=args.device, log=None,
                                write=True)
                r.update({x["metric"]: x["value"] for x in recs})
                per.setdefault(name, []).append(r)
                print(json.dumps(r), flush=True)
        log["mig"] = per
        lines = ["## Disentanglement on shapes (MIG, 20 bins; DCI with random-forest importances; "
                 "posterior means of 5000 test images)", "",
                 f"{mig_args.budget_s:g} s of training per run, seeds {args.seeds}, overrides `{args.mig_set}` "
                 "(model defaults otherwise: beta-vae beta 4; tcvae alpha 1, beta 6, gamma 1); mean ± sd over seeds.",
                 "",
                 "| model | MIG | DCI disentanglement | DCI completeness | DCI informativeness | per seed (MIG) | kimg |",
                 "|---|---|---|---|---|---|---|"]
        for name, rs in per.items():
            def ms(k):
                v = [r[k] for r in rs if k in r]
                return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}" if v else "-"
            lines.append(f"| {name} | {ms('mig')} | {ms('dci_disentanglement')} | {ms('dci_completeness')} | "
                         f"{ms('dci_informativeness')} | {', '.join(format(r['mig'], '.3f') for r in rs)} | "
                         f"{rs[0]['kimg']} |")
        base += lines + [""]
        body[:] = base
        flush()
    print(f"wrote {results}")


if __name__ == "__main__":
    main()

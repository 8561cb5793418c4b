"""Synthetic data for n-shot classification on MNIST: `ganvae augment`, 10/50/100/500 labels per class, 3 seeds.

    .venv/bin/python benchmarks/augment.py                      # MNIST, the full protocol (about 1-2 h on 2 cores)
    .venv/bin/python benchmarks/augment.py --minutes 2 --labels-per-class 10,100 --seeds 2
    .venv/bin/python benchmarks/augment.py --smoke              # digits, tiny everything: checks the script only

For each n and seed: a class-balanced seeded subset of n images per class; a conditional generator (--model,
default cdcgan) trained on it alone for --minutes; the fixed classifier (ganvae.apps.classifier, its default
recipe: 600 AdamW steps, batch 64, random shifts, no flips) trained on (a) the real subset, (b) the subset plus
--ratio x as many synthetic images, (c) the synthetic images only; all tested on the 10000 MNIST test images.
The target (issue 16): at 10 labels per class, (b) beats (a) by at least 5 points, mean over 3 seeds.
Finished cells are reused (--runs keeps them), so a stopped benchmark continues where it was.
Writes --results (Markdown), the same name .json and .png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from ganvae import api

TINY = ["model.latent_dim=8", "model.g_width=8", "model.d_width=8", "model.embed_dim=4"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="default: mnist")
    p.add_argument("--model", default="cdcgan")
    p.add_argument("--labels-per-class", help="default: 10,50,100,500")
    p.add_argument("--seeds", type=int, help="default: 3")
    p.add_argument("--minutes", type=float, default=4.0, help="training time of each generator")
    p.add_argument("--steps", type=int, default=10**9, help="step cap of each generator (default: time only)")
    p.add_argument("--ratio", type=float, default=10.0)
    p.add_argument("--set", action="append", default=[], help="--set for the generator runs")
    p.add_argument("--classifier", action="append", default=[], help="FIELD=VALUE for the classifier recipe")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", help="the generator runs and cells (default: benchmarks/runs/augment)")
    p.add_argument("--results", help="default: benchmarks/results/augment.md")
    p.add_argument("--smoke", action="store_true", help="digits, 2,3 per class, 1 seed, tiny nets, 2 steps; "
                                                        "results under /tmp unless --results is given")
    a = p.parse_args(argv)
    defaults = {"data": "mnist", "labels_per_class": "10,50,100,500", "seeds": 3, "runs": "benchmarks/runs/augment",
                "results": "benchmarks/results/augment.md"}
    if a.smoke:  # tiny settings where the command line gives none
        defaults = {"data": "digits", "labels_per_class": "2,3", "seeds": 1, "runs": "/tmp/ganvae-augment-smoke/runs",
                    "results": "/tmp/ganvae-augment-smoke/augment.md"}
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.smoke:
        a.minutes, a.steps = None, 2
        a.set = TINY + a.set
        a.classifier = ["width=4", "steps=3", "batch_size=8"] + a.classifier
    return a


def write_results(res: dict, a, seconds: float, command: str) -> None:
    rows = {r["per_class"]: r for r in res["summary"]}
    lo = min(rows)
    gain = rows[lo]["gain_mixed"]
    verdict = ("reached" if 100 * gain["mean"] >= 5 else "not reached") if lo == 10 else "not measured (no n=10)"
    text = f"""# Augmentation with synthetic data: {res['model']} on `{res['data']}`

Command ({dt.date.today()}, torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads,
device {a.device}; {seconds / 60:.0f} minutes in all):

    {command}

Each generator: trained on its n-shot subset only, {a.minutes if a.minutes is not None else '-'} minutes
(step cap {a.steps}); synthetic images per real image: {res['ratio']:g} (balanced classes). The fixed classifier
in every arm: `{json.dumps(res['classifier'])}`, its seed = the subset's seed.
Test accuracy (%) on the real test split ({res['n_test']} images), mean ± std over {res['seeds']} seed(s);
a gain is the arm minus the real-only arm, per seed, then mean ± std.

{api_table(res)}

Target (issue 16): at 10 labels per class, real + synthetic at least 5 points above real with classic
augmentation: gain {100 * gain['mean']:+.1f} ± {100 * gain['std']:.1f} points at n = {lo}: **{verdict}**.

Plot: `{Path(a.results).with_suffix('.png').name}`; every cell (accuracies, generator steps and seconds):
`{Path(a.results).with_suffix('.json').name}`.
"""
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(text)
    Path(a.results).with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    shutil.copyfile(Path(a.runs) / "augment.png", Path(a.results).with_suffix(".png"))


def api_table(res: dict) -> str:
    from ganvae.apps.augment import table

    return table(res["summary"])


def main(argv=None) -> int:
    a = parse(argv)
    command = "python " + " ".join(shlex.quote(x) for x in (sys.argv if argv is None else ["benchmarks/augment.py",
                                                                                        *argv]))
    t0 = time.perf_counter()
    res = api.augment(a.data, a.labels_per_class, a.model, out=a.runs, seeds=a.seeds, ratio=a.ratio,
                      minutes=a.minutes, steps=a.steps, set=a.set, classifier=a.classifier, device=a.device,
                      log=lambda s: print(s, flush=True))
    write_results(res, a, time.perf_counter() - t0, command)
    print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Image-to-image translation at equal training time: CycleGAN digits -> MNIST, pix2pix outlines -> shapes,
and a DCGAN on MNIST for the target-domain FID comparison. Writes benchmarks/results/translation.md.

    .venv/bin/python benchmarks/translation.py                     # 20 min of training per run (3 runs)
    # smoke test of the script only (numbers meaningless; not for results/translation.md):
    .venv/bin/python benchmarks/translation.py --minutes 0.05 --n 64 --limit 256 --size 16 \\
        --runs /tmp/tr-runs --results /tmp/tr-smoke.md

Runs (each ``--minutes`` of training time, ``--max-minutes``; data loading and scoring not counted):

* ``cyclegan`` on ``digits2mnist`` (unpaired: scikit-learn's 8x8 digits upscaled to 28 px -> MNIST);
* ``pix2pix`` on ``shapes-edges`` (paired: outlines in the shape's colour -> filled shapes, ``--size`` px, default 32);
* ``dcgan`` on ``mnist`` (the reference for the target-domain FID).

Protocol: ``ganvae eval``. Translation runs: the source test images (digits: the 180 held-out of 1797; shapes:
10% of ``data.n``), translated A -> B, against the target's test split; dcgan: as many samples (latent seed 0)
against the MNIST test split, so both FIDs use the same sample count (FID is biased by n). Features: the
shipped MNIST digit net for the digits runs (its classifier gives label preservation: the share of translated
digits it reads as the source digit's label), the shipped shapes net for pix2pix. Paired scores: L1, PSNR,
SSIM (11x11 Gaussian, sigma 1.5) of translations and of the inputs themselves against the ground truth.
Targets (issue 17): label preservation >= 90% with FID <= 2x the dcgan's; pix2pix closer to the ground truth
than its input (L1 and SSIM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import os
import shutil
import sys
from pathlib import Path

import ganvae
from ganvae.api import evaluate
from ganvae.util.cpu import model_name

ROOT = Path(__file__).resolve().parent


def train(name: str, model: str, data: str, a, more: list[str]) -> Path:
    out = Path(a.runs) / name
    if a.score_only:  # score the runs a previous call trained (same options), train nothing
        if not (out / "model").is_dir():
            raise SystemExit(f"--score-only: {out} has no trained model; run without --score-only first")
        return out
    if out.exists():
        shutil.rmtree(out)
    ganvae.train(model, data, out=out, steps=10 ** 9, max_minutes=a.minutes, batch_size=a.batch_size, seed=a.seed,
                 progress=False, log=print, set=more + (["data.limit=" + str(a.limit)] if a.limit else []))
    return out


def scores(run: Path, metrics: str, n: int, net: str) -> dict:
    recs = evaluate(run, metrics=metrics, n=n, feature_net=net, log=print, progress=False)
    return {r["metric"]: r for r in recs}




def fid_like_translation(run: Path, n: int, seeds: int = 10) -> tuple[float, float]:
    """The dcgan's FID scored the way the translation run's is: ``n`` samples (latent seed 0) against the whole
    MNIST test split in the digit net's features (``ganvae eval --n n`` would also cut the reference to ``n``
    images, a different bias). Also the mean over ``seeds`` latent seeds, since n is small."""
    from ganvae.data import DataConfig, load_data
    from ganvae.metrics.features import get_feature_net
    from ganvae.metrics.frechet import fid
    from ganvae.metrics.registry import Side

    net = get_feature_net("mnist")
    ref = Side(load_data(DataConfig(source="mnist"), progress=False).test.images.float() / 255, net).features
    model = ganvae.load(run)
    values = [fid(Side(model.sample(n, seed=s).cpu(), net).features, ref) for s in range(seeds)]
    return values[0], sum(values) / len(values)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="training minutes per run (default 20)")
    p.add_argument("--n", type=int, default=10000, help="evaluation samples at most (default 10000)")
    p.add_argument("--limit", type=int, default=None, help="data.limit for every run (smoke tests)")
    p.add_argument("--size", type=int, default=32, help="pix2pix image size (default 32)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score-only", action="store_true", help="score the runs already in --runs; train nothing")
    p.add_argument("--runs", default=str(ROOT / "runs" / "translation"))
    p.add_argument("--results", default=str(ROOT / "results" / "translation.md"))
    a = p.parse_args(argv)

    cyc = train("cyclegan-digits2mnist", "cyclegan", "digits2mnist", a, [])
    c = scores(cyc, "fid,kid,labels", a.n, "mnist")
    n_cyc = c["fid"]["n_generated"]
    gan = train("dcgan-mnist", "dcgan", "mnist", a, [])
    g = scores(gan, "fid,kid", n_cyc, "mnist")  # as many samples as the translation run has test digits
    g_fid, g_fid_mean = fid_like_translation(gan, n_cyc)  # ... and against the same reference images
    p2p = train("pix2pix-shapes-edges", "pix2pix", "shapes-edges", a, [f"data.image_size={a.size}"])
    q = scores(p2p, "fid,paired", a.n, "shapes")

    v = lambda r, k: r[k]["value"]  # noqa: E731
    ratio = v(c, "fid") / g_fid
    lines = [
        "# Image-to-image translation (issue 17)", "",
        f"Command: `python benchmarks/translation.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()} "
        f"({model_name()}, {os.cpu_count()} cores); torch threads default; "
        f"{a.minutes:g} min of training per run, batch {a.batch_size}, seed {a.seed}"
        + (f"; data.limit {a.limit} (smoke)" if a.limit else ""), "",
        "| run | metric | value | real data | untrained |", "|---|---|---|---|---|",
    ]
    for name, recs in (("cyclegan digits->MNIST", c), ("dcgan MNIST", g), ("pix2pix outlines->shapes", q)):
        for k, r in recs.items():
            fmt = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
            lines.append(f"| {name} | {k} | {fmt(r['value'])} | {fmt(r['real_data'])} | {fmt(r['untrained'])} |")
    lines += ["", f"The cyclegan's FID compares its {n_cyc} translated test digits with all MNIST test images; "
              f"`ganvae eval --n {n_cyc}` on the dcgan (the table's row) also cuts the reference to {n_cyc} images, "
              f"so the target uses the dcgan scored like the cyclegan: {n_cyc} samples (latent seed 0) against all "
              f"MNIST test images, FID {g_fid:.2f} (mean over 10 latent seeds {g_fid_mean:.2f}).",
              "", "## Targets", "",
              f"- digits -> MNIST label preservation {v(c, 'label_preservation'):.1%} (target >= 90%): "
              f"{'met' if v(c, 'label_preservation') >= 0.9 else 'not met'}",
              f"- its target-domain FID {v(c, 'fid'):.2f} vs dcgan {g_fid:.2f}, {n_cyc} samples each against the "
              f"same MNIST test images: "
              f"{ratio:.2f}x (target <= 2x): {'met' if ratio <= 2 else 'not met'}",
              f"- pix2pix L1 {v(q, 'l1'):.4f} vs input {v(q, 'input_l1'):.4f}; SSIM {v(q, 'ssim'):.4f} vs input "
              f"{v(q, 'input_ssim'):.4f}: "
              f"{'met' if v(q, 'l1') < v(q, 'input_l1') and v(q, 'ssim') > v(q, 'input_ssim') else 'not met'}", ""]
    results = Path(a.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    for run, tag in ((p2p, "pix2pix"), (cyc, "cyclegan")):
        grids = sorted((run / "samples").glob("step_*.png"))
        if grids:
            dest = results.with_name(f"{results.stem}-{tag}.png")
            shutil.copyfile(grids[-1], dest)
            lines.append(f"![{tag}: inputs beside outputs]({dest.name})")
    results.write_text("\n".join(lines) + "\n")
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

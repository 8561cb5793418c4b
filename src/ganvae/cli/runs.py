"""Commands on a run folder: sample, info, eval, report, export, audit, traverse, interpolate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import api
from .common import DEVICE_HELP, OLD_NAME


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a trained run",
                       description="Write a grid (.png), one PNG per image (a folder: DIR/), or arrays (.npz). "
                                   "Conditional models (cdcgan, cvae): --class, --class-name or --per-class choose "
                                   "the classes; without them each image's class is drawn uniformly at random "
                                   "from --seed (the same seed gives the same classes).")
    p.add_argument("run", help="run folder (or its model/ folder)")
    p.add_argument("-n", "--n", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed; the classes' too when none is chosen (default: 0)")
    p.add_argument("--out", help="grid.png, DIR/ or x.npz (default: RUN/sample_seed<seed>.png, or "
                   "RUN/sample_seed<seed>_class<K>.png, RUN/sample_seed<seed>_per_class.png)")
    p.add_argument("--nrow", type=int, help="images per grid row (default: about sqrt(n); --per-class: K)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--class", dest="cls", type=int, metavar="K", help="conditional models: every image of class K")
    p.add_argument("--class-name", metavar="NAME", help="conditional models: class by name (where the data has names)")
    p.add_argument("--per-class", type=int, metavar="K",
                   help="conditional models: K images of every class, a labelled grid row each (overrides -n)")
    p.add_argument("--truncation", type=float, metavar="PSI",
                   help="truncation trick: codes pulled toward the mean by PSI in (0, 1], e.g. 0.7 (fewer odd "
                        "samples, less variety; conditional models keep each class) (default: none)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(a) -> int:
    print(api.sample(a.run, a.n, seed=a.seed, out=a.out, nrow=a.nrow, device=a.device, cls=a.cls,
                     class_name=a.class_name, per_class=a.per_class, truncation=a.truncation))
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="what a run folder holds")
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def cmd_info(a) -> int:
    d = api.info(a.run)
    for path, n in (d.get("damaged_lines") or {}).items():
        print(f"ganvae: warning: {path}: skipped {n} damaged line{'s' if n > 1 else ''}", file=sys.stderr)
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"run:     {d['run']}")
    print(f"model:   {d['model']}")
    print(f"data:    {d['data']}" + (f"  {d['data_detail']}" if d.get("data_detail") else ""))
    print(f"steps:   {d.get('step')} of {d['steps_target']}   images seen: {d.get('images_seen')}"
          f"   train time: {d.get('train_time_s')} s")
    print(f"status:  {'training now (' + d['running'] + ')' if d.get('running') else 'not running'}")
    for k, v in (d.get("final") or {}).items():
        print(f"  {k:<16} {v:.4g}")
    for k, r in (d.get("scores") or {}).items():
        value = r["value"] if isinstance(r["value"], (int, float)) else float("nan")
        print(f"score:   {k:<16} {value:.4g}  (step {r['step']}, {r['source']})")
    for r in d.get("alarms") or []:  # health alarms: what began when, found at which step
        print(f"alarm:   {r['message']} (found at step {r['step']})")
    if d.get("privacy"):
        for line in api.privacy_lines(d["privacy"]):
            print(line)
    for k, v in d["paths"].items():
        print(f"{k + ':':<16} {v}")
    return 0


def _add_eval(sub) -> None:
    METRICS = api.METRICS

    p = sub.add_parser(
        "eval", help="score a trained run (FID, KID, precision/recall, ...) beside real data and an untrained model",
        description="Scores the run's exported generator against its data's reference split and appends one JSON "
                    "line per value to RUN/eval.jsonl. Metrics: " +
                    "; ".join(f"{m}: {METRICS.get(m).summary}" for m in METRICS.names()))
    p.add_argument("run", help="run folder")
    p.add_argument("--metrics", default="fid,kid,pr,dc", help="comma-separated (default: fid,kid,pr,dc)")
    p.add_argument("-n", "--n", type=int, default=10000,
                   help="generated images, and at most as many reference images (default: 10000)")
    p.add_argument("--feature-net", default="auto",
                   help="auto (a domain net where it classifies the labelled reference images: mnist for digits, "
                        "shapes for shapes; else effnet; the table says which and why), mnist, shapes, effnet, "
                        "inception, or a .safetensors file from ganvae featnet train (default: auto)")
    p.add_argument("--inception-weights", help="path to the standard pt_inception-2015-12-05 weights (for inception)")
    p.add_argument("--split", default="test", help="reference split: test or train (default: test)")
    p.add_argument("--seed", type=int, default=0, help="latent seed and subset seed (default: 0)")
    p.add_argument("--k", type=int, default=5000, help="nll: importance samples per image (default: 5000)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="images per KID subset (default: 1000)")
    p.add_argument("--no-baselines", action="store_true", help="skip the real-data and untrained references")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_eval)


def cmd_eval(a) -> int:
    api.evaluate(a.run, metrics=a.metrics, n=a.n, feature_net=a.feature_net, split=a.split, seed=a.seed, k=a.k,
                 kid_subset_size=a.kid_subset_size, baselines=not a.no_baselines,
                 inception_weights=a.inception_weights, device=a.device)
    print(f"appended to {Path(a.run) / 'eval.jsonl'}")
    return 0


def _add_traverse(sub) -> None:
    p = sub.add_parser(
        "traverse", help="latent traversal grid: one row per latent dimension",
        description="Write a PNG grid: row r sweeps latent dimension r over -RANGE..+RANGE (prior standard "
                    "deviations) while the other dimensions keep a base code: the posterior mean of --image "
                    "(VAEs) or else a prior sample from --seed.")
    p.add_argument("run", help="run folder (or its model/ folder)")
    p.add_argument("--dims", help="dimensions, e.g. 0-9 or 0,3,5 (default: all)")
    p.add_argument("--range", type=float, default=3.0, help="sweep -RANGE..+RANGE prior standard deviations (default 3)")
    p.add_argument("--columns", type=int, default=9, help="images per row, values across the sweep (default: 9)")
    p.add_argument("--steps", dest="columns", type=int, **OLD_NAME)  # before --columns
    p.add_argument("--seed", type=int, default=0, help="seed of the prior base code (default: 0)")
    p.add_argument("--image", help="VAEs: take the base code from this image (its posterior mean)")
    p.add_argument("--relative", action="store_true", help="add the sweep to the base value instead of replacing it")
    p.add_argument("--out", help="grid .png (default: RUN/traverse_seed<seed>.png or RUN/traverse_<image>.png)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_traverse)


def cmd_traverse(a) -> int:
    print(api.traverse(a.run, a.dims, a.range, a.columns, seed=a.seed, image=a.image, relative=a.relative,
                       out=a.out, device=a.device))
    return 0


def _add_interpolate(sub) -> None:
    p = sub.add_parser(
        "interpolate", help="interpolate between two latent codes: a PNG strip and an animated GIF",
        description="Decode the slerp between two codes: prior samples from --seeds, or (VAEs) the posterior "
                    "means of two --images. Writes OUT (.png strip) and the same frames as OUT with .gif.")
    p.add_argument("run", help="run folder (or its model/ folder)")
    p.add_argument("--seeds", type=int, nargs=2, metavar=("A", "B"), help="seeds of the two prior codes (default: 0 1)")
    p.add_argument("--images", nargs=2, metavar=("A", "B"), help="VAEs: interpolate between these two images' codes")
    p.add_argument("--frames", type=int, default=10, help="images in the strip and GIF, ends included (default: 10)")
    p.add_argument("--steps", dest="frames", type=int, **OLD_NAME)  # before --frames
    p.add_argument("--ms", type=int, default=120, help="GIF milliseconds per frame (default: 120)")
    p.add_argument("--out", help="strip .png; the GIF goes beside it (default: RUN/interp_seed<A>-<B>.png)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_interpolate)


def cmd_interpolate(a) -> int:
    print(api.interpolate(a.run, seeds=a.seeds, images=a.images, frames=a.frames, ms=a.ms, out=a.out,
                          device=a.device))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: curves, sample timeline, scores, config",
                       description="A self-contained HTML page (images embedded, no external assets).")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="where to write it (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="rebuild RUN/model/ (and the report) from the run's latest checkpoint",
                       description="Writes the inference export (model/: weights without D, config.json, README.md "
                                   "card) from checkpoints/latest.pt, e.g. after a crash or to refresh the card.")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", choices=["onnx", "torchscript"], help="also write model/generator.onnx or .pt: codes "
                   "(N, latent_dim [+1 class]) -> images (N, C, H, W) in [0, 1]; onnx: pip install 'ganvae[onnx]'")
    p.set_defaults(func=cmd_export)


def cmd_export(a) -> int:
    api.export(a.run, format=a.format)
    return 0


def cmd_report(a) -> int:
    print(f"wrote {api.report(a.run, a.out)}")
    return 0


def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit", help="leakage audit: memorisation, data copying (Z_U), membership inference",
        description="Checks whether a trained generator leaks its training images: nearest-neighbour "
                    "memorisation and near-copies, the data-copying test Z_U of Meehan et al. 2020, and "
                    "membership inference (white-box: D's logit or the VAE's ELBO; black-box: Hilprecht et al. "
                    "2019) on training members vs held-out images. Writes RUN/audit.json and RUN/audit_pairs.png.")
    p.add_argument("run", help="run folder")
    p.add_argument("-n", "--n", "--n-samples", dest="n", type=int, default=10000, help="generated images (default 10000)")
    p.add_argument("--n-members", type=int,
                   help="training members, and as many held-out images, for membership inference "
                        "(default: 1000 or what the data has)")
    p.add_argument("--seed", type=int, default=0, help="latent seed and subset seed (default: 0)")
    p.add_argument("--feature-net", default="auto",
                   help="feature space: auto (what ganvae eval uses for the data), mnist, shapes, effnet, pixels, "
                        "or a .safetensors file from ganvae featnet train (default: auto)")
    p.add_argument("--features", dest="feature_net", **OLD_NAME)  # before --feature-net
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_audit)


def cmd_audit(a) -> int:
    api.audit(a.run, n_samples=a.n, n_members=a.n_members, seed=a.seed, features=a.feature_net, device=a.device)
    return 0



def add(sub) -> None:
    for add_one in (_add_sample, _add_info, _add_eval, _add_report, _add_export, _add_audit, _add_traverse,
                    _add_interpolate):
        add_one(sub)

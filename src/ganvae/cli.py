"""The command line: argument parsing and clean errors only; the work is in the library.

    ganvae train --model dcgan --data mnist --steps 2000 --out runs/x
    ganvae sample runs/x -n 64 --seed 0 --out grid.png
    ganvae info runs/x
    ganvae traverse runs/x --dims 0-9 --range 3
    ganvae interpolate runs/x --seeds 1 2 --steps 10
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from .errors import GanvaeError


def _train_defaults() -> dict:
    from .training import TrainConfig
    return {f: getattr(TrainConfig(), f) for f in ("steps", "batch_size", "seed", "device")}


def _add_train(sub) -> None:
    from .data import SOURCES
    from .models import MODELS
    from .objectives import GAN_OBJECTIVES

    d = _train_defaults()
    p = sub.add_parser(
        "train", help="train a model on a data source",
        description="Train a GAN or VAE. Precedence: built-in defaults < --config < options < --set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="models: " + "; ".join(f"{n} ({MODELS.get(n).summary})" for n in MODELS.names()) +
               "\ndata sources: " + ", ".join(SOURCES.names()) + ", folder:PATH, idx:PATH, npz:PATH" +
               "\nexamples:\n  ganvae train --model dcgan --data mnist --steps 2000 --out runs/mnist-gan"
               "\n  ganvae train --model vae --data folder:~/photos --image-size 64 --channels 3"
               "\n  ganvae train --resume runs/mnist-gan --steps 4000",
    )
    p.add_argument("--model", help="registered model name (default: dcgan)")
    p.add_argument("--objective", help=f"GAN objective: {', '.join(GAN_OBJECTIVES.names())} (default: nonsaturating)")
    p.add_argument("--data", help="a built-in source (mnist, mnist-5k, digits, faces, shapes), a folder of images, "
                   "an .npz file, or folder:PATH / idx:PATH / npz:PATH (default: mnist)")
    p.add_argument("--image-size", type=int, help="resize images to this square size (default: the source's own)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert images to 1 or 3 channels (default: the source's own)")
    p.add_argument("--steps", type=int, help=f"training steps in total (default: {d['steps']})")
    p.add_argument("--batch-size", type=int, help=f"images per batch (default: {d['batch_size']})")
    p.add_argument("--seed", type=int, help=f"seed for weights, noise and data order (default: {d['seed']})")
    p.add_argument("--device", help=f"auto, cpu, cuda, cuda:N (default: {d['device']})")
    p.add_argument("--max-minutes", type=float, help="stop cleanly (checkpoint and export) after this wall-clock time")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="bf16: autocast matmuls and convolutions to bfloat16 (GPUs, CPUs with AVX512-BF16/AMX) (default: fp32)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the networks (opt-in)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels-last memory format for conv nets and batches (default: on for conv nets on the CPU; off: --set train.channels_last=false)")
    p.add_argument("--eval-every", type=float, metavar="KIMG",
                   help="score the generator every KIMG thousand images (train.eval_metric, default fid, on train.eval_n samples)")
    p.add_argument("--keep-best", metavar="METRIC",
                   help="with --eval-every: evaluate METRIC (e.g. fid) and export the best generator to RUN/best/")
    p.add_argument("--dp-epsilon", type=float, metavar="EPS",
                   help="differentially private training (Opacus DP-SGD) with this target epsilon: the noise "
                        "multiplier is calibrated for --steps; stops before the budget is exceeded")
    p.add_argument("--dp-delta", type=float, metavar="DELTA", help="DP target delta, below 1/N (default: 1e-5)")
    p.add_argument("--dp-max-grad-norm", type=float, metavar="C", help="DP per-sample clipping norm (default: 1.0)")
    p.add_argument("--dp-noise-multiplier", type=float, metavar="SIGMA",
                   help="DP noise multiplier instead of --dp-epsilon; the epsilon spent is reported")
    p.add_argument("--out", help="run folder (default: runs/<model>-<data>[-N])")
    p.add_argument("--config", help="YAML file with model:, data:, train: sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set model.latent_dim=32 --set train.log_every=10")
    p.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="folder data: skip unreadable image files instead of failing")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint up to --steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder given by --out")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and a data summary, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_train)


def cmd_train(a) -> int:
    from .api import train

    if a.resume and a.out and Path(a.out) != Path(a.resume):
        raise GanvaeError("give the run folder once: --resume RUN (without --out)")
    sets = list(a.set)
    if a.eval_every is not None:
        sets.append(f"train.eval_every_kimg={a.eval_every}")
    if a.keep_best:
        sets += ["train.keep_best=true", f"train.eval_metric={a.keep_best}"]
    for key in ("epsilon", "delta", "max_grad_norm", "noise_multiplier"):
        value = getattr(a, f"dp_{key}")
        if value is not None:
            sets.append(f"privacy.{key}={value!r}")
    if a.precision:
        sets.append(f"train.precision={a.precision}")
    if a.compile:
        sets.append("train.compile=true")
    if a.channels_last:
        sets.append("train.channels_last=true")
    result = train(
        a.model, a.data, out=a.resume or a.out, resume=bool(a.resume), overwrite=a.overwrite,
        progress=not a.quiet, dry_run=a.dry_run, objective=a.objective, steps=a.steps,
        batch_size=a.batch_size, seed=a.seed, image_size=a.image_size, channels=a.channels,
        max_minutes=a.max_minutes, skip_bad_images=a.skip_bad_images, device=a.device,
        config=a.config, set=sets,
    )
    return 0 if result is not None else 1


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a trained run",
                       description="Write a grid (.png), one PNG per image (a folder: DIR/), or arrays (.npz).")
    p.add_argument("run", help="run folder (or its model/ folder)")
    p.add_argument("-n", "--n", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default: 0)")
    p.add_argument("--out", help="grid.png, DIR/ or x.npz (default: RUN/sample_seed<seed>.png)")
    p.add_argument("--nrow", type=int, help="images per grid row (default: about sqrt(n))")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--class", dest="cls", type=int, metavar="K", help="conditional models: every image of class K")
    p.add_argument("--class-name", metavar="NAME", help="conditional models: class by name (where the data has names)")
    p.add_argument("--per-class", type=int, metavar="K",
                   help="conditional models: K images of every class, one grid row per class (overrides -n)")
    p.set_defaults(func=cmd_sample)


def sample_labels(model, cls: int | None, class_name: str | None, per_class: int | None, n: int):
    """Resolve --class / --class-name / --per-class into (n, labels or None, nrow or None)."""
    if sum(x is not None for x in (cls, class_name, per_class)) > 1:
        raise GanvaeError("give one of --class, --class-name, --per-class")
    if cls is None and class_name is None and per_class is None:
        return n, None, None
    if not getattr(model, "conditional", False):
        raise GanvaeError(f"--class/--class-name/--per-class need a conditional model (cdcgan, cvae); "
                          f"this run is {model.registered_name}")
    c = model.config.num_classes
    if class_name is not None:
        names = (model.meta.get("data") or {}).get("class_names")
        if not names:
            raise GanvaeError("--class-name: this run's data has no class names; use --class K (0.."
                              f"{c - 1})")
        if class_name not in names:
            raise GanvaeError(f"--class-name {class_name!r}: expected one of {', '.join(map(str, names))}")
        cls = names.index(class_name)
    if cls is not None:
        if not 0 <= cls < c:
            raise GanvaeError(f"--class {cls}: expected 0..{c - 1}")
        return n, cls, None
    if per_class < 1 or per_class * c > 100_000:
        raise GanvaeError(f"--per-class {per_class}: expected 1 to {100_000 // c}")
    import torch
    return per_class * c, torch.arange(c).repeat_interleave(per_class), per_class


def cmd_sample(a) -> int:
    from .api import load
    from .images import save_each, save_grid, save_npz
    from .training.loop import resolve_device

    if a.n < 1 or a.n > 100_000:
        raise GanvaeError(f"-n {a.n}: expected 1 to 100000")
    out = a.out or str(Path(a.run) / f"sample_seed{a.seed}.png")
    is_dir = out.endswith(("/", "\\")) or Path(out).is_dir()
    suffix = Path(out).suffix.lower()
    if not is_dir and suffix not in (".png", ".npz"):
        raise GanvaeError(f"--out {out}: expected a .png grid, a .npz file, or a folder ending in /")
    model = load(a.run, device=resolve_device(a.device))
    n, labels, nrow = sample_labels(model, a.cls, a.class_name, a.per_class, a.n)
    a.n, a.nrow = n, a.nrow or nrow
    imgs = model.sample(n, seed=a.seed, labels=labels)
    if is_dir:
        paths = save_each(imgs, out)
        print(f"wrote {len(paths)} images to {out}")
    elif suffix == ".npz":
        save_npz(imgs, out)
        print(f"wrote {a.n} images to {out} (images: uint8 (N, C, H, W))")
    else:
        save_grid(imgs, out, a.nrow)
        print(f"wrote a grid of {a.n} images to {out}")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="what a run folder holds")
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def cmd_info(a) -> int:
    from .api import info

    d = info(a.run)
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"run:     {d['run']}")
    print(f"model:   {d['model']}")
    print(f"data:    {d['data']}" + (f"  {d['data_detail']}" if d.get("data_detail") else ""))
    print(f"steps:   {d.get('step')} of {d['steps_target']}   images seen: {d.get('images_seen')}"
          f"   train time: {d.get('train_time_s')} s")
    for k, v in (d.get("final") or {}).items():
        print(f"  {k:<16} {v:.4g}")
    if d.get("privacy"):
        from .privacy.dp import summary_text
        for line in summary_text(d["privacy"]):
            print(line)
    for k, v in d["paths"].items():
        print(f"{k + ':':<16} {v}")
    return 0


def _add_eval(sub) -> None:
    from .metrics import METRICS

    p = sub.add_parser(
        "eval", help="score a trained run (FID, KID, precision/recall, ...) beside its floor and ceiling",
        description="Scores the run's exported generator against its data's reference split and appends one JSON "
                    "line per value to RUN/eval.jsonl. Metrics: " +
                    "; ".join(f"{m}: {METRICS.get(m).summary}" for m in METRICS.names()))
    p.add_argument("run", help="run folder")
    p.add_argument("--metrics", default="fid,kid,pr,dc", help="comma-separated (default: fid,kid,pr,dc)")
    p.add_argument("--n", type=int, default=10000, help="generated samples, and at most as many reference images (default: 10000)")
    p.add_argument("--feature-net", default="auto",
                   help="auto (digit classifier for digit-like data, shapes net for shapes, else effnet), "
                        "mnist, shapes, effnet, inception (default: auto)")
    p.add_argument("--inception-weights", help="path to the standard pt_inception-2015-12-05 weights (for inception)")
    p.add_argument("--split", default="test", help="reference split: test or train (default: test)")
    p.add_argument("--seed", type=int, default=0, help="latent seed and subset seed (default: 0)")
    p.add_argument("--k", type=int, default=5000, help="nll: importance samples per image (default: 5000)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default: 1000)")
    p.add_argument("--no-baselines", action="store_true", help="skip the floor (real train) and ceiling (untrained)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a) -> int:
    from .metrics import evaluate
    from .training.loop import resolve_device

    evaluate(a.run, metrics=a.metrics, n=a.n, feature_net=a.feature_net, split=a.split, seed=a.seed, k=a.k,
             kid_subset_size=a.kid_subset_size, baselines=not a.no_baselines,
             inception_weights=a.inception_weights, device=str(resolve_device(a.device)))
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
    p.add_argument("--range", type=float, default=3.0, help="sweep -RANGE..+RANGE (default: 3)")
    p.add_argument("--steps", type=int, default=9, help="columns per row (default: 9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior base code (default: 0)")
    p.add_argument("--image", help="VAEs: take the base code from this image (its posterior mean)")
    p.add_argument("--relative", action="store_true", help="add the sweep to the base value instead of replacing it")
    p.add_argument("--out", help="grid .png (default: RUN/traverse_seed<seed>.png or RUN/traverse_<image>.png)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.set_defaults(func=cmd_traverse)


def _png_out(out: str) -> Path:
    if Path(out).suffix.lower() != ".png":
        raise GanvaeError(f"--out {out}: expected a .png file")
    return Path(out)


def cmd_traverse(a) -> int:
    from .api import load
    from .images import save_grid
    from .latent import traverse
    from .training.loop import resolve_device

    default = f"traverse_{Path(a.image).stem}.png" if a.image else f"traverse_seed{a.seed}.png"
    out = _png_out(a.out or str(Path(a.run) / default))
    if a.image and not Path(a.image).is_file():
        raise GanvaeError(f"--image {a.image}: no such file")
    model = load(a.run, device=resolve_device(a.device))
    imgs = traverse(model, a.dims, a.range, a.steps, seed=a.seed, image=a.image, relative=a.relative)
    save_grid(imgs, out, nrow=a.steps)
    print(f"wrote a traversal of {imgs.shape[0] // a.steps} dimensions x {a.steps} steps to {out}")
    return 0


def _add_interpolate(sub) -> None:
    p = sub.add_parser(
        "interpolate", help="interpolate between two latent codes: a PNG strip and an animated GIF",
        description="Decode the slerp between two codes: prior samples from --seeds, or (VAEs) the posterior "
                    "means of two --images. Writes OUT (.png strip) and the same frames as OUT with .gif.")
    p.add_argument("run", help="run folder (or its model/ folder)")
    p.add_argument("--seeds", type=int, nargs=2, metavar=("A", "B"), help="seeds of the two prior codes (default: 0 1)")
    p.add_argument("--images", nargs=2, metavar=("A", "B"), help="VAEs: interpolate between these two images' codes")
    p.add_argument("--steps", type=int, default=10, help="frames, endpoints included (default: 10)")
    p.add_argument("--ms", type=int, default=120, help="GIF milliseconds per frame (default: 120)")
    p.add_argument("--out", help="strip .png; the GIF goes beside it (default: RUN/interp_seed<A>-<B>.png)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.set_defaults(func=cmd_interpolate)


def cmd_interpolate(a) -> int:
    from .api import load
    from .images import save_grid
    from .latent import interpolate, save_gif
    from .training.loop import resolve_device

    if a.seeds and a.images:
        raise GanvaeError("give --seeds or --images, not both")
    if a.ms < 1:
        raise GanvaeError(f"--ms {a.ms}: expected a positive number of milliseconds")
    seeds = tuple(a.seeds) if a.seeds else (0, 1)
    if a.images:
        default = f"interp_{Path(a.images[0]).stem}-{Path(a.images[1]).stem}.png"
    else:
        default = f"interp_seed{seeds[0]}-{seeds[1]}.png"
    out = _png_out(a.out or str(Path(a.run) / default))
    for im in a.images or []:
        if not Path(im).is_file():
            raise GanvaeError(f"--images {im}: no such file")
    model = load(a.run, device=resolve_device(a.device))
    frames = interpolate(model, seeds, a.steps, images=a.images)
    save_grid(frames, out, nrow=a.steps)
    gif = save_gif(frames, out.with_suffix(".gif"), ms=a.ms)
    print(f"wrote {a.steps} frames to {out} and {gif}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: curves, sample timeline, scores, config",
                       description="A self-contained HTML page (images embedded, no external assets).")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="where to write it (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(a) -> int:
    from .report import write_report

    print(f"wrote {write_report(a.run, a.out)}")
    return 0


def _add_audit(sub) -> None:
    p = sub.add_parser(
        "audit", help="leakage audit: memorisation, data copying (Z_U), membership inference",
        description="Checks whether a trained generator leaks its training images: nearest-neighbour "
                    "memorisation and near-copies, the data-copying test Z_U of Meehan et al. 2020, and "
                    "membership inference (white-box: D's logit or the VAE's ELBO; black-box: Hilprecht et al. "
                    "2019) on training members vs held-out images. Writes RUN/audit.json and RUN/audit_pairs.png.")
    p.add_argument("run", help="run folder")
    p.add_argument("--n-samples", type=int, default=10000, help="generated samples (default: 10000)")
    p.add_argument("--n-members", type=int,
                   help="training members, and as many held-out images, for membership inference "
                        "(default: 1000 or what the data has)")
    p.add_argument("--seed", type=int, default=0, help="latent seed and subset seed (default: 0)")
    p.add_argument("--features", default="auto",
                   help="feature space: auto (what ganvae eval uses for the data), mnist, shapes, effnet, pixels "
                        "(default: auto)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    p.set_defaults(func=cmd_audit)


def cmd_audit(a) -> int:
    from .privacy.audit import audit
    from .training.loop import resolve_device

    audit(a.run, n_samples=a.n_samples, n_members=a.n_members, seed=a.seed, features=a.features,
          device=str(resolve_device(a.device)))
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="explore trained runs in the browser: samples, classes, latent sliders, interpolation",
        description="A local web page (no external assets, works offline): a sample grid per run from a seed, "
                    "a class picker for conditional models, latent sliders, interpolation between two seeds, and "
                    "image reconstruction for VAEs. Several runs are shown side by side.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their model/ folders)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    from .serve import serve

    serve(a.runs, host=a.host, port=a.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ganvae", description="Train, sample and inspect GANs and VAEs.")
    parser.add_argument("--version", action="version", version=f"ganvae {__version__}")
    # no option abbreviations: `sample --n 4` must not quietly mean --nrow 4
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    sub.required = True
    _add_train(sub)
    _add_sample(sub)
    _add_info(sub)
    _add_eval(sub)
    _add_report(sub)
    _add_audit(sub)
    _add_traverse(sub)
    _add_interpolate(sub)
    _add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GanvaeError as e:
        print(f"ganvae: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ganvae: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ganvae info RUN | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())

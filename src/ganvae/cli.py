"""The command line: argument parsing and clean errors only; the work is in the library.

    ganvae train --model dcgan --data mnist --steps 2000 --out runs/x
    ganvae sample runs/x -n 64 --seed 0 --out grid.png
    ganvae info runs/x
    ganvae traverse runs/x --dims 0-9 --range 3 --columns 9
    ganvae interpolate runs/x --seeds 1 2 --frames 10
    ganvae models
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from .errors import GanvaeError

api = None  # ganvae.api, imported inside main() (after the Ctrl-C and error handling is in place)

DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda, cuda:N (default: auto)"


OLD_NAME = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}  # a hidden old spelling that still works


def _train_defaults() -> dict:
    return {f: getattr(api.TrainConfig(), f) for f in ("steps", "batch_size", "seed", "device")}


def _add_train(sub) -> None:
    MODELS, SOURCES, GAN_OBJECTIVES = api.MODELS, api.SOURCES, api.GAN_OBJECTIVES
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
    p.add_argument("--image-size", type=int, help="resize images to this square size (default: the source's own; "
                   "a folder of images: 64)")
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
    if a.resume and a.out and Path(a.out) != Path(a.resume):
        raise GanvaeError("give the run folder once: --resume RUN (without --out)")
    # every flag that names a config field is an option of the same name (ganvae.runfolder.OPTIONS), typed
    options = {k: getattr(a, k) for k in api.OPTIONS if k not in ("model", "data") and hasattr(a, k)}
    if a.keep_best:
        options.update(keep_best=True, eval_metric=a.keep_best)
    result = api.train(a.model, a.data, out=a.resume or a.out, resume=bool(a.resume), overwrite=a.overwrite,
                       progress=not a.quiet, dry_run=a.dry_run, config=a.config, set=a.set, **options)
    if isinstance(result, api.Run) and result.signal:
        print(f"ganvae: {result.stopped}: state saved at step {result.step}; continue with "
              f"`ganvae train --resume {result.path}`", file=sys.stderr)
    return result.exit_code if isinstance(result, api.Run) else 0


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
                   help="auto (digit classifier for digit-like data, shapes net for shapes, else effnet), "
                        "mnist, shapes, effnet, inception (default: auto)")
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
                   help="feature space: auto (what ganvae eval uses for the data), mnist, shapes, effnet, pixels "
                        "(default: auto)")
    p.add_argument("--features", dest="feature_net", **OLD_NAME)  # before --feature-net
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_audit)


def cmd_audit(a) -> int:
    api.audit(a.run, n_samples=a.n, n_members=a.n_members, seed=a.seed, features=a.feature_net, device=a.device)
    return 0


def _add_models(sub) -> None:
    sub.add_parser("models", aliases=["list"], help="list the models, GAN objectives, data sources and metrics",
                   description="One line each: models (--model), GAN objectives (--objective), data sources "
                               "(--data), metrics (ganvae eval --metrics).").set_defaults(func=cmd_models)


def _summary(entry) -> str:
    """An entry's ``summary``, else the first line of its docstring (or of its module's), as plain text."""
    doc = (getattr(entry, "summary", None) or (callable(entry) and entry.__doc__)
           or getattr(sys.modules.get(entry.__module__), "__doc__", None) or "")
    return next((ln.strip() for ln in doc.splitlines() if ln.strip()), "").replace("``", "").rstrip(".")


def cmd_models(a) -> int:
    for i, (title, reg) in enumerate([("models (ganvae train --model NAME)", api.MODELS),
                                      ("GAN objectives (ganvae train --objective NAME)", api.GAN_OBJECTIVES),
                                      ("data sources (ganvae train --data NAME; also folder:PATH, idx:PATH, npz:PATH, "
                                       "a folder of images, an .npz file)", api.SOURCES),
                                      ("metrics (ganvae eval --metrics NAME,NAME)", api.METRICS)]):
        print(("\n" if i else "") + title + ":")
        for name in reg.names():
            print(f"  {name:<{max(map(len, reg.names()))}}  {_summary(reg.get(name))}")
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    from .serve import serve

    serve(a.runs, host=a.host, port=a.port, device=a.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(prog="ganvae", description="Train, sample and inspect GANs and VAEs.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    _add_export(sub)
    _add_audit(sub)
    _add_traverse(sub)
    _add_interpolate(sub)
    _add_serve(sub)
    _add_models(sub)
    return parser


EXIT_CODES = """exit codes:
  0    done, or stopped by plan (--max-minutes, a privacy budget); the run is saved
  1    an unexpected error (a bug: please report it with the traceback)
  2    bad input or an unusable file, disk or folder: one line says which and why; nothing good was lost
  3    training diverged (a loss or a weight became NaN/inf); the last good checkpoint is kept
  128+N  stopped by signal N after saving: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP;
       `ganvae train --resume RUN` continues it exactly"""


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ganvae: warning: {message}", file=sys.stderr)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP before training has its own handlers (start-up): unwind like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum, frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    global api
    warnings.showwarning = _warn  # library warnings (damaged log lines, ...) as one line each
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):  # the training loop installs its graceful handlers itself
            if signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _interrupt)
    try:
        return _main(argv)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    global api
    try:
        from . import api as _api
        api = _api
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except GanvaeError as e:
        print(f"ganvae: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print("ganvae: interrupted" + ("" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"),
              file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # `ganvae info RUN | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a full or read-only disk, a missing folder: the file and the cause, one line
        if e.filename is None and e.errno is None:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"ganvae: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

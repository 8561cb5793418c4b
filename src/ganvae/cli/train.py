"""`ganvae train`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import api
from ..errors import GanvaeError


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
    p.add_argument("--data-b", help="translation models (cyclegan): the second, unpaired domain B, any source "
                   "--data takes (paired data: --data pairs:A_DIR,B_DIR, an .npz with arrays a and b, shapes-edges)")
    p.add_argument("--image-size", type=int, help="resize images to this square size (default: the source's own; "
                   "a folder of images: 64)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert images to 1 or 3 channels (default: the source's own)")
    p.add_argument("--steps", type=int, help=f"training steps in total (default: {d['steps']})")
    p.add_argument("--batch-size", type=int, help=f"images per batch (default: {d['batch_size']})")
    p.add_argument("--seed", type=int, help=f"seed for weights, noise and data order (default: {d['seed']})")
    p.add_argument("--device", help=f"auto, cpu, cuda, cuda:N (default: {d['device']})")
    p.add_argument("--max-minutes", type=float, help="stop cleanly (checkpoint and export) after this wall-clock time")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                   help="bf16: autocast matmuls and convolutions to bfloat16 (GPUs, CPUs with AVX512-BF16/AMX); auto: "
                        "bf16 where it pays (GPUs with native bf16, CPUs with AVX512-BF16 or AMX), else fp32; run.json records "
                        "the choice (default: fp32)")
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
    p.add_argument("--init", metavar="RUN", help="start from the networks of RUN (same model and image shape), "
                                                 "e.g. public pretraining before a --dp-epsilon run on private data")
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



def add(sub) -> None:
    _add_train(sub)

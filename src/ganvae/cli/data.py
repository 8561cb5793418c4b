"""`ganvae data prepare` and `ganvae data info`."""

from __future__ import annotations

import argparse

from .. import api

EPILOG = """examples:
  ganvae data info ~/photos
  ganvae data prepare ~/photos --image-size 128 --channels 3
  ganvae data prepare ~/photos --image-size 128 --out /fast/photos-128   # then: --set data.cache=/fast/photos-128"""


def _source_options(p) -> None:
    p.add_argument("source", metavar="SOURCE", help="a folder of images, an .npz file, folder:PATH, idx:PATH, npz:PATH "
                   "(data info: also a built-in source such as mnist)")
    p.add_argument("--image-size", type=int, help="the square size training will use (default: the source's own; "
                   "a folder of images: 64)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 or 3 channels (default: the source's own)")
    p.add_argument("--workers", type=int, help="processes decoding a folder (default: min(CPUs, 8))")


def add(sub) -> None:
    p = sub.add_parser("data", help="prepare a data source's on-disk cache; say what a source holds",
                       description="A folder of images (and an idx/npz source over 1 GiB) is decoded once into an "
                                   "on-disk cache that training reads a batch at a time, so the data set need not fit "
                                   "in memory. It is built on first use, or ahead of time by `data prepare`.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="data_command", metavar="COMMAND")
    cmds.required = True
    prep = cmds.add_parser("prepare", help="decode SOURCE into its cache now; print its size, count and classes",
                           description="Decode SOURCE into its on-disk cache in worker processes, with a progress bar. "
                                       "Without --out the cache goes where training with the same --data, "
                                       "--image-size and --channels finds it ($GANVAE_CACHE, default "
                                       "~/.cache/ganvae, under data/); with --out DIR train with "
                                       "--set data.cache=DIR.", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_options(prep)
    prep.add_argument("--out", metavar="DIR", help="the cache folder (default: under the cache root)")
    prep.add_argument("--skip-bad-images", action="store_true", help="skip unreadable files instead of failing")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=cmd_prepare)
    info = cmds.add_parser("info", help="what SOURCE holds: count, size, channels, classes, its cache",
                           description="Count, image size, channels, classes (names and counts) and whether a cache "
                                       "exists, read from the files' names and headers (or the cache): nothing is "
                                       "decoded or trained.", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_options(info)
    info.add_argument("--holdout", type=float, default=0.1, help="test share for the split sizes shown (default: 0.1)")
    info.set_defaults(func=cmd_info)


def cmd_prepare(a) -> int:
    api.prepare_data(a.source, image_size=a.image_size, channels=a.channels, out=a.out, workers=a.workers,
                     skip_bad_images=a.skip_bad_images, progress=not a.quiet)
    return 0


def cmd_info(a) -> int:
    api.data_info(a.source, image_size=a.image_size, channels=a.channels, holdout=a.holdout, workers=a.workers)
    return 0

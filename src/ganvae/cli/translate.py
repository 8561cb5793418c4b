"""`ganvae translate`: a translation run (pix2pix, cyclegan) applied to image files."""

from __future__ import annotations

from .. import api
from .common import DEVICE_HELP


def add(sub) -> None:
    p = sub.add_parser(
        "translate", help="translate images with a pix2pix or cyclegan run (A -> B, or B -> A for cyclegan)",
        description="Each image (a file, or every image file of a folder, recursively) is resized and centre-"
                    "cropped to the run's size and translated; OUT/<name>.png holds each result and OUT/grid.png "
                    "the inputs above their translations. Images must have the source domain's channel count "
                    "(grey 1, colour 3).")
    p.add_argument("run", help="run folder of a translation model")
    p.add_argument("--images", required=True, metavar="DIR|FILE", help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--direction", default="a2b", choices=["a2b", "b2a"],
                   help="a2b (default), or b2a for models that translate both ways (cyclegan)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_translate)


def cmd_translate(a) -> int:
    api.translate(a.run, a.images, out=a.out, direction=a.direction, device=a.device, log=print)
    return 0

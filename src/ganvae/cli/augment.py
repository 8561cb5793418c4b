"""`ganvae augment` (synthetic data for n-shot classification) and `ganvae cas` (classification accuracy score)."""

from __future__ import annotations

import json

from .. import api
from .common import DEVICE_HELP

CLASSIFIER_HELP = ("change the fixed classifier's recipe, FIELD=VALUE (repeatable): width, steps, batch_size, lr, "
                   "schedule (cosine|constant), optimizer (adam|sgd), weight_decay, augment (classic augmentation, "
                   "default true), max_shift (pixels, default image_size//8), flip (horizontal flips, default false: "
                   "wrong for digits/text)")


def _add_cas(sub) -> None:
    p = sub.add_parser("cas", help="classification accuracy score of a conditional run (Ravuri & Vinyals 2019)",
                       description="Train the fixed classifier on N generated images with balanced labels and "
                                   "test it on the run's real test split; beside it, the same classifier trained "
                                   "on the real training split. Writes RUN/cas.json.")
    p.add_argument("run", help="run folder of a conditional model (cdcgan, cvae, ...)")
    p.add_argument("-n", "--n", type=int, help="generated training images (default: as many as the real split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and of the classifier (default: 0)")
    p.add_argument("--classifier", action="append", default=[], metavar="FIELD=VALUE", help=CLASSIFIER_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_cas)


def cmd_cas(a) -> int:
    out = api.cas(a.run, n=a.n, seed=a.seed, classifier=a.classifier, device=a.device,
                  log=None if a.json else print)
    if a.json:
        print(json.dumps(out, indent=2))
    return 0


def _add_augment(sub) -> None:
    p = sub.add_parser(
        "augment", help="does synthetic data help a classifier with few labels? (n-shot augmentation)",
        description="For each number of labels per class and each seed: draw a class-balanced n-shot subset, train "
                    "a conditional generator on it only, then train one fixed classifier on (a) the real subset "
                    "with classic augmentation, (b) the subset plus synthetic images, (c) synthetic images only; "
                    "test each on the real test split. Writes OUT/augment.json, augment.md (table) and "
                    "augment.png (plot); finished cells are reused when the command is run again.")
    p.add_argument("--data", required=True, help="a labelled source: mnist, digits, idx:PATH, npz:PATH, a folder "
                                                 "with one subfolder per class")
    p.add_argument("--labels-per-class", default="10,50,100,500", metavar="N,N,...",
                   help="labelled images per class in each subset (default: 10,50,100,500)")
    p.add_argument("--model", default="cdcgan", help="a conditional model (default: cdcgan; see `ganvae models`)")
    p.add_argument("--seeds", type=int, default=3, help="subsets, generators and classifiers per n (default: 3)")
    p.add_argument("--ratio", type=float, default=10.0,
                   help="synthetic images per real image; the synthetic-only arm uses the same images (default: 10)")
    p.add_argument("--minutes", "--max-minutes", dest="minutes", type=float, metavar="M",
                   help="time budget of each generator in minutes (train.max_minutes; default: steps only)")
    p.add_argument("--steps", type=int, help="training steps of each generator (default: the train default)")
    p.add_argument("--batch-size", type=int, default=64, help="generator batch size, at most the subset (default: 64)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more config for the generator runs, as in `ganvae train --set` (repeatable)")
    p.add_argument("--classifier", action="append", default=[], metavar="FIELD=VALUE", help=CLASSIFIER_HELP)
    p.add_argument("--image-size", type=int, help="resize the data (default: native)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert the data (default: native)")
    p.add_argument("--out", help="output folder (default: runs/augment-MODEL-DATA)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_augment)


def cmd_augment(a) -> int:
    api.augment(a.data, a.labels_per_class, a.model, out=a.out, seeds=a.seeds, ratio=a.ratio, minutes=a.minutes,
                steps=a.steps, batch_size=a.batch_size, set=a.set, classifier=a.classifier,
                image_size=a.image_size, channels=a.channels, device=a.device)
    return 0


def add(sub) -> None:
    _add_augment(sub)
    _add_cas(sub)

"""`ganvae featnet train` and `ganvae featnet info`: domain feature nets for the metrics."""

from __future__ import annotations

import argparse
import functools
import json

from .. import api
from .common import DEVICE_HELP


def _add_train(fsub) -> None:
    p = fsub.add_parser(
        "train", help="train a domain feature net on labelled data (for --feature-net PATH)",
        description="Trains the recipe of ganvae's shipped MNIST net (a small conv classifier; its 128-d "
                    "penultimate layer gives the features) on any labelled source, measures its accuracy on the "
                    "held-out split, and writes one .safetensors file with its provenance (data, size, classes, "
                    "recipe, epochs, seed, date, version) and accuracy. Use it with ganvae eval/audit "
                    "--feature-net PATH: FIDs in the data's own domain, where ImageNet features see little.")
    p.add_argument("--data", required=True, help="a labelled source: a folder with one subfolder per class, an .npz "
                   "with 'labels', idx files with labels, or a labelled built-in source")
    p.add_argument("--image-size", type=int, help="resize images to this square size, as for training a model on "
                   "this data (default: the source's own; a folder of images: 64)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert images to 1 or 3 channels (default: the "
                   "source's own)")
    p.add_argument("--limit", type=int, help="train on at most this many images (a seeded subset)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the train split (default: 10)")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule "
                   "(default: 0.003)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, order, shifts, dropout (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", help="the .safetensors file to write (default: featnet-<data name>.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_train)


def cmd_train(a) -> int:
    api.train_feature_net(a.data, image_size=a.image_size, channels=a.channels, limit=a.limit, epochs=a.epochs,
                          batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device, out=a.out,
                          overwrite=a.overwrite)
    return 0


def _add_info(fsub) -> None:
    p = fsub.add_parser("info", help="show a feature net file's provenance and accuracy",
                        description="Prints the metadata of a file written by ganvae featnet train.")
    p.add_argument("path", help="a .safetensors file from ganvae featnet train")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=cmd_info)


def cmd_info(a) -> int:
    info = api.feature_net_info(a.path)
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    c, p = info["config"], info["provenance"]
    print(f"feature net: {info['path']}")
    print(f"  input:     {c['channels']}x{c['image_size']}x{c['image_size']}; features {c['feature_dim']}-d; "
          f"{c['num_classes']} classes: {', '.join(map(str, p.get('class_names') or []))}")
    print(f"  accuracy:  {info['heldout_accuracy']:.2%} on {p.get('n_heldout')} held-out images")
    print(f"  data:      {p.get('source')} (train {p.get('n_train')}, split {p.get('split')})")
    print(f"  training:  {p.get('epochs')} epochs, batch {p.get('batch_size')}, lr {p.get('lr')}, "
          f"seed {p.get('seed')}, {p.get('seconds')} s on {p.get('device')}")
    print(f"  made:      {p.get('date')} by ganvae {p.get('ganvae_version')} (torch {p.get('torch_version')})")
    print(f"  recipe:    {p.get('recipe')}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("featnet", help="domain feature nets for the metrics: train one on labelled data, inspect one",
                       description="Feature nets trained on your own labelled data, for ganvae eval/audit "
                                   "--feature-net PATH.")
    fsub = p.add_subparsers(dest="featnet_command", metavar="COMMAND",
                            parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    fsub.required = True
    _add_train(fsub)
    _add_info(fsub)

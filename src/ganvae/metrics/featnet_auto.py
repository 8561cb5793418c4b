"""Which feature net scores the data: ``--feature-net auto``, a registered name, or a featnet file; and why.

``auto`` picks a domain net (the shipped ``mnist`` digit net, the ``shapes`` net) only where the data is
in its domain, and EfficientNet-Lite0 (``effnet``, generic ImageNet features) everywhere else:

1. a built-in source whose domain the project knows (``mnist``, ``mnist-5k``, ``digits``: digits;
   ``shapes``) gets its domain net without a check. Only registered built-in sources carry a domain
   note; user data (folders, npz, idx) never takes this short cut.
2. labelled data with as many classes as a domain net has (10 for ``mnist``, 3 for ``shapes``): the net
   classifies up to :data:`CHECK_N` labelled reference images (the test split, topped up from the train
   split when smaller; a seeded subset when larger). The data's class k must be the net's class k: digits
   0-9 in order; square, ellipse, triangle. At :data:`MIN_ACCURACY` or more the net is chosen; below
   it, ``effnet``. So clothes, letters or
   medical patches that merely have MNIST's shape are scored in ImageNet space, not in digit space.
3. unlabelled data gets ``effnet``: a classifier's confidence on images outside its domain is no
   evidence (ReLU nets are confidently wrong away from their training data), so there is nothing to check.

The decision comes with a one-line reason (``FeatureChoice.line()``: "features: effnet (the mnist digit
net classifies 31% of 1000 labelled reference images; needs 90%)"), which ``evaluate`` prints and records.
Accuracies are cached per (net, reference images), so periodic evaluation checks once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..data import SOURCES
from ..errors import GanvaeError
from .featnet_file import load_featnet, looks_like_path
from .features import FEATURE_NETS, FeatureNet, get_feature_net

DOMAIN_NETS = {"digits": "mnist", "shapes": "shapes"}  # a built-in source's "domain" note -> its feature net
NET_WORDS = {"mnist": "the mnist digit net", "shapes": "the shapes net"}  # the domain nets auto may check
MIN_ACCURACY = 0.9   # a domain net must classify at least this share of the labelled reference images
CHECK_N = 1000       # reference images it classifies (a seeded subset of the split)
CHECK_SEED = 0       # fixed, so the choice does not depend on the evaluation's seed

__all__ = ["FeatureChoice", "choose", "resolve", "labelled_reference", "domain_accuracy", "MIN_ACCURACY"]


@dataclass(frozen=True)
class FeatureChoice:
    """The net that scores the data (a registered name or a featnet file's path) and why, in a few words."""

    name: str
    reason: str

    def line(self) -> str:
        return f"features: {self.name} ({self.reason})"


def labelled_reference(splits) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The labelled images ``auto`` checks a domain net on: the test split's, topped up from the train split's
    up to :data:`CHECK_N` when the test split is smaller (or unlabelled); (None, None) for unlabelled data."""
    parts = [p for p in (splits.test, splits.train)
             if p is not None and p.labels is not None and p.labels.dim() == 1 and len(p.labels)]
    if not parts:
        return None, None
    images, labels = _subset(parts[0].images, parts[0].labels)
    if len(parts) == 2 and len(labels) < CHECK_N:
        more = min(CHECK_N - len(labels), len(parts[1].labels))
        top = torch.as_tensor(parts[1].images[torch.arange(more)])  # reads only these rows from a cache
        images, labels = torch.cat([images, top]), torch.cat([labels, parts[1].labels[:more]])
    return images, labels


_ACCURACY: dict[tuple, float] = {}


def _subset(images, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """At most CHECK_N rows (seeded), read into a tensor (``images`` may be an on-disk cache's view)."""
    n = images.shape[0]
    idx = (torch.arange(n) if n <= CHECK_N else
           torch.randperm(n, generator=torch.Generator().manual_seed(CHECK_SEED))[:CHECK_N].sort().values)
    return torch.as_tensor(images[idx]), labels[idx]


def domain_accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """(share of ``images`` that ``net`` puts in their labelled class, images checked); cached by content."""
    images, labels = _subset(images, labels)
    digest = hashlib.sha1(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    key = (net.name, digest.hexdigest())
    if key not in _ACCURACY:
        pred = net.logits(images).argmax(1)
        _ACCURACY[key] = int((pred == labels.to(pred.device)).sum()) / len(labels)  # exact: 9 of 10 is 0.9
    return _ACCURACY[key], int(images.shape[0])


def choose(meta: dict, images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
           device="cpu") -> FeatureChoice:
    """``auto``'s choice for data described by ``meta`` with labelled reference ``images``/``labels``
    (uint8 or float in [0, 1], (N, C, H, W); None: unlabelled). See the module docstring for the rule."""
    source, domain = meta.get("source"), meta.get("domain")
    if domain in DOMAIN_NETS and source in SOURCES:
        net = DOMAIN_NETS[domain]
        return FeatureChoice(net, f"built-in source {source} holds {domain}, the domain the {net} net was trained on")
    if images is None or labels is None:
        return FeatureChoice("effnet", "the data has no labels, so no domain net can be checked on it")
    k = meta.get("num_classes") or int(labels.max()) + 1
    candidates = [n for n in NET_WORDS if FEATURE_NETS.get(n).num_classes == k]
    if not candidates:
        return FeatureChoice("effnet", f"no domain net classifies {k} classes "
                             f"({', '.join(f'{n}: {FEATURE_NETS.get(n).num_classes}' for n in NET_WORDS)})")
    notes = []
    for name in candidates:
        try:
            net = get_feature_net(name, device=device)
        except GanvaeError as e:
            notes.append(f"{name} unavailable: {e}")
            continue
        acc, n = domain_accuracy(net, images, labels)
        said = f"{NET_WORDS[name]} classifies {acc:.0%} of {n} labelled reference images"
        if acc >= MIN_ACCURACY:
            return FeatureChoice(name, f"{said}; needs {MIN_ACCURACY:.0%}")
        notes.append(said)
    return FeatureChoice("effnet", "; ".join(notes) + f"; needs {MIN_ACCURACY:.0%}")


def resolve(spec: str, meta: dict, images: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
            device="cpu", **kw) -> tuple[FeatureNet, FeatureChoice]:
    """``--feature-net`` (auto, a registered name, or a featnet file) -> (the loaded net, the choice).

    ``kw`` go to :func:`~ganvae.metrics.features.get_feature_net` (``weights_path`` for inception). A featnet
    file must match the data's image size and channels (``meta``); anything else wrong is one GanvaeError line.
    """
    if spec == "auto":
        choice = choose(meta, images, labels, device)
        return get_feature_net(choice.name, device=device), choice
    if spec in FEATURE_NETS:
        return get_feature_net(spec, device=device, **kw), FeatureChoice(spec, "asked for")
    if not looks_like_path(spec):
        raise GanvaeError(f"unknown feature net {spec!r}; valid names: auto, {', '.join(FEATURE_NETS.names())}, "
                          "or a .safetensors file from `ganvae featnet train`")
    net = load_featnet(spec, device=device)
    net.check_data(meta)
    prov = net.info["provenance"]
    return net, FeatureChoice(net.name, f"asked for; trained by `ganvae featnet train` on {prov.get('source')}, "
                                        f"held-out accuracy {net.info['heldout_accuracy']:.1%}")

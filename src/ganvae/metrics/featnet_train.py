"""The recipe that made the shipped MNIST net, for any labelled data: ``ganvae featnet train``.

A :class:`~ganvae.metrics.feature_nets.ConvClassifier` for the data's size, channels and classes, trained on
the train split and scored on the held-out (test) split:

* inputs standardised with the train split's per-channel mean and standard deviation (stored in the net);
* augmentation: random integer shifts of up to ``round(2 * size / 28)`` pixels (2 at 28x28), zero fill;
* cross-entropy with label smoothing 0.05; Adam, OneCycleLR to ``lr``, batches of ``batch_size``
  (at most the train split), ``epochs`` passes; seeded (init, order, shifts, dropout) by ``seed``.

Its 128-d penultimate layer gives the features (``--feature-net PATH``), its logits the classes (``is``,
``modes``, ``cacc``). :func:`train_classifier` returns the net and its provenance; the api writes the file.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time

import torch
import torch.nn.functional as F

from ..errors import GanvaeError
from ..version import __version__
from .feature_nets import ConvClassifier
from .train_feature_net import _predict, _train_loop, random_shift

LABEL_SMOOTHING = 0.05
RECIPE = ("ConvClassifier (conv-conv-maxpool stages down to at most 7x7, 128-d fc features, dropout 0.3); "
          "inputs standardised with the train split's per-channel mean/std; random integer shifts of +-{shift} px "
          "(zero fill); cross-entropy, label smoothing 0.05; Adam, OneCycleLR max_lr={lr}")

__all__ = ["train_classifier", "check_labelled", "RECIPE"]


def check_labelled(splits, source: str) -> int:
    """The data's class count; one-line GanvaeError when it cannot train a classifier."""
    tr, te = splits.train, splits.test
    if tr.labels is None or tr.labels.dim() != 1:
        raise GanvaeError(f"--data {source}: the data has no labels; featnet train needs labelled data "
                          "(a folder with one subfolder per class, an npz with 'labels', a labelled built-in source)")
    k = int(splits.meta.get("num_classes") or int(tr.labels.max()) + 1)
    if k < 2:
        raise GanvaeError(f"--data {source}: {k} class; featnet train needs at least 2 classes")
    if te is None or te.labels is None or len(te.labels) == 0:
        raise GanvaeError(f"--data {source}: no labelled held-out images to measure accuracy on; "
                          "use a source with a test split or a holdout above 0")
    if len(tr.labels) < 2:
        raise GanvaeError(f"--data {source}: {len(tr.labels)} training image; featnet train needs at least 2")
    return k


STATS_N = 10000  # images (a seeded subset) the input mean/std are measured on


def _standardise(model: ConvClassifier, images, seed: int) -> None:
    """Set the net's input ``mean``/``std`` buffers from uint8 ``images`` (N, C, H, W; a tensor or a cache view)."""
    n = images.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:STATS_N].sort().values
    s = s2 = torch.zeros(images.shape[1], dtype=torch.float64)
    for chunk in idx.split(256):  # a chunk at a time: float64 copies of every image would not fit for large data
        x = torch.as_tensor(images[chunk]).double().div_(255.0).transpose(0, 1).flatten(1)  # (C, k*H*W)
        s, s2 = s + x.sum(1), s2 + (x * x).sum(1)
    count = len(idx) * images.shape[2] * images.shape[3]
    mean = s / count
    var = (s2 / count - mean * mean).clamp_min(0) * count / max(count - 1, 1)
    model.mean.copy_(mean.float())
    model.std.copy_(var.sqrt().clamp_min(1e-3).float())


def train_classifier(splits, *, epochs: int = 10, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     device: str | torch.device = "cpu", log=print) -> tuple[ConvClassifier, dict]:
    """Train the recipe on ``splits`` (:class:`ganvae.data.DataSplits`); returns (net on the CPU, provenance).

    The provenance (JSON-able) names the data, the recipe and its settings, and the held-out accuracy.
    """
    meta = splits.meta
    source = meta.get("source")
    k = check_labelled(splits, source)
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GanvaeError(f"{name} {value!r}: expected a positive integer")
    tr, te = splits.train, splits.test
    c, size = int(tr.images.shape[1]), int(tr.images.shape[2])
    shift = max(1, round(2 * size / 28))
    bs = min(batch_size, len(tr.images))
    log = log or (lambda *a: None)
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvClassifier(c, size, k)
        _standardise(model, tr.images, seed)
        model = model.to(device)
        labels = tr.labels.to(device)

        def step_loss(m, x, idx):
            return F.cross_entropy(m(x), labels[idx.to(labels.device)], label_smoothing=LABEL_SMOOTHING)

        _train_loop(model, tr.images, step_loss, epochs, bs, lr, seed, log,
                    augment=lambda x, g: random_shift(x, shift, g))
    pred = _predict(model, te.images, model).argmax(1)
    right = pred == te.labels
    acc = float(right.float().mean())
    names = meta.get("class_names") or [str(i) for i in range(k)]
    per_class = {str(names[i]): round(float(right[te.labels == i].float().mean()), 4)
                 for i in range(k) if bool((te.labels == i).any())}
    dev = torch.device(device)
    provenance = {
        "source": source, "image_size": size, "channels": c, "num_classes": k, "class_names": list(names),
        "n_train": len(tr.images), "n_heldout": len(te.images),
        "split": meta.get("split"), "holdout": meta.get("holdout"), "split_seed": meta.get("split_seed"),
        "recipe": RECIPE.format(shift=shift, lr=lr), "epochs": epochs, "batch_size": bs, "lr": lr, "seed": seed,
        "heldout_accuracy": round(acc, 6), "heldout_errors": int((~right).sum()), "per_class_accuracy": per_class,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ganvae_version": __version__, "torch_version": torch.__version__,
        "device": (f"cpu ({torch.get_num_threads()} threads, {platform.machine()})" if dev.type == "cpu"
                   else str(dev)),
        "seconds": round(time.time() - t0, 1),
    }
    return model.cpu().eval(), provenance

"""``augment``: does synthetic data from a conditional generator trained on n labels per class help a classifier?

For each n in ``labels_per_class`` and each seed: a class-balanced seeded n-shot subset of the training split
is written to ``OUT/n<n>_seed<s>/subset.npz`` and a conditional generator is trained on it alone through
:func:`ganvae.api.train` (``OUT/n<n>_seed<s>/run``, a normal run folder); the fixed classifier is then trained
on the real subset, the subset plus synthetic images, and the synthetic images only (see
:mod:`ganvae.apps.augment`), each tested on the real test split. A finished cell keeps its ``result.json``;
running the same command again reuses it (a stopped benchmark continues where it was).

Writes ``OUT/augment.json`` (every cell and the summary), ``OUT/augment.md`` (the table) and ``OUT/augment.png``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from pathlib import Path

import numpy as np

from ..apps.augment import (augment_html, check_per_class, n_shot_index, plot_png, run_arms, sample_uint8,
                            summarise, table)
from ..apps.classifier import ClassifierConfig
from ..data import DataConfig, ImageData, load_data
from ..data.cache_view import is_cached
from ..errors import GanvaeError
from ..export import load_model
from ..models import MODELS
from ..runfolder import source_slug
from ..util.device import resolve_device
from ..util.files import atomic_write, atomic_write_bytes, atomic_write_text
from .cas import classifier_config, conditional_models
from .training import train

TEST_IN_SUBSET = 256  # real test images stored in subset.npz as its test split (the generator's run never trains on them)


def parse_per_class(value: str | int | list[int]) -> list[int]:
    """``"10,50,100"`` or ``[10, 50]`` -> sorted distinct positive ints; one clear line otherwise."""
    items = value.split(",") if isinstance(value, str) else ([value] if isinstance(value, int) else list(value))
    try:
        out = sorted({int(str(v).strip()) for v in items})
    except ValueError:
        raise GanvaeError(f"--labels-per-class {value!r}: expected whole numbers separated by commas, "
                          "e.g. 10,50,100,500") from None
    if not out or out[0] < 1:
        raise GanvaeError(f"--labels-per-class {value!r}: expected positive whole numbers, e.g. 10,50,100,500")
    return out


def _check_options(model: str, seeds: int, ratio: float) -> None:
    if not MODELS.get(model).model_class.conditional:
        raise GanvaeError(f"--model {model}: not conditional (it cannot use labels); augment needs one of "
                          f"{', '.join(conditional_models())}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise GanvaeError(f"--seeds {seeds!r}: expected a positive whole number")
    if not ratio > 0:
        raise GanvaeError(f"--ratio {ratio!r}: expected a positive number (synthetic images per real image)")


def _write_subset(path: Path, subset: ImageData, test: ImageData) -> None:
    nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)  # noqa: E731  (N, H, W, C): what npz: reads unambiguously
    k = min(TEST_IN_SUBSET, len(test))
    arrays = {"images": nhwc(subset.images), "labels": subset.labels.numpy(),
              "test_images": nhwc(test.images[:k]), "test_labels": test.labels[:k].numpy()}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _cell(key: dict, splits, n: int, seed: int, cell: Path, gen_opts: dict, ccfg: ClassifierConfig,
          device, log) -> dict:
    """One (n, seed): subset -> generator run -> three classifier arms; reuses ``cell/result.json`` if it matches."""
    done = cell / "result.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("key") == key:
            log(f"n={n} seed={seed}: reusing {done}")
            return old
    k = int(splits.meta["num_classes"])
    subset = splits.train.subset(n_shot_index(splits.train.labels, k, n, seed))
    if is_cached(subset.images):  # a folder read through the on-disk cache: the few subset images into memory
        subset = ImageData(images=subset.images.materialize(), labels=subset.labels)
    cell.mkdir(parents=True, exist_ok=True)
    _write_subset(cell / "subset.npz", subset, splits.test)
    t0 = time.perf_counter()
    run = train(key["model"], f"npz:{cell / 'subset.npz'}", out=cell / "run", overwrite=True, progress=False,
                log=lambda *a: None, seed=seed, device=str(device), **gen_opts)
    gen_s = time.perf_counter() - t0
    model = load_model(run.path, device)
    synth = sample_uint8(model, max(k, round(key["ratio"] * len(subset))), k, seed)
    arms = run_arms(dataclasses.replace(ccfg, seed=seed), subset, synth, splits.test, k, device)
    out = {"key": key, "per_class": n, "seed": seed, "n_real": len(subset), "n_synthetic": len(synth),
           "generator": {"run": str(run.path), "steps": run.step, "seconds": round(gen_s, 1), "stopped": run.stopped},
           "arms": arms}
    atomic_write_text(done, json.dumps(out, indent=2) + "\n")
    atomic_write_text(run.path / "augment.json", json.dumps(out, indent=2) + "\n")  # this run's report section
    log(f"n={n} seed={seed}: " + "  ".join(f"{a} {100 * v['accuracy']:.1f}%" for a, v in arms.items())
        + f"  (generator {run.step} steps, {gen_s:.0f} s)")
    return out


def augment(data: str, labels_per_class: str | list[int] = "10,50,100,500", model: str = "cdcgan", *,
            out: str | Path | None = None, seeds: int = 3, ratio: float = 10.0, minutes: float | None = None,
            steps: int | None = None, batch_size: int = 64, set: list[str] | None = None,
            classifier: ClassifierConfig | dict | list[str] | None = None, image_size: int | None = None,
            channels: int | None = None, device: str = "cpu", log=print) -> dict:
    """Synthetic-data augmentation measured on a downstream classifier; returns what ``OUT/augment.json`` holds.

    ``minutes`` / ``steps``: each generator's budget (``train.max_minutes`` / ``train.steps``); ``set``: more
    ``--set`` strings for the generator runs; ``classifier``: the fixed classifier's recipe (fields to change);
    ``ratio``: synthetic images per real image in the mixed arm (the synthetic arm uses the same images).
    """
    per_class = parse_per_class(labels_per_class)
    _check_options(model, seeds, ratio)
    ccfg = classifier_config(0, classifier)
    dev = resolve_device(device, "--device")
    splits = load_data(DataConfig(source=data, image_size=image_size, channels=channels), progress=False)
    k = splits.meta.get("num_classes")
    check_per_class(splits.train.labels, k, per_class, f"data {data!r}")
    if splits.test.labels is None:
        raise GanvaeError(f"data {data!r}: its test split has no labels; augment tests on labelled real images")
    log = log or (lambda *a: None)
    gen_opts: dict = {"set": ["train.report=false", "train.tensorboard=false", *(set or [])]}
    if steps is not None:
        gen_opts["steps"] = steps
    if minutes is not None:
        gen_opts["max_minutes"] = minutes
    out = Path(out) if out is not None else Path("runs") / f"augment-{model}-{source_slug(data)}"
    key = {"data": data, "model": model, "ratio": ratio, "classifier": ccfg.to_dict(),
           "image_size": image_size, "channels": channels}
    cells = []
    for n in per_class:
        opts = dict(gen_opts, batch_size=min(batch_size, n * k))
        for s in range(seeds):
            cells.append(_cell(dict(key, generator=opts), splits, n, s, out / f"n{n}_seed{s}", opts, ccfg, dev, log))
    rows = summarise(cells)
    result = {"data": data, "model": model, "labels_per_class": per_class, "seeds": seeds, "ratio": ratio,
              "num_classes": k, "n_test": len(splits.test), "classifier": ccfg.to_dict(),
              "generator": {"steps": steps, "minutes": minutes, "set": list(set or [])},
              "summary": rows, "cells": cells}
    atomic_write_text(out / "augment.json", json.dumps(result, indent=2) + "\n")
    title = f"{model} on {data}: {seeds} seed{'s' * (seeds > 1)}, ratio {ratio:g}"
    atomic_write_text(out / "augment.md", f"# Augmentation: {title}\n\nTest accuracy (%) on the real test split "
                      f"({len(splits.test)} images), mean ± std over seeds.\n\n{table(rows)}\n")
    png = plot_png(rows, title)
    atomic_write_bytes(out / "augment.png", png)
    atomic_write_text(out / "report.html", "<!doctype html><html lang=en><head><meta charset=utf-8><title>ganvae "
                      f"augment: {html.escape(title)}</title></head><body>{augment_html(result, png)}</body></html>\n")
    log(table(rows))
    log(f"wrote {out / 'augment.json'}, {out / 'augment.md'}, {out / 'augment.png'}, {out / 'report.html'}")
    return result

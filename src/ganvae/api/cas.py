"""``cas``: the classification accuracy score of a conditional run (Ravuri & Vinyals 2019).

The fixed classifier (:mod:`ganvae.apps.classifier`) is trained on ``n`` generated images with balanced labels
and tested on the run's real test split; beside it, the same classifier config trained on the run's real
training split (the reference a generator's data is measured against). Written to ``RUN/cas.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..apps.augment import sample_uint8
from ..apps.classifier import ClassifierConfig, train_and_test
from ..data import load_data
from ..errors import GanvaeError
from ..export import load_model
from ..models import MODELS
from ..runfolder import read_config
from ..util.device import resolve_device
from ..util.files import atomic_write_text


def conditional_models() -> list[str]:
    """The registered models that take class labels (the capability ``conditional``)."""
    return [n for n in MODELS.names() if MODELS.get(n).model_class.conditional]


def _parse_items(items: list[str]) -> dict:
    """``["steps=300", "lr=3e-3", "flip=true"]`` -> typed values (YAML; numbers for the float fields)."""
    import yaml

    out = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq:
            raise GanvaeError(f"--classifier {item!r}: expected FIELD=VALUE, e.g. steps=300")
        value = yaml.safe_load(raw)
        if isinstance(value, str) and isinstance(getattr(ClassifierConfig, key.strip(), None), float):
            try:
                value = float(value)
            except ValueError:
                raise GanvaeError(f"--classifier {item!r}: expected a number") from None
        out[key.strip()] = value
    return out


def classifier_config(seed: int = 0, classifier: ClassifierConfig | dict | list[str] | None = None
                      ) -> ClassifierConfig:
    """The classifier recipe: ``classifier`` (a config; or fields to change, as a dict or ``FIELD=VALUE``
    strings) with ``seed``."""
    if isinstance(classifier, ClassifierConfig):
        classifier.validate()
        return classifier
    if isinstance(classifier, (list, tuple)):
        classifier = _parse_items(list(classifier))
    fields = set(ClassifierConfig.__dataclass_fields__)
    unknown = sorted(set(classifier or {}) - fields)
    if unknown:
        raise GanvaeError(f"classifier option {unknown[0]!r}: expected one of {', '.join(sorted(fields))}")
    cfg = ClassifierConfig(**{"seed": seed, **(classifier or {})})
    cfg.validate()
    return cfg


def _labelled_splits(cfg, what: str):
    splits = load_data(cfg.data, progress=False)
    if splits.train.labels is None or splits.test.labels is None or not splits.meta.get("num_classes"):
        raise GanvaeError(f"{what}: data {cfg.data.source!r} has no class labels for its train and test "
                          "splits; CAS needs labelled data")
    return splits


def cas(run: str | Path, n: int | None = None, seed: int = 0,
        classifier: ClassifierConfig | dict | list[str] | None = None,
        device: str = "cpu", write: bool = True, log=print) -> dict:
    """Classification accuracy score of ``run``: accuracy on the real test split of the fixed classifier
    trained on ``n`` generated images (default: as many as the real training split), and beside it the same
    classifier trained on the real training split; writes ``RUN/cas.json`` (``write``)."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise GanvaeError(f"{run}: not a run folder (no config.yaml); cas needs a trained run")
    cfg = read_config(run)
    if not MODELS.get(cfg.model_name).model_class.conditional:
        raise GanvaeError(f"{run}: a {cfg.model_name} run is not conditional; CAS needs a model trained with "
                          f"labels ({', '.join(conditional_models())})")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise GanvaeError(f"--n {n}: expected a positive number of generated images")
    ccfg = classifier_config(seed, classifier)
    dev = resolve_device(device, "--device")
    splits = _labelled_splits(cfg, str(run))
    k = int(splits.meta["num_classes"])
    model = load_model(run, dev)
    n = n or len(splits.train)
    t0 = time.perf_counter()
    fake = sample_uint8(model, n, k, seed)
    tr, te = splits.train, splits.test
    acc = train_and_test(ccfg, fake.images, fake.labels, te.images, te.labels, k, dev)
    real = train_and_test(ccfg, tr.images, tr.labels, te.images, te.labels, k, dev)
    out = {"run": str(run), "model": cfg.model_name, "data": cfg.data.source, "cas": acc, "real_accuracy": real,
           "n_generated": n, "n_real_train": len(tr), "n_test": len(te), "num_classes": k, "seed": seed,
           "classifier": ccfg.to_dict(), "seconds": round(time.perf_counter() - t0, 1),
           "protocol": "fixed classifier trained on n generated images (balanced labels), tested on the real "
                       "test split; real_accuracy: the same classifier trained on the real training split"}
    if write:
        atomic_write_text(run / "cas.json", json.dumps(out, indent=2) + "\n")
        from ..privacy.card import write_card
        write_card(run)  # the privacy card's utility part
    if log:
        log(f"CAS {100 * acc:.2f}%  (classifier trained on {n} generated images, tested on {len(te)} real)")
        log(f"real {100 * real:.2f}%  (the same classifier trained on the {len(tr)} real training images)")
    return out

"""The one-class protocol: ``data.classes`` keeps the normal classes in training; ``eval --metrics auroc``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import train_tiny

import ganvae.api as api
from ganvae.cli import main
from ganvae.config import from_dict
from ganvae.data import DataConfig, config_from_meta, describe, load_data
from ganvae.errors import GanvaeError


def test_classes_filter_keeps_only_normal_training_images():
    full = load_data(DataConfig(source="digits", cache="off"), progress=False)
    one = load_data(from_dict(DataConfig, {"source": "digits", "classes": 3, "cache": "off"}, "data"), progress=False)
    assert set(one.train.labels.tolist()) == {3}
    assert len(one.train) == int((full.train.labels == 3).sum())
    assert np.array_equal(one.test.labels.numpy(), full.test.labels.numpy())  # the test split keeps every class
    assert one.meta["classes"] == [3] and one.meta["num_classes"] == 10
    assert "train keeps only class(es) 3" in describe(one)
    assert config_from_meta(one.meta).classes == [3]
    two = from_dict(DataConfig, {"source": "digits", "classes": "3,5"}, "data")
    assert two.classes == [3, 5]


def test_classes_bad_values(tmp_path):
    with pytest.raises(GanvaeError, match="data.classes must be a class label"):
        from_dict(DataConfig, {"source": "digits", "classes": -1}, "data")
    with pytest.raises(GanvaeError, match=r"data.classes \[42\]: no training image .* from 0 to 9"):
        load_data(DataConfig(source="digits", classes=[42], cache="off"), progress=False)
    np.savez(tmp_path / "x.npz", images=np.zeros((10, 1, 8, 8), np.uint8))
    with pytest.raises(GanvaeError, match="has no class labels"):
        load_data(DataConfig(source=str(tmp_path / "x.npz"), classes=[0], cache="off"), progress=False)


@pytest.fixture(scope="module")
def one_class_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("oneclass") / "vae0"
    train_tiny(out, "vae", "digits", steps=200, batch_size=64, more=["data.classes=0"])
    return out


def test_eval_auroc_on_one_class_run(one_class_run):
    recs = api.evaluate(one_class_run, metrics="auroc", n=2000, log=None, progress=False)
    got = {r["metric"]: r for r in recs}
    assert set(got) == {"auroc_neg_elbo", "auroc_neg_iwae", "auroc_recon"}
    for r in got.values():  # zeros vs the other nine digits, held out: easy for a model of zeros only
        assert r["value"] > 0.9 and r["lower_is_better"] is False and r["n_reference"] == 180
    written = [json.loads(line) for line in (one_class_run / "eval.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in written} >= set(got)


def test_auroc_without_one_class_split_is_one_line_exit_2(tmp_path, capsys):
    run = tmp_path / "plain"
    train_tiny(run, "vae", "digits", steps=2)
    assert main(["eval", str(run), "--metrics", "auroc", "--n", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.classes" in err


def test_auroc_on_gan_export_points_to_score(tmp_path):
    run = tmp_path / "gan"
    train_tiny(run, "dcgan", "digits", steps=2, more=["data.classes=1"])
    with pytest.raises(GanvaeError, match="ganvae score"):
        api.evaluate(run, metrics="auroc", n=32, log=None, progress=False)

"""`ganvae cas`: the classification accuracy score with the shared classifier (ganvae.api.cas)."""

from __future__ import annotations

import json

import pytest
from helpers import train_tiny

from ganvae import api
from ganvae.apps.classifier import ClassifierConfig, train_and_test
from ganvae.cli import main
from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError

RECIPE = {"width": 8, "steps": 120, "batch_size": 32, "lr": 3e-3}


@pytest.fixture(scope="module")
def cdcgan_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("cas") / "run", "cdcgan", "digits", steps=3).path


def test_cas_real_reference_is_the_directly_trained_classifier(cdcgan_run):
    out = api.cas(cdcgan_run, n=60, seed=1, classifier=RECIPE, log=None)
    splits = load_data(DataConfig(source="digits"), progress=False)
    tr, te = splits.train, splits.test
    direct = train_and_test(ClassifierConfig(seed=1, **RECIPE), tr.images, tr.labels, te.images, te.labels, 10)
    assert out["real_accuracy"] == pytest.approx(direct, abs=0.03)  # the same recipe and seed: deterministic
    assert out["real_accuracy"] > 0.6  # a working classifier (10% is chance)
    assert 0 <= out["cas"] <= 1 and out["n_generated"] == 60 and out["num_classes"] == 10
    assert out["classifier"] == ClassifierConfig(seed=1, **RECIPE).to_dict()
    assert json.loads((cdcgan_run / "cas.json").read_text())["cas"] == out["cas"]


def test_cas_cli_prints_both_lines(cdcgan_run, capsys):
    assert main(["cas", str(cdcgan_run), "--n", "20", "--classifier", "steps=2", "--classifier", "width=4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CAS ") and "20 generated" in lines[0] and lines[1].startswith("real ")


def test_cas_on_unconditional_run_is_one_line_exit_2(tmp_path, capsys):
    run = train_tiny(tmp_path / "run", "dcgan", "digits", steps=1).path
    assert main(["cas", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "a dcgan run is not conditional; CAS needs a model trained with labels" in err
    assert len(err.splitlines()) == 1 and "cdcgan" in err


def test_classifier_options_are_typed_and_checked():
    cfg = api.classifier_config(3, ["steps=5", "lr=3e-3", "flip=true", "optimizer=sgd"])
    assert (cfg.seed, cfg.steps, cfg.lr, cfg.flip, cfg.optimizer) == (3, 5, 0.003, True, "sgd")
    with pytest.raises(GanvaeError, match="classifier option 'depth': expected one of"):
        api.classifier_config(0, ["depth=3"])
    with pytest.raises(GanvaeError, match="expected FIELD=VALUE"):
        api.classifier_config(0, ["steps"])
    with pytest.raises(GanvaeError, match="steps must be a positive integer"):
        api.classifier_config(0, {"steps": -1})


def test_report_shows_the_cas_section(cdcgan_run):
    api.cas(cdcgan_run, n=20, seed=0, classifier={"steps": 2, "width": 4}, log=None)
    r = json.loads((cdcgan_run / "cas.json").read_text())
    page = api.report(cdcgan_run).read_text()
    assert "<h2>Classification accuracy score</h2>" in page
    assert f"<td>{100 * r['cas']:.2f}</td>" in page and f"<td>{100 * r['real_accuracy']:.2f}</td>" in page

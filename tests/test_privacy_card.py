"""The privacy card (ganvae.privacy.card): guarantee, attacks and utility from the run's own files, with a verdict;
written by `ganvae audit` and `ganvae cas`, shown in the report."""

from __future__ import annotations

import json

import pytest

from ganvae.cli import main
from ganvae.privacy.card import card
from ganvae.report import build_report
from helpers import train_tiny

# Opacus hooks D's first layer, whose input (the images) needs no gradient: PyTorch says so, harmlessly
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def _run(tmp_path, privacy=None, audit=None, cas=None, evals=()):
    (tmp_path / "config.yaml").write_text("model: {name: cvae}\n")
    info = {"device": "cpu", **({"privacy": privacy} if privacy else {})}
    (tmp_path / "run.json").write_text(json.dumps(info))
    if audit is not None:
        (tmp_path / "audit.json").write_text(json.dumps(audit))
    if cas is not None:
        (tmp_path / "cas.json").write_text(json.dumps(cas))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return tmp_path


PRIVATE = {"epsilon": 2.5, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1, "steps": 900,
           "private": "D (real-data half of its loss)"}
CLEAN = {"mia_auc": 0.507, "mia_best_attack": "disc", "mia_tpr_at_1pct_fpr": 0.012, "n_near_copies": 0,
         "near_copy_share": 0.0, "z_u": 0.4, "verdict": "no sign of leakage", "leaks": False,
         "protocol": {"n_samples": 2000}}
CAS = {"cas": 0.871, "real_accuracy": 0.982, "n_generated": 60000, "n_test": 10000}


def test_card_reads_each_part_from_its_file(tmp_path):
    evals = [{"metric": "fid", "value": 9.0, "real_data": 0.1}, {"metric": "kid", "value": 0.01},
             {"metric": "fid", "value": 7.5, "real_data": 0.1, "feature_net": "mnist"}]
    c = card(_run(tmp_path, PRIVATE, CLEAN, CAS, evals))
    g, a, u = c["guarantee"], c["attacks"], c["utility"]
    assert g["private"] and g["epsilon"] == 2.5 and g["delta"] == 1e-5 and g["strength"] == "moderate"
    assert g["mechanism"].startswith("DP-SGD") and g["private"] == "D (real-data half of its loss)"
    assert a["mia_auc"] == 0.507 and a["mia_tpr_at_1pct_fpr"] == 0.012 and a["n_samples"] == 2000
    assert u["cas"] == 0.871 and u["real_accuracy"] == 0.982 and u["fid"] == 7.5  # the latest fid record
    v = " ".join(c["verdict"])
    assert "(2.5, 1e-05)-DP" in v and "no sign of leakage" in v and "87.1%" in v and "98.2%" in v
    assert "shareable under the stated guarantee" in v


@pytest.mark.parametrize("eps,strength", [(0.5, "strong"), (1.0, "strong"), (8.0, "moderate"), (50.0, "weak")])
def test_strength_bands(tmp_path, eps, strength):
    assert card(_run(tmp_path, {**PRIVATE, "epsilon": eps}))["guarantee"]["strength"] == strength


def test_verdict_without_privacy_with_leaks_and_with_nothing_measured(tmp_path):
    leaky = {**CLEAN, "leaks": True, "verdict": "leaks: 40 of 2000 samples are near-copies of training images"}
    v = " ".join(card(_run(tmp_path, None, leaky))["verdict"])
    assert "Not differentially private" in v and "found leakage: leaks: 40 of 2000" in v and "do not share" in v
    (tmp_path / "audit.json").unlink()
    c = card(tmp_path)
    assert c["attacks"] is None and c["utility"] is None
    v = " ".join(c["verdict"])
    assert "ganvae audit RUN" in v and "ganvae cas RUN" in v and "no formal protection" in v


def test_init_is_named_as_not_covered(tmp_path):
    run = _run(tmp_path, PRIVATE)
    info = json.loads((run / "run.json").read_text())
    info["init"] = {"run": "/runs/public", "step": 500, "data": "shapes"}
    (run / "run.json").write_text(json.dumps(info))
    c = card(run)
    assert c["guarantee"]["init"]["data"] == "shapes"
    assert "treated as public and is not covered" in " ".join(c["verdict"])


def test_audit_and_cas_write_the_card_and_the_report_shows_it(tmp_path, capsys):
    run = train_tiny(tmp_path / "r", "cvae", steps=3, more=["privacy.epsilon=5"]).path
    assert main(["cas", str(run), "-n", "200", "--classifier", "steps=2", "--classifier", "width=4"]) == 0
    c = json.loads((run / "privacy_card.json").read_text())
    cas = json.loads((run / "cas.json").read_text())
    assert c["utility"]["cas"] == cas["cas"] and c["attacks"] is None
    assert main(["audit", str(run), "--n-samples", "300", "--n-members", "150"]) == 0
    c = json.loads((run / "privacy_card.json").read_text())
    audit = json.loads((run / "audit.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert c["guarantee"]["epsilon"] == info["privacy"]["epsilon"] <= 5
    assert c["attacks"]["mia_auc"] == audit["mia_auc"] and c["utility"]["cas"] == cas["cas"]
    html = build_report(run)
    assert "<h2>Privacy card</h2>" in html and "Differentially private" in html

"""n-shot augmentation (ganvae.apps.augment, ganvae.api.augment, `ganvae augment`)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_set

from ganvae import api
from ganvae.apps import augment as app
from ganvae.apps.classifier import ClassifierConfig
from ganvae.cli import main
from ganvae.data import ImageData
from ganvae.errors import GanvaeError

LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 1, 0])  # class sizes 6, 5, 5


def test_n_shot_subset_is_class_balanced_and_seeded():
    a = app.n_shot_index(LABELS, 3, 4, seed=0)
    assert torch.bincount(LABELS[a], minlength=3).tolist() == [4, 4, 4]
    assert torch.equal(a, torch.sort(a).values) and len(set(a.tolist())) == 12
    assert torch.equal(a, app.n_shot_index(LABELS, 3, 4, seed=0))
    assert any(not torch.equal(a, app.n_shot_index(LABELS, 3, 4, seed=s)) for s in range(1, 5))
    assert torch.bincount(LABELS[app.n_shot_index(LABELS, 3, 5, seed=2)], minlength=3).tolist() == [5, 5, 5]
    with pytest.raises(GanvaeError, match="class 1 has only 5"):
        app.n_shot_index(LABELS, 3, 6, seed=0)


def test_check_per_class_names_the_smallest_class():
    app.check_per_class(LABELS, 3, [1, 5], "data 'x'")
    with pytest.raises(GanvaeError, match=r"--labels-per-class 6: class 1 of data 'x' has only 5 .* at most 5"):
        app.check_per_class(LABELS, 3, [2, 6], "data 'x'")
    with pytest.raises(GanvaeError, match="no class labels"):
        app.check_per_class(None, None, [2], "data 'x'")


def test_balanced_labels():
    assert torch.bincount(app.balanced_labels(10, 3)).tolist() == [4, 3, 3]
    assert torch.bincount(app.balanced_labels(12, 4)).tolist() == [3, 3, 3, 3]


def _cell(n, seed, real, mixed, synth):
    return {"per_class": n, "seed": seed, "arms": {"real": {"accuracy": real}, "mixed": {"accuracy": mixed},
                                                   "synthetic": {"accuracy": synth}}}


def test_summary_mean_spread_and_gain_by_hand():
    rows = app.summarise([_cell(10, 0, 0.5, 0.6, 0.4), _cell(10, 1, 0.7, 0.9, 0.5), _cell(50, 0, 0.8, 0.8, 0.7)])
    r10, r50 = rows
    assert r10["seeds"] == 2 and r10["real"]["mean"] == pytest.approx(0.6)
    assert r10["real"]["std"] == pytest.approx(0.1414213, abs=1e-6)  # sqrt(((.5-.6)^2 + (.7-.6)^2) / 1)
    assert r10["gain_mixed"]["mean"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert r10["gain_mixed"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert r10["gain_synthetic"]["mean"] == pytest.approx(-0.15)
    assert r50["real"]["std"] == 0.0 and r50["gain_mixed"]["mean"] == pytest.approx(0.0)
    text = app.table(rows)
    assert "| 10 | 2 | 60.0 ± 14.1 | 75.0 ± 21.2 | 45.0 ± 7.1 | +15.0 ± 7.1 | -15.0 ± 7.1 |" in text
    assert app.plot_png(rows, "t")[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_arm_trains_the_same_classifier_config(monkeypatch):
    seen = []

    def fake(cfg, images, labels, test_images, test_labels, k, device):
        seen.append((cfg, len(images)))
        return 0.5

    monkeypatch.setattr(app, "train_and_test", fake)
    img = lambda n: ImageData(images=torch.zeros(n, 1, 4, 4, dtype=torch.uint8), labels=torch.arange(n) % 2)  # noqa
    cfg = ClassifierConfig(steps=1)
    arms = app.run_arms(cfg, img(4), img(10), img(3), 2)
    assert [n for _, n in seen] == [4, 14, 10]
    assert all(c is cfg for c, _ in seen)
    assert arms["real"]["classifier"] == arms["mixed"]["classifier"] == arms["synthetic"]["classifier"]


def test_augment_end_to_end_on_tiny_digits(tmp_path):
    kw = dict(seeds=2, steps=2, batch_size=8, set=tiny_set("cdcgan"), ratio=2.0, log=None,
              classifier={"width": 4, "steps": 3, "batch_size": 8})
    res = api.augment("digits", "2,3", "cdcgan", out=tmp_path, **kw)
    assert [r["per_class"] for r in res["summary"]] == [2, 3]
    for cell in res["cells"]:
        k = res["num_classes"]
        assert cell["n_real"] == cell["per_class"] * k and cell["n_synthetic"] == 2 * cell["n_real"]
        cfgs = [cell["arms"][a]["classifier"] for a in app.ARMS]
        assert cfgs[0] == cfgs[1] == cfgs[2] and cfgs[0]["seed"] == cell["seed"]
        assert all(0 <= cell["arms"][a]["accuracy"] <= 1 for a in app.ARMS)
    saved = json.loads((tmp_path / "augment.json").read_text())
    assert saved["summary"] == res["summary"]
    assert "| 2 | 2 |" in (tmp_path / "augment.md").read_text() and (tmp_path / "augment.png").stat().st_size > 0
    page = (tmp_path / "report.html").read_text()  # the study's report: the table (each n's mean ± std) and plot
    first = res["summary"][0]
    assert "Synthetic data for a classifier" in page and "data:image/png;base64," in page
    assert f"{100 * first['real']['mean']:.1f} ± {100 * first['real']['std']:.1f}" in page
    cell = res["cells"][0]  # each generator run's own report shows its cell's arms
    from ganvae.report import build_report
    run_page = build_report(cell["generator"]["run"])
    assert "Synthetic data for a classifier" in run_page
    assert f"{100 * cell['arms']['mixed']['accuracy']:.1f} ± 0.0" in run_page
    lines = []
    again = api.augment("digits", "2,3", "cdcgan", out=tmp_path, **dict(kw, log=lines.append))
    assert again["summary"] == res["summary"] and sum("reusing" in ln for ln in lines) == 4


@pytest.mark.parametrize("args, says", [
    (["--model", "dcgan"], "--model dcgan: not conditional"),
    (["--labels-per-class", "10,200"], "--labels-per-class 200: class"),
    (["--labels-per-class", "ten"], "expected whole numbers"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, says):
    assert main(["augment", "--data", "digits", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_augment_on_a_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for c in ("cat", "dog"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(8):
            px = torch.randint(0, 256, (8, 8), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(px).save(tmp_path / "img" / c / f"{i}.png")
    res = api.augment(f"folder:{tmp_path / 'img'}", "3", "cvae", out=tmp_path / "o", seeds=1, steps=1,
                      batch_size=4, set=tiny_set("cvae"), ratio=1.0, log=None, image_size=8, channels=1,
                      classifier={"width": 4, "steps": 2, "batch_size": 4})
    cell = res["cells"][0]
    assert res["num_classes"] == 2 and cell["n_real"] == 6 and cell["n_synthetic"] == 6

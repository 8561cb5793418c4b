"""Domain feature nets: ``auto`` picks a domain net only where it classifies the labelled reference images
(ganvae.metrics.featnet_auto), ``ganvae featnet train`` (the MNIST recipe on any labelled data) and
``--feature-net PATH``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganvae import api
from ganvae.cli import main
from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError
from ganvae.metrics import featnet_auto
from ganvae.metrics.evaluate import pick_feature_net
from ganvae.metrics.feature_nets import ConvClassifier
from ganvae.metrics.featnet_auto import choose, domain_accuracy, labelled_reference
from ganvae.metrics.featnet_file import load_featnet, read_featnet
from ganvae.version import __version__
from helpers import train_tiny


# ----------------------------------------------------------------------------- data made here

def clothes_like(per_class: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 classes of 28x28 grey images that are not digits: stripes, checks, garment-like silhouettes, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    images, labels = [], []
    for k in range(10):
        for _ in range(per_class):
            ph, a = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.0)
            cy, cx = 14 + rng.uniform(-2, 2), 14 + rng.uniform(-2, 2)
            img = [lambda: np.sin(2 * np.pi * yy / 4 + ph) > 0,                       # horizontal stripes
                   lambda: np.sin(2 * np.pi * xx / 4 + ph) > 0,                       # vertical stripes
                   lambda: np.sin(2 * np.pi * (xx + yy) / 6 + ph) > 0,                # diagonal stripes
                   lambda: ((xx // 4 + yy // 4) % 2) == 0,                            # checks
                   lambda: ((xx - cx) / 11) ** 2 + ((yy - cy) / 8) ** 2 < 1,           # a bag
                   lambda: ((abs(xx - cx) < 10) & (yy > 4) & (yy < 9)) | ((abs(xx - cx) < 5) & (yy > 4)),  # a shirt
                   lambda: ((abs(xx - cx + 4) < 2.5) | (abs(xx - cx - 4) < 2.5)) & (yy > 3),  # trousers
                   lambda: ((yy > 18) & (abs(xx - cx) < 12)) | ((xx > cx + 6) & (yy > 8)),     # a boot
                   lambda: np.clip(xx / 27 + rng.uniform(-0.2, 0.2), 0, 1),           # a gradient
                   lambda: rng.uniform(0, 1, (28, 28)) > 0.5][k]()                    # noise
            images.append(np.clip(np.asarray(img, np.float64) * a * 255, 0, 255).astype(np.uint8))
            labels.append(k)
    return np.stack(images), np.asarray(labels, np.int64)


@pytest.fixture(scope="module")
def clothes_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("clothes") / "clothes.npz"
    images, labels = clothes_like()
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """600 real MNIST digits (from the mnist-5k source) as *user* data: no built-in domain note."""
    s = load_data(DataConfig(source="mnist-5k"), progress=False)
    path = tmp_path_factory.mktemp("digits") / "my_digits.npz"
    np.savez(path, images=s.train.images[:600, 0].numpy(), labels=s.train.labels[:600].numpy())
    return path


def _splits(path):
    return load_data(DataConfig(source=f"npz:{path}"), progress=False)


def _one_error_line(capsys, argv, *needles) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    last = err.replace("\r", "\n").splitlines()[-1]  # after any progress bar a data load drew
    assert last.startswith("ganvae: error: ") and err.count("ganvae: error") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in last, (needle, err)
    return last


# ----------------------------------------------------------------------------- auto

def test_auto_picks_effnet_for_clothes_like_data_and_says_why(clothes_npz):
    splits = _splits(clothes_npz)
    assert splits.meta["image_size"] == 28 and splits.meta["channels"] == 1 and splits.meta["num_classes"] == 10
    choice = choose(splits.meta, *labelled_reference(splits))
    assert choice.name == "effnet"
    assert "the mnist digit net classifies" in choice.reason and "needs 90%" in choice.reason
    share = int(choice.reason.split("classifies ")[1].split("%")[0])
    assert share < 50, choice.reason  # not digits: far below the bar
    assert choice.line().startswith("features: effnet (the mnist digit net classifies")
    assert pick_feature_net(splits) == "effnet"


def test_auto_picks_the_digit_net_for_real_digits_given_as_user_data(digits_npz):
    splits = _splits(digits_npz)
    assert "domain" not in splits.meta  # user data: the check, not the built-in short cut, decides
    choice = choose(splits.meta, *labelled_reference(splits))
    assert choice.name == "mnist", choice.reason
    assert "of 600 labelled reference images; needs 90%" in choice.reason  # 60 test + 540 train
    assert int(choice.reason.split("classifies ")[1].split("%")[0]) >= 90


def test_built_in_sources_short_cut_but_user_data_cannot_claim_a_domain(clothes_npz):
    digits = load_data(DataConfig(source="digits"), progress=False)  # 8x8 digits: the net's domain, known
    assert choose(digits.meta).name == "mnist" and "built-in source digits" in choose(digits.meta).reason
    splits = _splits(clothes_npz)
    forged = dict(splits.meta, domain="digits")  # a "domain" note on a non-built-in source is not trusted
    assert choose(forged, *labelled_reference(splits)).name == "effnet"


def test_auto_without_labels_or_with_other_class_counts_is_effnet():
    meta = {"source": "npz:x.npz", "channels": 1, "image_size": 28, "num_classes": None}
    c = choose(meta)
    assert c.name == "effnet" and "no labels" in c.reason
    images, labels = torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.arange(8) % 7
    c = choose(dict(meta, num_classes=7), images, labels)
    assert c.name == "effnet" and "no domain net classifies 7 classes" in c.reason


class StubNet:
    """A 10-class 'net' whose prediction for image i is ``preds[i]`` (the image's first pixel), counting calls."""

    name, num_classes = "stub", 10

    def __init__(self):
        self.calls = 0

    def logits(self, images):
        self.calls += 1
        return torch.nn.functional.one_hot(images.flatten(1)[:, 0].long(), 10).float()


@pytest.mark.parametrize("right, picked", [(9, "mnist"), (8, "effnet")])
def test_the_90_percent_bar_on_hand_counted_predictions(monkeypatch, right, picked):
    stub = StubNet()
    monkeypatch.setattr(featnet_auto, "get_feature_net", lambda name, device="cpu", **kw: stub)
    labels = torch.arange(10)
    preds = labels.clone()
    preds[right:] = (labels[right:] + 1) % 10  # exactly `right` of 10 correct
    images = preds.view(10, 1, 1, 1).expand(10, 1, 28, 28).to(torch.uint8).clone()
    images[:, :, 1:, :] = right  # make the two parametrisations different images (separate cache entries)
    c = choose({"source": "npz:y", "num_classes": 10}, images, labels)
    assert c.name == picked and f"classifies {right * 10}% of 10 labelled reference images" in c.reason


def test_the_check_runs_once_per_reference_images():
    stub = StubNet()
    images = torch.randint(0, 10, (30, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    labels = images[:, 0, 0, 0].long()
    labels[:3] = (labels[:3] + 1) % 10  # 27 of 30 right
    assert domain_accuracy(stub, images, labels) == (pytest.approx(0.9), 30)
    assert domain_accuracy(stub, images, labels) == (pytest.approx(0.9), 30)
    assert stub.calls == 1  # periodic evaluation does not classify the same reference images again


def test_eval_prints_and_records_the_choice(clothes_npz, tmp_path):
    run = train_tiny(tmp_path / "clothes-gan", data=f"npz:{clothes_npz}", steps=2).path
    lines = []
    recs = api.evaluate(run, metrics="fid", n=6, baselines=False, log=lines.append, progress=False)
    head = lines[0].splitlines()[0]  # the table's header names the net and why
    assert "; features: effnet (the mnist digit net classifies" in head and "needs 90%); step" in head
    assert recs[0]["feature_net"] == "effnet" and "needs 90%" in recs[0]["feature_net_reason"]
    stored = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert stored["feature_net_reason"] == recs[0]["feature_net_reason"]


# ----------------------------------------------------------------------------- the classifier

@pytest.mark.parametrize("channels, size, k", [(1, 8, 3), (1, 28, 10), (3, 32, 4), (3, 64, 2)])
def test_conv_classifier_any_size(channels, size, k):
    net = ConvClassifier(channels, size, k).eval()
    x = torch.rand(2, channels, size, size)
    assert net.features(x).shape == (2, 128) and net(x).shape == (2, k)
    pools = sum(isinstance(m, torch.nn.MaxPool2d) for m in net.body)
    assert 4 <= size // 2**pools <= 7  # halved until at most 7x7


# ----------------------------------------------------------------------------- featnet train

CLASSES = ("bars", "rings", "stripes")


def _labelled_folder(root, per_class: int = 20):
    yy, xx = np.mgrid[0:16, 0:16]
    rng = np.random.default_rng(1)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            o = rng.integers(-2, 3)
            img = {"bars": (abs(xx - 8 - o) < 3),
                   "rings": abs(np.hypot(xx - 8 - o, yy - 8) - 5) < 1.5,
                   "stripes": ((yy + o) // 2) % 2 == 0}[name]
            Image.fromarray((img * rng.uniform(150, 255)).astype(np.uint8), "L").save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def featnet(tmp_path_factory):
    """A tiny labelled folder, a featnet trained on it through the CLI, and the folder's splits."""
    tmp = tmp_path_factory.mktemp("featnet")
    mp = pytest.MonkeyPatch()
    mp.setenv("GANVAE_CACHE", str(tmp / "cache"))
    folder = _labelled_folder(tmp / "patterns")
    out = tmp / "patterns.safetensors"
    argv = ["featnet", "train", "--data", str(folder), "--image-size", "16", "--epochs", "4", "--batch-size", "8",
            "--seed", "3", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    yield {"folder": folder, "out": out, "argv": argv, "tmp": tmp,
           "splits": load_data(DataConfig(source=str(folder), image_size=16), progress=False)}
    mp.undo()


def test_featnet_train_writes_weights_provenance_and_accuracy(featnet):
    info = read_featnet(featnet["out"])
    assert info["config"] == {"channels": 1, "image_size": 16, "num_classes": 3, "feature_dim": 128}
    p = info["provenance"]
    assert p["source"] == str(featnet["folder"]) and p["class_names"] == list(CLASSES)
    assert (p["image_size"], p["channels"], p["num_classes"], p["epochs"], p["seed"]) == (16, 1, 3, 4, 3)
    assert p["ganvae_version"] == __version__ and p["date"].endswith("Z")
    assert "label smoothing 0.05" in p["recipe"] and p["n_heldout"] == featnet["splits"].meta["n_test"]
    # the stored accuracy is the loaded net's accuracy on the held-out split, recomputed here
    net = load_featnet(featnet["out"])
    test = featnet["splits"].test
    acc = float((net.logits(test.images).argmax(1) == test.labels).float().mean())
    assert info["heldout_accuracy"] == pytest.approx(acc, abs=1e-6)
    assert acc >= 0.8  # three easy patterns
    assert net.features(test.images).shape == (len(test.images), 128)


def test_featnet_train_is_seeded(featnet, tmp_path):
    again = tmp_path / "again.safetensors"
    api.train_feature_net(str(featnet["folder"]), image_size=16, epochs=4, batch_size=8, seed=3, device="cpu",
                          out=again, log=None)
    from safetensors.torch import load_file

    a, b = load_file(str(featnet["out"])), load_file(str(again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_feature_net_path_works_in_eval(featnet, capsys):
    run = train_tiny(featnet["tmp"] / "run", data=str(featnet["folder"]), more=["data.image_size=16"], steps=2).path
    code = main(["eval", str(run), "--feature-net", str(featnet["out"]), "--metrics", "fid,is", "--n", "12",
                 "--no-baselines"])
    out = capsys.readouterr().out
    assert code == 0 and f"features: {featnet['out'].resolve()} (asked for; trained by `ganvae featnet train`" in out
    recs = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert {"fid", "is"} <= {r["metric"] for r in recs}
    assert all(r["feature_net"] == str(featnet["out"].resolve()) for r in recs)
    assert main(["featnet", "info", str(featnet["out"])]) == 0
    assert "accuracy:" in capsys.readouterr().out


def test_feature_net_path_works_in_periodic_evaluation(featnet):
    """train.eval_feature_net: the periodic scores use the featnet file, and run.json says which and why."""
    run = train_tiny(featnet["tmp"] / "periodic", data=str(featnet["folder"]), steps=4,
                     more=["data.image_size=16", "train.eval_every_kimg=0.032", "train.eval_n=12",
                           f"train.eval_feature_net={featnet['out']}"]).path
    info = json.loads((run / "run.json").read_text())["eval_features"]
    assert info["net"] == str(featnet["out"].resolve()) and "featnet train" in info["reason"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/fid" in r for r in lines)


def test_periodic_evaluation_refuses_a_featnet_of_another_size(featnet, tmp_path):
    with pytest.raises(GanvaeError, match="image"):  # the net is 16 px; digits are 8 px
        train_tiny(tmp_path / "wrong", steps=2, more=["train.eval_every_kimg=0.016", "train.eval_n=4",
                                                      f"train.eval_feature_net={featnet['out']}"])


def test_bad_feature_net_files_and_data_are_one_line(featnet, capsys, tmp_path):
    run = train_tiny(tmp_path / "digits-run", steps=2).path  # 1x8x8 digits
    base = ["eval", str(run), "--metrics", "fid", "--n", "4", "--no-baselines", "--feature-net"]
    _one_error_line(capsys, base + [str(tmp_path / "nope.safetensors")], "no such file")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    _one_error_line(capsys, base + [str(garbage)], "not a safetensors file")
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    _one_error_line(capsys, base + [str(plain)], "not a feature net from `ganvae featnet train`")
    _one_error_line(capsys, base + [str(featnet["out"])], "the net takes 1x16x16 images but the data is 1x8x8")
    _one_error_line(capsys, base + ["nope"], "unknown feature net 'nope'", "featnet train")


def test_featnet_train_refuses_what_it_cannot_use(featnet, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "cache"))
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8), "L").save(flat / f"{i}.png")
    _one_error_line(capsys, ["featnet", "train", "--data", str(flat), "--out", str(tmp_path / "x.safetensors")],
                    "has no labels")
    _one_error_line(capsys, featnet["argv"], "already exists", "--overwrite")
    _one_error_line(capsys, ["featnet", "train", "--data", str(flat), "--out", str(tmp_path / "x.pt")],
                    "ending in .safetensors")
    _one_error_line(capsys, ["featnet", "info", str(tmp_path / "none.safetensors")], "no such file")



def test_feature_net_path_works_in_audit(featnet):
    run = featnet["tmp"] / "run"  # trained by test_feature_net_path_works_in_eval when run in order; else here
    if not (run / "model").is_dir():
        train_tiny(run, data=str(featnet["folder"]), more=["data.image_size=16"], steps=2)
    result = api.audit(run, n_samples=20, n_members=6, features=str(featnet["out"]), write=False, log=None,
                       progress=False)
    assert result["protocol"]["feature_space"] == str(featnet["out"].resolve())
    assert result["protocol"]["feature_reason"].startswith("asked for; trained by `ganvae featnet train`")


def test_readme_featnet_commands_parse():
    import shlex
    from pathlib import Path

    from ganvae.cli import build_parser

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [ln.split("#")[0] for ln in text.splitlines() if ln.startswith("ganvae featnet")
             or (ln.startswith("ganvae eval") and "--feature-net scans" in ln)]
    assert len(lines) == 3, lines
    for ln in lines:
        build_parser().parse_args(shlex.split(ln)[1:])

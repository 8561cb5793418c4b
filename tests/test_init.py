"""``--init RUN`` (ganvae.api.init): public pretraining, then private fine-tuning.

The new run starts from RUN's networks (every one, D included), counts only its own private steps, records
where its weights came from (run.json, the export, the model card), and refuses an incompatible RUN with one
line and exit code 2.
"""

from __future__ import annotations

import json

import pytest
import torch

from ganvae.api.init import load_init
from ganvae.cli import main
from ganvae.models import build
from ganvae.runfolder import read_config
from ganvae.training import checkpoint as ckpt
from helpers import train_tiny

# Opacus hooks D's first layer, whose input (the images) needs no gradient: PyTorch says so, harmlessly
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

GROUP = ["model.d_norm=group"]  # what a private GAN's D uses (BatchNorm is not private)
DP = ["privacy.noise_multiplier=1.0", "model.d_norm=group"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    # public: other images than the private runs' digits
    train_tiny(root / "public", "dcgan", "mnist-5k", steps=3, seed=1, more=GROUP + ["data.image_size=8"])
    train_tiny(root / "private", "dcgan", steps=2, seed=2, more=DP + [f"train.init={root / 'public'}"])
    train_tiny(root / "fresh", "dcgan", steps=2, seed=2, more=DP)
    return root


def test_init_loads_every_network_of_the_run(runs):
    cfg = read_config(runs / "private")
    net = build(cfg.model_name, cfg.model)
    record = load_init(net, runs / "public", cfg.model_name, cfg.model)
    public = ckpt.load_state(runs / "public" / "checkpoints" / "latest.pt")["model"]
    assert net.state_dict().keys() == public.keys()
    for k, v in public.items():
        assert torch.equal(net.state_dict()[k], v), k
    assert any(k.startswith("D.") for k in public)  # the discriminator too, not only G
    assert record["step"] == 3 and record["model"] == "dcgan" and record["data"] == "mnist-5k"


def test_private_run_records_the_init_and_counts_only_its_own_steps(runs):
    info = json.loads((runs / "private" / "run.json").read_text())
    assert info["init"]["run"] == str((runs / "public").resolve()) and info["init"]["step"] == 3
    history = ckpt.load_state(runs / "private" / "checkpoints" / "latest.pt")["privacy"]["history"]
    fresh = ckpt.load_state(runs / "fresh" / "checkpoints" / "latest.pt")["privacy"]["history"]
    from ganvae.models.gan import GANConfig
    # the public steps cost nothing here: 2 private steps, each of DP_D_STEPS charged D steps
    assert sum(k for _, _, k in history) == 2 * GANConfig.DP_D_STEPS and history == fresh
    assert json.loads((runs / "private" / "model" / "config.json").read_text())["init"]["step"] == 3
    card = (runs / "private" / "model" / "README.md").read_text()
    assert "starting weights" in card and "does not cover it" in card
    # same seed, same data, same steps: only the starting weights differ
    a = ckpt.load_state(runs / "private" / "checkpoints" / "latest.pt")["model"]
    b = ckpt.load_state(runs / "fresh" / "checkpoints" / "latest.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # without --init the two runs are bit-identical


def test_resume_keeps_the_init_record(runs):
    train_tiny(runs / "private", "dcgan", steps=3, resume=True)
    assert json.loads((runs / "private" / "run.json").read_text())["init"]["step"] == 3


def test_dp_merf_init_takes_the_generator_and_releases_its_own_target(tmp_path):
    train_tiny(tmp_path / "pub", "dp-merf", "mnist-5k", steps=2, seed=1,
               more=["model.rff_freqs=32", "data.image_size=8"])
    train_tiny(tmp_path / "priv", "dp-merf", steps=1, seed=1,
               more=["model.rff_freqs=32", "privacy.epsilon=1", f"train.init={tmp_path / 'pub'}"])
    pub = ckpt.load_state(tmp_path / "pub" / "checkpoints" / "latest.pt")["model"]
    priv = ckpt.load_state(tmp_path / "priv" / "checkpoints" / "latest.pt")["model"]
    assert priv["target.released"].item() == 1
    assert not torch.equal(pub["target.embedding"], priv["target.embedding"])  # noised: its own release
    assert json.loads((tmp_path / "priv" / "run.json").read_text())["privacy"]["steps"] == 1


def _bad(tmp_path, capsys, argv, message):
    assert main(["train", "--data", "digits", "--quiet", "--steps", "1", "--out", str(tmp_path / "new"),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ganvae: error: --init ") and message in err, err
    assert not (tmp_path / "new").exists()


def test_bad_init_is_one_line_and_exit_2(runs, tmp_path, capsys):
    public = str(runs / "public")
    _bad(tmp_path, capsys, ["--model", "vae", "--init", public], "a dcgan run, and this run trains vae")
    _bad(tmp_path, capsys, ["--model", "dcgan", "--image-size", "16", "--init", public, "--set", "model.d_norm=group"],
         "its images are 1x8x8, this run's are 1x16x16")
    _bad(tmp_path, capsys, ["--model", "dcgan", "--init", public, "--set", "model.d_width=16"],
         "networks differ from this run's")
    _bad(tmp_path, capsys, ["--model", "dcgan", "--init", public, "--dp-noise-multiplier", "1"],  # batch -> group
         "model.d_norm=group")
    _bad(tmp_path, capsys, ["--model", "dcgan", "--init", str(tmp_path)], "not a run folder")
    # a run on the very images a private run protects: its weights are not public
    _bad(tmp_path, capsys, ["--model", "dcgan", "--init", str(runs / "fresh"), "--dp-noise-multiplier", "1", "--set",
                            "model.d_norm=group"], "trained on digits, which holds the images this private run")


def test_same_images_names_shared_built_in_sources_and_the_same_path(tmp_path):
    from ganvae.api.init import _same_images
    (tmp_path / "imgs").mkdir()
    assert _same_images("mnist", "mnist") and _same_images("mnist-5k", "mnist")
    assert _same_images("shapes-edges", "shapes")
    assert not _same_images("digits", "mnist") and not _same_images("shapes", "faces")
    assert _same_images(f"folder:{tmp_path / 'imgs'}", str(tmp_path / "imgs" / ".." / "imgs"))
    assert not _same_images(f"folder:{tmp_path / 'imgs'}", f"folder:{tmp_path}")

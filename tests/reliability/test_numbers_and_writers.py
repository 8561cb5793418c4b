"""Numbers that do not fit (NaN, absurd sizes), checkpoints that would hold NaN, and two writers of one run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

import ganvae
from ganvae.cli import main
from ganvae.training import DivergenceError, TrainConfig, Trainer
from helpers import tiny_model
from reliability_util import cli, metrics_lines, one_line_error, start_train, wait_for

BAD = [
    (["--set", "model.beta=nan"], "vae", "model.beta: expected a finite number"),
    (["--set", "model.gp_weight=nan"], "dcgan", "model.gp_weight: expected a finite number"),
    (["--set", "train.ema_kimg=nan"], "dcgan", "train.ema_kimg: expected a finite number"),
    (["--set", "model.lr_g=nan"], "dcgan", "model.lr_g: expected a finite number"),
    (["--set", "model.lr=inf"], "vae", "model.lr: expected a finite number"),
    (["--set", "model.betas_g=[2,2]"], "dcgan", "model.betas_g: expected two numbers in [0, 1)"),
    (["--set", "train.ema_rampup=-1"], "dcgan", "train.ema_rampup: expected >= 0"),
    (["--set", "model.latent_dim=1000000000"], "dcgan", "model.latent_dim: expected 1 to 65536"),
    (["--set", "model.g_width=1000000", "--set", "model.max_width=1000000"], "dcgan", "needs about"),
    (["--image-size", "100000"], "dcgan", "image_size must be an integer from 4 to 4096"),
    (["--seed", str(2**70)], "dcgan", "train.seed"),
    (["--batch-size", "1"], "mlp-gan", "uses BatchNorm, which needs at least 2 images per batch"),
]


@pytest.mark.parametrize("args,model,message", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_values_that_cannot_work_are_one_line_and_exit_2(tmp_path, capsys, args, model, message):
    code = main(["train", "--model", model, "--data", "digits", "--steps", "2", "--quiet",
                 "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ganvae: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()  # refused before a folder was made


def test_a_checkpoint_or_export_never_holds_nan_weights(tmp_path):
    model = tiny_model("dcgan")
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    tr = Trainer(model, TrainConfig(steps=4, batch_size=16, tensorboard=False, report=False), images, None,
                 tmp_path, torch.device("cpu"))
    tr.train_step()
    with torch.no_grad():
        next(model.G.parameters()).fill_(float("nan"))  # the loss was finite, the update was not
    with pytest.raises(DivergenceError, match="no checkpoint was written yet") as e:
        tr.save_checkpoint()
    assert "NaN or infinite" in str(e.value) and "G." in str(e.value)
    assert not (tmp_path / "checkpoints" / "latest.pt").exists()


def test_a_diverging_run_keeps_its_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as e:
        ganvae.train("dcgan", "digits", out=out, steps=40, batch_size=16, progress=False,
                     set=["model.latent_dim=8", "model.g_width=8", "model.d_width=8", "model.lr_d=1e30",
                          "model.lr_g=1e30", "train.checkpoint_every=1", "train.report=false",
                          "train.tensorboard=false"])
    msg = str(e.value)
    named = [w.rstrip(";,.)") for w in msg.split() if ".pt" in w]
    assert named and all(Path(n).is_file() for n in named), msg  # only files that exist are named
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.isfinite(v).all() for v in state[part].values() if torch.is_tensor(v) and v.is_floating_point())


# --------------------------------------------------------------------------------------------- two writers
def test_a_second_writer_of_one_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    first = start_train(out)
    try:
        wait_for(lambda: metrics_lines(out) >= 1, what="the first run to train")
        for args in (["train", "--model", "dcgan", "--data", "digits", "--out", out, "--quiet"],
                     ["train", "--resume", out, "--steps", 100, "--quiet"],
                     ["train", "--model", "dcgan", "--data", "digits", "--out", out, "--overwrite", "--quiet"]):
            line = one_line_error(cli(*args))
            assert f"in use by process {first.pid}" in line, line
        assert first.poll() is None and (out / "config.yaml").is_file()  # --overwrite did not delete it
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    cfg = (out / "config.yaml").read_text()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len({r["step"] for r in lines}) == len(lines)  # one writer: no step logged twice
    assert "dcgan" in cfg


def test_two_runs_started_at_once_into_one_folder(tmp_path):
    out = tmp_path / "run"
    a = start_train(out, steps=30)
    time.sleep(0.5)
    b = start_train(out, steps=30)
    ra, rb = a.wait(timeout=120), b.wait(timeout=120)
    errs = [a.stderr.read(), b.stderr.read()]
    assert sorted([ra, rb]) == [0, 2], errs  # exactly one trained; the other was refused in one line
    refused = errs[[ra, rb].index(2)]
    assert "Traceback" not in refused and ("in use by process" in refused or "not empty" in refused), refused
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == sorted({r["step"] for r in lines})

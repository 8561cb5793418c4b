"""Full and read-only disks, an --out that cannot be a folder, damaged run files: one line, exit 2, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

from reliability_util import Tmpfs, can_mount, cli, one_line_error

TINY = ["--set", "model.latent_dim=8", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "train.tensorboard=false", "--set", "train.checkpoint_every=2"]


def _digest(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished run (4 steps of dcgan on digits), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("rel") / "run"
    cli("train", "--model", "dcgan", "--data", "digits", "--steps", 4, "--batch-size", 16, "--out", out, "--quiet",
        *TINY, check_rc=0)
    return out


@pytest.fixture
def disk(tmp_path, finished):
    why = can_mount()
    if why:
        pytest.skip(f"needs a tmpfs: {why}")
    try:
        fs = Tmpfs(tmp_path / "mnt", "16m")
    except PermissionError as e:
        pytest.skip(f"cannot mount a tmpfs here ({e})")
    shutil.copytree(finished, fs.path / "run")
    yield fs
    fs.close()


COMMANDS = {
    "resume": lambda run, tmp: ["train", "--resume", run, "--steps", 8, "--quiet"],
    "sample": lambda run, tmp: ["sample", run, "-n", 16],
    "report": lambda run, tmp: ["report", run],
    "eval": lambda run, tmp: ["eval", run, "--metrics", "fid", "--n", 50, "--no-baselines"],
}


@pytest.mark.parametrize("kind", ["full", "read-only"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_full_or_read_only_disk_is_one_line_and_keeps_every_file(disk, tmp_path, kind, command):
    run = disk.path / "run"
    before = _digest(run)
    if kind == "full":
        disk.fill()
    else:
        disk.remount_ro()
    p = cli(*COMMANDS[command](run, tmp_path))
    line = one_line_error(p)
    assert ("No space left on device" if kind == "full" else "Read-only file system") in line, line
    assert str(run) in line  # names the path
    after = _digest(run)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing good was lost or changed
    assert not [k for k in after if k.endswith(".tmp")]  # and no half-written file was left


@pytest.mark.parametrize("make", ["file", "loop", "through-file"])
def test_out_that_cannot_be_a_folder(tmp_path, make):
    if make == "file":
        out = tmp_path / "f"
        out.write_text("x")
    elif make == "loop":
        out = tmp_path / "loop"
        os.symlink(out, out)
    else:
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "run"
    p = cli("train", "--model", "dcgan", "--data", "digits", "--steps", 2, "--out", out, "--quiet", *TINY)
    assert str(out) in one_line_error(p)


# ----------------------------------------------------------------------------------------- damaged files
def _copy(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


@pytest.mark.parametrize("damage", ["empty", "tensor", "no-model", "other-model", "negative-step"])
def test_resume_refuses_a_damaged_checkpoint_in_one_line(finished, tmp_path, damage):
    run = _copy(finished, tmp_path)
    path = run / "checkpoints" / "latest.pt"
    state = torch.load(path, weights_only=True)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "tensor":
        torch.save(torch.zeros(3), path)
    elif damage == "no-model":
        torch.save({k: v for k, v in state.items() if k != "model"}, path)
    elif damage == "other-model":
        state["model"] = {"G.weight": torch.zeros(2, 2), **{k: v for k, v in state["model"].items() if "G." not in k}}
        torch.save(state, path)
    else:
        state["step"] = -5
        torch.save(state, path)
    line = one_line_error(cli("train", "--resume", run, "--steps", 8, "--quiet"))
    assert "latest.pt" in line


def test_damaged_logs_are_skipped_and_counted(finished, tmp_path):
    run = _copy(finished, tmp_path)
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b"\xff\xfe not utf-8 \x00\n{half a line\n")
    p = cli("info", run, check_rc=0)
    assert "skipped 2 damaged lines" in p.stderr and "Traceback" not in p.stderr
    assert "steps:   4 of 4" in p.stdout
    p = cli("report", run, check_rc=0)
    assert "skipped 2 damaged lines" in p.stderr
    assert "2 damaged lines" in (run / "report.html").read_text()


def test_damaged_run_json_is_one_line(finished, tmp_path):
    run = _copy(finished, tmp_path)
    (run / "run.json").write_text("{not json")
    for cmd in ("info", "report"):
        assert "run.json" in one_line_error(cli(cmd, run))


@pytest.mark.parametrize("args", [["audit", "--seed", "-1"], ["sample", "--seed", "-1"],
                                  ["eval", "--seed", str(2**70)]], ids=lambda a: a[0])
def test_bad_seed_is_one_line(finished, args):
    one_line_error(cli(args[0], finished, *args[1:]))


def test_resume_refuses_a_config_without_its_train_section(finished, tmp_path):
    run = _copy(finished, tmp_path)
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg[:cfg.index("train:")])
    assert "train:" in one_line_error(cli("train", "--resume", run, "--steps", 8, "--quiet"))
    assert "train:" not in (run / "config.yaml").read_text()  # not rewritten


@pytest.mark.parametrize("edit", ["shape", "latent_dim", "channels", "huge-width"])
def test_an_export_that_does_not_fit_its_config_is_one_line(finished, tmp_path, edit):
    run = _copy(finished, tmp_path)
    path = run / "model" / "config.json"
    meta = json.loads(path.read_text())
    if edit == "shape":
        from safetensors.torch import load_file, save_file
        w = load_file(run / "model" / "model.safetensors")
        key = next(k for k in w if k.endswith("weight"))
        w[key] = torch.zeros(3, 3)
        save_file(w, run / "model" / "model.safetensors")
    elif edit == "latent_dim":
        meta["config"]["latent_dim"] = 9
    elif edit == "channels":
        meta["config"]["channels"] = 0
    else:
        meta["config"]["g_width"] = 10**7
    path.write_text(json.dumps(meta))
    for cmd in (["sample", run, "-n", 2, "--out", tmp_path / "g.png"], ["info", run]):
        p = cli(*cmd)
        if cmd[0] == "info":  # info reads no weights
            assert p.returncode == 0
        else:
            one_line_error(p)

"""A newcomer's first hour: the README's commands run in order, one name per idea across subcommands, what
``ganvae models`` lists, labelled grids, class-specific sample names, file modes.

The README test extracts every ``ganvae ...`` line of the "Quick start" and "Command line" code blocks (with
their subsections) and runs them in order, in-process, in a temporary working directory, shrunk: see
:func:`shrink` for the rewrites and :data:`SKIPPED` for what is not run and why.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganvae import api, cli
from ganvae.cli import main
from ganvae.images import make_grid
from ganvae.util.files import atomic_write_bytes
from helpers import tiny_set, train_tiny

README = Path(__file__).resolve().parents[1] / "README.md"

# Commands not run here, and why (matched on the words of the command).
SKIPPED = {
    "serve": "starts a web server that runs until stopped (tests/test_serve.py covers it)",
    "--compile": "torch.compile takes minutes on a CPU (benchmarks/gpu_check.sh covers it)",
    "torchrun": "several processes; tests/test_distributed.py covers it",
    "make test": "the whole test suite",
}
# `make demo` is the Makefile's training command; here the same command, shrunk like the others.
MAKE_DEMO = "ganvae train --model dcgan --data mnist --steps 3000 --max-minutes 2 --out runs/demo --overwrite"


def build_parser():
    return cli.build_parser()


def readme_commands() -> list[list[str]]:
    """The words of every command line in the README's Quick start and Command line code blocks, in order."""
    text = README.read_text()
    start = text.index("\n## Quick start")
    end = text.index("\n## ", text.index("\n## Command line") + 1)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("ganvae", "make", "torchrun"):
                commands.append(words)
    return commands


def skip_reason(words: list[str]) -> str | None:
    joined = " ".join(words)
    return next((why for key, why in SKIPPED.items() if key in words or joined.startswith(key)), None)


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def shrink(words: list[str], photos: Path) -> list[str]:
    """One README command made tiny and fast: mnist -> digits (mnist-5k with --init), ~/photos -> a folder of 80
    small PNGs, --steps N -> N // 1000 (keeps a resume's target above the first run's), -n/--n at most 32, --k 8,
    --eval-every KIMG -> KIMG / 1000 with 32 samples per evaluation, data.n at most 300, --image-size 16;
    every new training run gets tiny widths (tests/helpers.tiny_set, where the README does not set the same key)
    and --quiet; eval gets --n 32 when it has none."""
    w = list(words[1:])
    for i, x in enumerate(w):
        prev = w[i - 1] if i else ""
        if prev == "--data" and x in ("mnist", "mnist-5k"):
            # a private run from --init keeps images other than its public run's digits (shared ones are refused)
            w[i] = "mnist-5k" if "--init" in w else "digits"
        elif x == "~/photos":  # after --data, or a data command's SOURCE
            w[i] = str(photos)
        elif prev == "--steps":
            w[i] = str(max(1, int(x) // 1000))
        elif prev in ("-n", "--n"):
            w[i] = str(min(int(x), 32))
        elif prev == "--k":
            w[i] = "8"
        elif prev == "--image-size":
            w[i] = "16"
        elif prev == "--eval-every":
            w[i] = str(float(x) / 1000)
        elif prev == "--set" and x.startswith("data.n="):
            w[i] = f"data.n={min(int(x.split('=')[1]), 300)}"
    if w[0] == "train" and "--resume" not in w and "--config" not in w:
        given = {s.split("=")[0] for s in w[1:] if "=" in s}
        tiny = [s for s in tiny_set(_option(w, "--model") or "dcgan", eval_n=32) if s.split("=")[0] not in given]
        w[1:1] = [a for s in tiny for a in ("--set", s)]
        w += ["--quiet"] + ([] if "--steps" in w else ["--steps", "2"])
    if w[0] == "eval" and "--n" not in w and "-n" not in w:
        w += ["--n", "32"]
    return w


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _photos(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(80):  # the 10% hold-out leaves a batch of 64
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_readme_commands_run_in_order(workdir, capsys):
    photos = _photos(workdir / "photos")
    commands = readme_commands()
    assert any(c[:2] == ["ganvae", "models"] for c in commands) and len(commands) > 30
    ran, skipped, t0 = [], [], time.monotonic()
    for words in commands:
        if words[:2] == ["make", "demo"]:
            words = shlex.split(MAKE_DEMO)
        why = skip_reason(words)
        if why:
            skipped.append((" ".join(words), why))
            continue
        argv = shrink(words, photos)
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"README command failed (exit {rc}): {' '.join(words)}\nran: {argv}\n{out.err[-2000:]}"
        ran.append(" ".join(words))
    print(f"ran {len(ran)} README commands in {time.monotonic() - t0:.1f} s; skipped {len(skipped)}")
    assert {why for _, why in skipped} <= set(SKIPPED.values())
    # what the README's comments promise
    for path in ("runs/demo/sample_seed0.png", "runs/mnist-cgan/sample_seed0_class7.png",
                 "runs/mnist-cgan/sample_seed0_per_class.png", "runs/shapes-tcvae/traverse_seed0.png",
                 "runs/shapes-tcvae/interp_seed1-2.gif", "runs/mnist-best/best", "grid.png", "samples.npz",
                 "pics/sample_0001.png", "t.png"):
        assert (workdir / path).exists(), path


def test_every_readme_command_parses_unshrunk():
    """The README's own spelling (before shrinking) is accepted by the parser, including the skipped commands."""
    parser = build_parser()
    for words in readme_commands():
        if words[0] == "ganvae":
            parser.parse_args(words[1:])
        elif words[0] == "torchrun":
            parser.parse_args(words[words.index("ganvae") + 1:])


# ----------------------------------------------------------------------------- ganvae models


def test_models_lists_every_registered_name_with_one_line(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert main(["list"]) == 0
    assert capsys.readouterr().out == out
    lines = out.splitlines()
    for registry in (api.MODELS, api.GAN_OBJECTIVES, api.SOURCES, api.METRICS):
        for name in registry.names():
            hits = [ln for ln in lines if ln.split()[:1] == [name]]
            assert len(hits) == 1, name
            assert len(hits[0].split()) > 2, f"{name}: no summary"
    assert "--model" in out and "--objective" in out and "--data" in out and "--metrics" in out


# ----------------------------------------------------------------------------- one name per idea


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_device_option_defaults_to_auto():
    seen = []
    for name, sub in _subparsers().items():
        for a in sub._actions:
            if "--device" in a.option_strings and name != "train":  # train's default is its config's: auto
                assert a.default == "auto", name
                assert "auto" in a.help, name
                seen.append(name)
    assert {"sample", "eval", "audit", "traverse", "interpolate"} <= set(seen)
    assert api.TrainConfig().device == "auto"


def test_shared_option_names():
    subs = _subparsers()
    opts = {name: {o for a in sub._actions for o in a.option_strings} for name, sub in subs.items()}
    for cmd in ("eval", "audit"):
        assert {"--feature-net", "--n", "-n"} <= opts[cmd], cmd
    assert "--columns" in opts["traverse"] and "--frames" in opts["interpolate"]
    for cmd in ("traverse", "interpolate", "audit"):
        help_text = subs[cmd].format_help()
        assert "--steps" not in help_text and "--features" not in help_text, cmd
    parse = build_parser().parse_args
    assert parse(["audit", "r", "--n", "5"]).n == 5
    assert parse(["audit", "r", "--n-samples", "6"]).n == 6
    assert parse(["audit", "r", "--feature-net", "pixels"]).feature_net == "pixels"
    assert parse(["traverse", "r", "--columns", "4"]).columns == 4
    assert parse(["interpolate", "r", "--frames", "4"]).frames == 4
    assert parse(["traverse", "r"]).columns == 9 and parse(["interpolate", "r"]).frames == 10


@pytest.mark.parametrize("argv, dest, value", [
    (["audit", "r", "--features", "pixels"], "feature_net", "pixels"),
    (["traverse", "r", "--steps", "5"], "columns", 5),
    (["interpolate", "r", "--steps", "6"], "frames", 6),
])
def test_old_option_names_still_work(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_unit_of_every_counting_option_is_in_its_help():
    subs = _subparsers()
    helps = {(c, o): a.help for c, sub in subs.items() for a in sub._actions for o in a.option_strings}
    for key, unit in {("train", "--steps"): "steps", ("train", "--eval-every"): "thousand images",
                      ("train", "--max-minutes"): "time", ("traverse", "--range"): "standard deviations",
                      ("traverse", "--columns"): "images per row", ("interpolate", "--frames"): "images",
                      ("interpolate", "--ms"): "milliseconds", ("eval", "--n"): "images",
                      ("audit", "--n"): "images", ("sample", "--n"): "images"}.items():
        assert unit in helps[key], key


# ----------------------------------------------------------------------------- sampling conditional models


@pytest.fixture(scope="module")
def cgan(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("cli-consistency") / "cgan", "cdcgan", steps=2).path


def test_conditional_sample_without_labels_says_what_it_does(cgan, capsys):
    assert "uniformly at random from --seed" in " ".join(_subparsers()["sample"].format_help().split())
    assert main(["sample", str(cgan), "-n", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "classes drawn uniformly at random from seed 3" in out
    assert "uniformly at random from ``seed``" in " ".join(api.load(cgan).sample.__doc__.split())


def test_class_samples_get_their_own_default_names(cgan, capsys):
    for argv, name in ((["--class", "1"], "sample_seed0_class1.png"), (["--class", "2"], "sample_seed0_class2.png"),
                       (["--per-class", "2"], "sample_seed0_per_class.png"), ([], "sample_seed0.png")):
        assert main(["sample", str(cgan), "-n", "4", *argv]) == 0
        assert f"{cgan / name}" in capsys.readouterr().out
        assert (cgan / name).is_file()


def test_per_class_grid_has_row_labels(cgan):
    per_class = Image.open(cgan / "sample_seed0_per_class.png")
    classes = api.load(cgan).config.num_classes
    plain = make_grid(torch.zeros(2 * classes, 1, 8, 8), nrow=2)
    assert per_class.height == plain.height and per_class.width > plain.width  # a left margin of labels


def test_traverse_labels_rows_and_enlarges_small_tiles(cgan, capsys):
    out = cgan / "t.png"
    assert main(["traverse", str(cgan), "--dims", "0-2", "--columns", "3", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.width > 3 * 64 and img.height > 3 * 64  # 8 px tiles enlarged to 64, plus label margins
    assert "3 dimensions x 3 columns" in capsys.readouterr().out


# ----------------------------------------------------------------------------- grids, files


def test_make_grid_row_and_column_labels():
    x = torch.rand(24, 1, 28, 28)
    plain = make_grid(x, nrow=12)
    labelled = make_grid(x, nrow=12, col_labels=["generated", "nearest training", "nearest held-out"])
    assert labelled.height > plain.height  # a top margin of labels
    assert labelled.width >= plain.width  # tiles enlarged until each word fits its column
    rows = make_grid(torch.rand(6, 3, 8, 8), nrow=3, row_labels=["0 square", "1 ellipse"])
    assert rows.mode == "RGB" and rows.width > make_grid(torch.rand(6, 3, 8, 8), nrow=3).width
    assert rows.getpixel((0, 0)) == (64, 64, 64)  # the margins are the grid's grey
    arr = np.asarray(labelled)
    assert (arr[: labelled.height - plain.height] > 200).any()  # white text drawn


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600

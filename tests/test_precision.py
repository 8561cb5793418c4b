"""bf16 detection on the CPU, ``train.precision=auto``, and the one warning for bf16 where it is emulated.

Every answer of the detector is forced here (``GANVAE_CPU_BF16``, or the probes monkeypatched), so the tests say
the same on any machine.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.training import config as train_config
from ganvae.training.config import resolve_precision
from ganvae.util import cpu
from ganvae.util.device import bf16_native, bf16_pays
from helpers import set_args, tiny_set, train_tiny

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """No forced answer unless a test sets one; the once-per-process warning not given yet."""
    monkeypatch.delenv(cpu.ENV, raising=False)
    monkeypatch.setattr(train_config, "_WARNED", set())


def bf16_warnings(record) -> list[str]:
    return [str(w.message) for w in record if str(w.message).startswith("train.precision=bf16")]


# ------------------------------------------------------------------ detection
def test_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu.cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}  # the first processor's line
    assert cpu.cpu_flags(tmp_path / "missing") == set()
    assert cpu.from_flags(cpu.cpu_flags(info)) == "avx512_bf16"
    assert cpu.from_flags({"amx_bf16", "amx_tile", "avx512_bf16"}) == "amx"
    assert cpu.from_flags({"amx_bf16"}) is None  # no tile support from the kernel: no AMX
    assert cpu.from_flags({"avx2", "avx512f"}) is None


@pytest.mark.parametrize("flags, probe, answer", [
    (set(), None, None), ({"avx512_bf16"}, None, "avx512_bf16"), (set(), "amx", "amx"),
    ({"avx512_bf16"}, "amx", "amx"), ({"amx_bf16", "amx_tile"}, "avx512_bf16", "amx")])
def test_detection_takes_the_better_of_flags_and_torch(monkeypatch, flags, probe, answer):
    monkeypatch.setattr(cpu, "cpu_flags", lambda path=cpu.CPUINFO: flags)
    monkeypatch.setattr(cpu, "from_torch", lambda: probe)
    cpu.detected.cache_clear()
    try:
        assert cpu.cpu_bf16() == answer
    finally:
        cpu.detected.cache_clear()


@pytest.mark.parametrize("value, answer", [("0", None), ("none", None), ("1", "avx512_bf16"),
                                           ("avx512_bf16", "avx512_bf16"), ("amx", "amx"), (" AMX ", "amx")])
def test_the_environment_forces_the_answer(monkeypatch, value, answer):
    monkeypatch.setenv(cpu.ENV, value)
    assert cpu.cpu_bf16() == answer


def test_a_nonsense_forced_answer_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "maybe")
    with pytest.raises(GanvaeError, match=r"^GANVAE_CPU_BF16='maybe': expected 0 .*, 1 or avx512_bf16, or amx$"):
        cpu.cpu_bf16()


@pytest.mark.parametrize("forced, native, pays, auto", [("0", False, False, "fp32"), ("1", True, True, "bf16"),
                                                        ("amx", True, True, "bf16")])
def test_auto_picks_bf16_only_on_cpus_with_bf16_instructions(monkeypatch, forced, native, pays, auto):
    monkeypatch.setenv(cpu.ENV, forced)
    assert bf16_native(CPU) is native and bf16_pays(CPU) is pays
    assert resolve_precision("auto", CPU) == auto
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 without the instructions warns: tested below
        assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


# ------------------------------------------------------------------ the warning
def test_bf16_without_the_instructions_warns_once(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "0")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            assert resolve_precision("bf16", CPU) == "bf16"
        resolve_precision("auto", CPU)
    got = bf16_warnings(record)
    assert len(got) == 1, got
    assert "this CPU has no AVX512-BF16 or AMX instructions" in got[0] and "--precision fp32" in got[0]


@pytest.mark.parametrize("forced", ["1", "amx"])
def test_bf16_with_the_instructions_does_not_warn(monkeypatch, forced):
    monkeypatch.setenv(cpu.ENV, forced)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resolve_precision("bf16", CPU)
    assert bf16_warnings(record) == []


def test_cli_warns_in_one_line_and_run_json_records_the_precision(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(cpu.ENV, "0")
    out = tmp_path / "r"
    code = main(["train", "--model", "dcgan", "--data", "digits", "--steps", "2", "--batch-size", "16",
                 "--precision", "bf16", "--out", str(out), "--quiet", *set_args(tiny_set("dcgan"))])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "train.precision=bf16" in ln]
    assert len(lines) == 1 and lines[0].startswith("ganvae: warning: train.precision=bf16: this CPU has no"), err
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"


@pytest.mark.parametrize("forced, ran", [("0", "fp32"), ("amx", "bf16")])
def test_auto_is_kept_in_the_config_and_resolved_in_run_json(tmp_path, monkeypatch, forced, ran):
    monkeypatch.setenv(cpu.ENV, forced)
    run = train_tiny(tmp_path / "r", steps=2, precision="auto")
    assert json.loads((run.path / "run.json").read_text())["precision"] == ran
    assert "precision: auto" in (run.path / "config.yaml").read_text()


def test_cli_offers_auto():
    from ganvae.cli import build_parser

    assert build_parser().parse_args(["train", "--precision", "auto"]).precision == "auto"
    with pytest.raises(GanvaeError, match=r"train.precision 'fp16': expected one of auto, fp32, bf16"):
        train_config.TrainConfig(precision="fp16").validate()

"""CUDA graphs of the training step (``ganvae.training.graphs``), on the CPU.

The decisions (when to capture, what stands in the way) are pure Python. The step itself runs here through the
emulated graph (the capture runs the step once and undoes it, each replay reruns it into the graph's output): it
exercises everything around a real capture (static batches, warm-up undone, the output layout, the finite check,
the EMA, a refused capture) and must match the eager loop bit for bit. ``benchmarks/gpu_graphs.py`` checks the
real CUDA graph against the eager step on a GPU.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.training import TrainConfig, Trainer, TrainerPlugin
from ganvae.training import graphs
from ganvae.training.graphs import SMALL_MODEL, GraphedStep, blockers, decide, draw_plan
from helpers import assert_same_state, set_args, tiny_model, tiny_set, train_tiny

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


# ------------------------------------------------------------------ decisions
def test_decide_gives_each_answer():
    # want: None (auto), True (insist), False (never)
    assert decide(False, "cuda", [], 10) == (False, "off (train.cuda_graphs=false)")
    assert decide(None, "cpu", [], 10) == (False, "off (not a CUDA device: cpu)")
    assert decide(True, "cpu", [], 10)[0] is False  # the config refuses true+cpu; an export on the CPU just runs
    assert decide(None, "cuda", ["a", "b"], 10) == (False, "off (a; b)")
    assert decide(None, "cuda", [], 10) == (True, "on")
    assert decide(None, "cuda", [], SMALL_MODEL + 1)[1].startswith("off (the model has 50M parameters; auto")
    assert decide(True, "cuda", [], SMALL_MODEL + 1) == (True, "on")
    with pytest.raises(GanvaeError, match=r"^train.cuda_graphs=true: the training step cannot be captured: a; b "
                                          r"\(set it to null or false\)$"):
        decide(True, "cuda", ["a", "b"], 10)


class Wraps(TrainerPlugin):
    name = "wraps"

    def wrap_phases(self, phases, optimizers):
        return phases, optimizers


class Watches(TrainerPlugin):
    name = "watches"

    def after_step(self, trainer):
        return None


class WrapsButSaysOk(Wraps):
    cuda_graphs_ok = True


def fake_trainer(**over):
    t = dict(plugins=[], world=SimpleNamespace(active=False, size=1), cfg=SimpleNamespace(compile=False),
             stream=SimpleNamespace(binarize=None), model=SimpleNamespace())
    t.update(over)
    return SimpleNamespace(**t)


def test_blockers_name_what_stands_in_the_way():
    assert blockers(fake_trainer()) == []
    assert blockers(fake_trainer(plugins=[Watches(), WrapsButSaysOk()])) == []  # around the step: fine
    assert blockers(fake_trainer(plugins=[Wraps()])) == ["the wraps plugin changes the step"]
    assert blockers(fake_trainer(world=SimpleNamespace(active=True, size=2))) == [
        "data-parallel training over 2 processes"]
    assert blockers(fake_trainer(cfg=SimpleNamespace(compile=True))) == [
        "train.compile (torch.compile makes its own graphs)"]
    assert blockers(fake_trainer(stream=SimpleNamespace(binarize=torch.Generator()))) == [
        "data.binarize (its draws are made in the data stream)"]
    assert blockers(fake_trainer(model=SimpleNamespace(cuda_graphs_ok=False))) == [
        "the model's step cannot be captured"]


def test_draw_plan_follows_the_eager_loop():
    ph = lambda repeats, real=True, reuse=False: SimpleNamespace(repeats=repeats, real_data=real,  # noqa: E731
                                                                 reuse_batch=reuse)
    assert draw_plan([ph(2), ph(1, real=False)]) == [["draw", "draw"], ["none"]]
    assert draw_plan([ph(1), ph(2, reuse=True)]) == [["draw"], ["reuse", "reuse"]]
    assert draw_plan([ph(2, reuse=True)]) == [["draw", "reuse"]]


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("value", ["true", "on"])  # YAML reads on as true
def test_insisting_without_cuda_is_one_clear_line(tmp_path, capsys, value):
    with pytest.raises(GanvaeError, match=r"^train.cuda_graphs=true needs a CUDA device; this run is on cpu"):
        TrainConfig(cuda_graphs=True, device="cpu").validate()
    code = main(["train", "--model", "dcgan", "--data", "digits", "--steps", "1", "--out", str(tmp_path / "r"),
                 "--quiet", *set_args(tiny_set("dcgan")), "--set", f"train.cuda_graphs={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["ganvae: error: train.cuda_graphs=true needs a CUDA device; this run is on cpu "
                                 "(--set train.cuda_graphs=null: graphs where they apply, nothing elsewhere)"], err
    assert not (tmp_path / "r").exists()


def test_on_the_cpu_auto_is_a_no_op_and_run_json_says_so(tmp_path):
    run = train_tiny(tmp_path / "r", steps=2)
    info = json.loads((run.path / "run.json").read_text())
    assert info["cuda_graphs"] == "off (not a CUDA device: cpu)" and info["precision"] == "fp32"


# ------------------------------------------------------------------ the step, emulated
def make(name: str, graphed: bool, insist: bool = True, paired: bool = True, **kw) -> Trainer:
    model = tiny_model(name, **kw)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (64,), generator=g)
    images_b = None  # translation models: a second domain, paired row by row or drawn in its own order
    if model.translation:
        images_b, labels = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8), None
    tr = Trainer(model, TrainConfig(batch_size=16, tensorboard=False, report=False, device="cpu", seed=3),
                 images, labels, tempfile.mkdtemp(), torch.device("cpu"), images_b=images_b, paired=paired)
    tr.defer_finite_check = True  # as on CUDA: the graphed step needs it
    if graphed:
        tr.graphs = GraphedStep(tr, insist, emulate=True)
    return tr


def same_steps(a: Trainer, b: Trainer, steps: int) -> None:
    for _ in range(steps):
        ta, tb = a.train_step(), b.train_step()
        assert list(ta) == list(tb)
        for k in ta:
            assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    assert a.images_seen == b.images_seen and a._images_this_step == b._images_this_step
    assert_same_state(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("name, kw", [("dcgan", {"d_steps": 2}), ("vae", {}), ("cdcgan", {"augment": "translation"}),
                                      ("dcgan", {"augment": "ada", "ada_p": 0.5})])
def test_graphed_step_matches_the_eager_step_bit_for_bit(name, kw):
    eager, graphed = make(name, False, **kw), make(name, True, **kw)
    same_steps(eager, graphed, 3)
    assert graphed.graphs.graph is not None and graphed.graphs.disabled is None
    assert graphed._first_bad and all(int(v) == -1 for v in graphed._first_bad.values())  # the finite check ran


@pytest.mark.parametrize("name, paired, kw", [("pix2pix", True, {"g_dropout": 0.0}), ("cyclegan", False, {})])
def test_graphed_translation_step_refills_domain_b(name, paired, kw):
    """Each replay must see this step's B images (Batch.b), not the ones captured at the first step."""
    eager, graphed = make(name, False, paired=paired, **kw), make(name, True, paired=paired, **kw)
    same_steps(eager, graphed, 3)
    assert graphed.graphs.graph is not None and graphed.graphs.static[0].b is not None


def test_dropout_in_the_step_keeps_it_eager():
    """pix2pix's dropout draws from torch's global RNG: auto leaves its step eager and says why."""
    tr = make("pix2pix", False)
    assert "the model's step cannot be captured" in blockers(tr)
    assert blockers(make("pix2pix", False, g_dropout=0.0)) == []


def test_loading_a_state_captures_again_and_continues_exactly():
    eager, graphed = make("dcgan", False), make("dcgan", True)
    same_steps(eager, graphed, 2)
    other = make("dcgan", False)
    other.train_step()
    state = other.state_dict()  # (copies: an optimizer keeps the tensors it is given)
    graphed.load_state_dict(copy.deepcopy(state))  # new optimizer tensors: the old graph is dropped
    eager.load_state_dict(copy.deepcopy(state))
    assert graphed.graphs.graph is None
    same_steps(eager, graphed, 2)


def test_the_finite_check_still_finds_a_bad_step():
    tr = make("vae", True)
    tr.train_step()
    with torch.no_grad():
        next(tr.model.parameters()).fill_(float("nan"))
    tr.train_step()
    with pytest.raises(Exception, match="became non-finite at step 2"):
        tr.check_finite()


def test_a_refused_capture_warns_once_and_trains_eagerly_from_the_same_state(monkeypatch):
    calls = []

    def fails(self, body, tr):
        calls.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs._Emulated, "capture", fails)
    eager, graphed = make("dcgan", False), make("dcgan", True, insist=False)
    with pytest.warns(UserWarning, match=r"train.cuda_graphs: capturing the training step failed \(RuntimeError: "
                                         r"operation not permitted"):
        same_steps(eager, graphed, 1)
    same_steps(eager, graphed, 2)
    assert calls == [1] and graphed.cuda_graphs.startswith("off (capturing the training step failed")
    on = make("dcgan", True, insist=True)
    with pytest.raises(GanvaeError, match=r"^train.cuda_graphs=true: capturing the training step failed"):
        on.train_step()


def test_the_per_phase_host_sync_refuses_graphs():
    tr = make("vae", True, insist=False)
    tr.defer_finite_check = False
    with pytest.warns(UserWarning, match="the finite check after every phase syncs the host"):
        tr.train_step()
    assert tr.step == 1 and tr.graphs.disabled


# ------------------------------------------------------------------ the GPU benchmark, on the CPU
def test_gpu_graphs_benchmark_runs_its_cpu_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.setattr(sys, "argv", ["gpu_graphs.py", "--cpu-smoke", "--results", str(tmp_path / "g.md")])
    import gpu_graphs

    assert gpu_graphs.main() == 0
    text = (tmp_path / "out" / "gpu-graphs.md").read_text()
    assert "| dcgan-28 | fp32 | True | 0.00e+00 |" in text  # the emulated graph: no difference at all
    assert "| dcgan-28 | 8 | fp32 | on |" in text and "## Targets" in text
    rows = [json.loads(x) for x in (tmp_path / "out" / "gpu-graphs.jsonl").read_text().splitlines()]
    assert any(r.get("graphed") for r in rows) and all("error" not in r for r in rows)
    assert gpu_graphs.peak_bf16("NVIDIA H200") == 989.0 and gpu_graphs.peak_bf16("NVIDIA H100 PCIe") == 756.0
    assert gpu_graphs.peak_bf16("Tesla T4") is None

"""The export a newcomer takes away: inference-only weights, old full exports, ONNX/TorchScript graphs, the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganvae
from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.export import GRAPHS, check_graph_format, export_graph, load_model, save_model
from ganvae.training import checkpoint as ckpt
from helpers import tiny_model, train_tiny

OLD = Path(__file__).parent / "fixtures" / "old_layout"


def _tops(keys) -> set[str]:
    return {k.split(".", 1)[0] for k in keys}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A tiny dcgan run on digits (EMA on), with one eval.jsonl score written by hand."""
    return train_tiny(tmp_path_factory.mktemp("export") / "gan", "dcgan", steps=3).path


# ------------------------------------------------------------------------------ inference-only export
def test_default_export_holds_only_the_generator_and_full_keeps_d(tmp_path):
    m = tiny_model("dcgan", r1_gamma=1.0)  # R1 adds a top-level training counter (d_steps_done): not inference
    save_model(m, tmp_path / "inf")
    save_model(m, tmp_path / "full", inference_only=False)
    inf, full = load_file(tmp_path / "inf" / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert _tops(inf) == {"G"} and _tops(full) == {"G", "D", "d_steps_done"}
    assert set(inf) == {k for k in m.state_dict() if k.startswith("G.")}
    size = {f: (tmp_path / f / "model.safetensors").stat().st_size for f in ("inf", "full")}
    d_bytes = sum(v.numel() * v.element_size() for k, v in m.state_dict().items() if k.startswith("D."))
    assert size["full"] - size["inf"] >= d_bytes > 0  # the inference export is smaller by D at least
    meta_inf = json.loads((tmp_path / "inf" / "config.json").read_text())
    meta_full = json.loads((tmp_path / "full" / "config.json").read_text())
    assert meta_inf["parts"] == ["G"] and meta_inf["inference_only"] is True
    assert set(meta_full["parts"]) == {"G", "D", "d_steps_done"} and meta_full["inference_only"] is False
    for folder in ("inf", "full"):  # both load and sample the same images
        torch.testing.assert_close(load_model(tmp_path / folder).sample(4, seed=1), m.sample(4, seed=1), rtol=0, atol=0)
    assert load_model(tmp_path / "full").has_discriminator


def test_vae_export_keeps_encoder_and_a_learned_likelihood(tmp_path):
    m = tiny_model("vae", likelihood="gaussian")  # a learned sigma: needed for the ELBO
    assert m.inference_modules() == ["decoder", "encoder", "likelihood"]
    save_model(m, tmp_path / "model")
    assert _tops(load_file(tmp_path / "model" / "model.safetensors")) == {"encoder", "decoder", "likelihood"}
    v = load_model(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(v.reconstruct(x), m.eval().reconstruct(x))
    assert tiny_model("vae-gan").inference_modules() == ["decoder", "encoder"]  # its D stays out


def test_old_full_exports_still_load_with_their_discriminator(tmp_path):
    run = shutil.copytree(OLD / "cdcgan", tmp_path / "cdcgan")
    meta = json.loads((run / "model" / "config.json").read_text())
    assert "parts" not in meta and "D" in _tops(load_file(run / "model" / "model.safetensors"))
    m = ganvae.load(run)
    assert m.has_discriminator and "parts" not in m.meta
    logits = m.discriminate(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    # the D in it is the trained one (the checkpoint's), not a fresh initialisation
    state = ckpt.load_state(run / "checkpoints" / "latest.pt")["model"]
    assert torch.equal(m.state_dict()["D.net.head.weight"], state["D.net.head.weight"])


def test_a_model_from_an_inference_export_refuses_d_clearly(tmp_path):
    save_model(tiny_model("mlp-gan"), tmp_path / "model")
    m = ganvae.load(tmp_path)
    assert m.meta["parts"] == ["G"] and m.has_discriminator is False
    assert type(m).has_discriminator and tiny_model("mlp-gan").has_discriminator  # the class is untouched
    with pytest.raises(GanvaeError, match="discriminator is not in it") as e:
        m.discriminate(torch.rand(2, 1, 8, 8))
    assert "\n" not in str(e.value) and "inference_only=False" in str(e.value)
    with pytest.raises(GanvaeError, match="inference-only export"):  # its random D must not be saved as real
        save_model(m, tmp_path / "again", inference_only=False)
    save_model(m, tmp_path / "again")  # an inference export of it is fine
    # the leakage audit skips the white-box D attack instead of scoring with random weights
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 1, 8, 8, generator=gen) * 255).to(torch.uint8)
    held = (torch.rand(40, 1, 8, 8, generator=gen) * 255).to(torch.uint8)
    r = ganvae.audit(m, data=(train, held), n_samples=60, features="pixels", write=False, log=None)
    assert "d_logit" not in r["attacks"] and {"mc_pixels", "nn_pixels"} <= set(r["attacks"])


def test_a_damaged_inference_export_is_one_line(tmp_path):
    save_model(tiny_model("dcgan"), tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    meta = json.loads(path.read_text())
    for parts, match in ((["G", "D"], "missing"), (["encoder"], "unexpected"), ("G", "parts")):
        path.write_text(json.dumps({**meta, "parts": parts}))
        with pytest.raises(GanvaeError, match=match):
            load_model(tmp_path)


# ------------------------------------------------------------------------------ ONNX / TorchScript
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fmt", sorted(GRAPHS))
@pytest.mark.parametrize("name", ["dcgan", "vae", "cdcgan", "cvae"])
def test_graph_round_trip_matches_the_model(name, fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    save_model(tiny_model(name), tmp_path / "model")
    m = load_model(tmp_path)
    path = export_graph(m, tmp_path / "model", fmt, log=None)
    assert path == tmp_path / "model" / GRAPHS[fmt]
    z = m.latent(5, torch.Generator().manual_seed(3), **({"labels": torch.tensor([0, 1, 2, 0, 1])}
                                                          if m.conditional else {}))
    assert z.shape == (5, 8 + m.conditional)
    with torch.no_grad():
        want = m.decode_latent(z).clamp(0, 1)
    if fmt == "onnx":
        import onnxruntime
        got = torch.from_numpy(onnxruntime.InferenceSession(str(path)).run(["images"], {"z": z.numpy()})[0])
    else:
        got = torch.jit.load(str(path))(z)
    assert got.shape == (5, 1, 8, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(want, m.sample(5, seed=3, **({"labels": [0, 1, 2, 0, 1]} if m.conditional else {})),
                               rtol=0, atol=1e-6)  # the same images sample() gives for those codes
    assert f"`{GRAPHS[fmt]}`" in (tmp_path / "model" / "README.md").read_text()
    save_model(m, tmp_path / "model")  # the same weights again: the graph still fits them
    assert path.is_file()
    save_model(tiny_model(name, seed=1), tmp_path / "model")  # new weights: the old graph is removed, not misleading
    assert not path.exists() and f"`{GRAPHS[fmt]}`" not in (tmp_path / "model" / "README.md").read_text()


def test_onnx_without_its_packages_is_one_line(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    with pytest.raises(GanvaeError, match=r"onnxruntime not installed\): pip install 'ganvae\[onnx\]'") as e:
        check_graph_format("onnx")
    assert "\n" not in str(e.value)
    check_graph_format("torchscript")
    with pytest.raises(GanvaeError, match="expected one of onnx, torchscript"):
        check_graph_format("tflite")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_cli_export_writes_torchscript(gan_run, tmp_path, capsys):
    run = shutil.copytree(gan_run, tmp_path / "run")
    before = load_file(run / "model" / "model.safetensors")
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert "generator.pt" in capsys.readouterr().out
    g = torch.jit.load(str(run / "model" / "generator.pt"))
    m = ganvae.load(run)
    z = m.latent(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(g(z), m.decode_latent(z).clamp(0, 1), rtol=0, atol=1e-5)
    after = load_file(run / "model" / "model.safetensors")  # the same (EMA) generator as training exported
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit) as e:  # argparse: a usage error
        main(["export", str(run), "--format", "tflite"])
    assert e.value.code == 2


# ------------------------------------------------------------------------------ the model card
def test_card_of_a_training_export(gan_run):
    card = (gan_run / "model" / "README.md").read_text()
    for heading in ("## Data", "## Training", "## Scores", "## Privacy", "## Intended use and limits",
                    "## How to load it"):
        assert heading in card
    for field in ("# Model card: dcgan trained on digits", "- source: `digits`", "- split: seeded",
                  "- counts: 1617 training images, 180 test images", "- images: 8x8 pixels, 1 channel (grey)",
                  "- classes: 10", "- steps: 3 of 3 asked; images seen: 48", "- batch size: 16",
                  "- device: cpu", f"torch {torch.__version__}", "- training time: ", "exponential moving average",
                  "this export holds G (what inference needs); left out: D",
                  "No scores recorded", "Not trained with differential privacy", "research and prototyping",
                  "`ganvae audit RUN`", 'ganvae.load("', "model.sample(16, seed=0)", "in [0, 1]",
                  "model.generator_net()", "in [-1, 1]", "--format onnx|torchscript"):
        assert field in card, field


def test_card_scores_latest_per_metric_and_privacy(tmp_path, capsys):
    run = shutil.copytree(OLD / "dp-vae", tmp_path / "dp-vae")  # an old DP run: `ganvae export` writes its card
    recs = [{"metric": "fid", "value": 50.0, "floor": 3.0, "ceiling": 60.0, "step": 6, "protocol": "old"},
            {"metric": "fid", "value": 47.25, "floor": 3.4, "ceiling": 47.5, "step": 6, "protocol": "Frechet distance",
             "n_generated": 100, "n_reference": 180, "reference_split": "test", "feature_net": "digits", "seed": 0,
             "model_path": str(run / "model")},
            {"metric": "precision", "value": 0.99, "floor": 0.98, "ceiling": 0.98, "step": 6,
             "model_path": str(run / "best")}]  # another export's score: not this card's
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")
    assert main(["export", str(run)]) == 0
    card = (run / "model" / "README.md").read_text()
    assert ("| fid | 47.25 | 3.4 | 47.5 | 6 | Frechet distance; 100 generated vs 180 test images, "
            "features digits") in card
    assert "| 50 |" not in card and "precision" not in card
    assert "(1.012, 1e-05)-DP with respect to one training image, rdp accountant" in card
    assert "- private: encoder, decoder" in card and "noise multiplier 1, clipping norm 1" in card
    assert "Not trained with differential privacy" not in card and "mlp-vae trained on digits" in card
    assert "this export holds encoder, decoder (what inference needs)" in card and "left out" not in card

"""``model/README.md``: the model card written beside every export (:func:`ganvae.export.save_model`).

From the export's meta (``config.json``: data, step, images seen, privacy record, parts), the model's
capabilities and, when the export sits in a run folder, the run's own records: ``config.yaml`` (batch
size, steps asked), ``run.json`` (device, versions), ``metrics.jsonl`` (training time) and ``eval.jsonl``
(the latest score per metric). A missing or damaged record is said in the card; it never fails the export.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .util.files import atomic_write_text

CARD = "README.md"
GRAPH_FILES = {"generator.onnx": "ONNX", "generator.pt": "TorchScript"}


def write_card(folder: str | Path, meta: dict, model) -> Path:
    """Write ``folder/README.md`` for the export described by ``meta`` of ``model``; return its path."""
    folder = Path(folder)
    run = folder.parent if (folder.parent / "config.yaml").is_file() else None
    text = card_text(meta, model, run, folder)
    atomic_write_text(folder / CARD, text)
    return folder / CARD


def card_text(meta: dict, model, run: Path | None, folder: Path) -> str:
    name = meta.get("model", "?")
    source = (meta.get("data") or {}).get("source", "unknown data")
    parts = [f"# Model card: {name} trained on {source}", "",
             f"A {str(meta.get('family', '')).upper()} image generator made by ganvae "
             f"{meta.get('ganvae_version', '?')}; this card was written with the export and describes the weights "
             "in this folder.", ""]
    left_out = [n for n in dict.fromkeys(k.split(".", 1)[0] for k in model.state_dict())
                if meta.get("parts") is not None and n not in meta["parts"]]
    for title, lines in (("Data", _data(meta)), ("Training", _training(meta, run, left_out)),
                         ("Scores", _scores(meta, run, folder)), ("Privacy", _privacy(meta)),
                         ("Intended use and limits", _limits(meta)),
                         ("How to load it", _loading(model, folder, left_out))):
        parts += [f"## {title}", "", *lines, ""]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ run records
def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a damaged line: skipped, the rest still counts
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _yaml(path: Path) -> dict:
    try:
        value = yaml.safe_load(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def _num(v, fmt: str = ".4g") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


# ------------------------------------------------------------------------------------------ sections
def _data(meta: dict) -> list[str]:
    d = meta.get("data") or {}
    if not d:
        return ["- not recorded in this export"]
    split = str(d.get("split", "?"))
    if d.get("holdout") is not None:
        split += f" (held out {d['holdout']:g} of the images, split seed {d.get('split_seed')})"
    ch = d.get("channels")
    classes = d.get("num_classes")
    names = d.get("class_names")
    return [f"- source: `{d.get('source', '?')}`",
            f"- split: {split}",
            f"- counts: {d.get('n_train', '?')} training images, {d.get('n_test', '?')} test images",
            f"- images: {d.get('image_size', '?')}x{d.get('image_size', '?')} pixels, {ch} channel"
            f"{'s' if ch != 1 else ''}" + (" (grey)" if ch == 1 else " (RGB)" if ch == 3 else ""),
            "- classes: " + (f"{classes}" + (f" ({', '.join(map(str, names))})" if names else "")
                             if classes else "none (unlabelled)")]


def _training(meta: dict, run: Path | None, left_out: list[str]) -> list[str]:
    cfg = _yaml(run / "config.yaml") if run else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    info = _json(run / "run.json") if run else {}
    metrics = _jsonl(run / "metrics.jsonl") if run else []
    seconds = next((r["time_s"] for r in reversed(metrics) if isinstance(r.get("time_s"), (int, float))), None)
    steps = f"{meta.get('step', '?')}" + (f" of {train['steps']} asked" if train.get("steps") else "")
    procs = info.get("processes") or 1
    parts = meta.get("parts")
    held = ("all of the model's parts (an export made before parts were recorded)" if parts is None else
            f"{', '.join(parts)}" + (" (what inference needs)" if meta.get("inference_only") else " (everything)")
            + (f"; left out: {', '.join(left_out)}, kept with the optimizer state in the run's checkpoints/"
               if left_out else ""))
    return [f"- model: `{meta.get('model', '?')}` (its full config is in config.json)",
            f"- steps: {steps}; images seen: {meta.get('images_seen', '?')}",
            f"- batch size: {train.get('batch_size', 'not recorded')}",
            "- training time: " + (f"{_num(seconds, '.1f' if seconds >= 10 else '.2g')} s (summed over resumes)"
                                   if seconds is not None else "not recorded"),
            f"- device: {info.get('device', 'not recorded')}" + (f" x {procs} processes" if procs > 1 else ""),
            f"- versions: ganvae {meta.get('ganvae_version', '?')}, torch {info.get('torch_version', 'not recorded')}",
            f"- generator weights: {'an exponential moving average (EMA)' if meta.get('ema') else 'as trained'}",
            f"- this export holds {held}"]


def _scores(meta: dict, run: Path | None, folder: Path) -> list[str]:
    lines = []
    best = meta.get("best")
    if isinstance(best, dict) and "value" in best:
        lines.append(f"Best during training (the reason this export was kept): {best.get('metric')} "
                     f"{_num(best['value'])} at step {best.get('step')}.")
        lines.append("")
    recs = [r for r in (_jsonl(run / "eval.jsonl") if run else []) if "metric" in r
            and Path(str(r.get("model_path") or folder)).name == folder.name]
    latest = {r["metric"]: r for r in recs}  # the file is in time order: the last one per metric wins
    if not latest:
        lines.append("No scores recorded for this export. Score it with `ganvae evaluate RUN`, then refresh "
                     "this card with `ganvae export RUN`.")
        return lines
    lines += ["The latest score per metric from the run's eval.jsonl. Floor: real training images against the "
              "same reference (the best one can expect); ceiling: the untrained model.", "",
              "| metric | value | floor (real) | ceiling (untrained) | step | protocol |",
              "|---|---|---|---|---|---|"]
    for m, r in latest.items():
        proto = f"{r.get('protocol', '')}; {r.get('n_generated')} generated vs {r.get('n_reference')} " \
                f"{r.get('reference_split')} images, features {r.get('feature_net')}, seed {r.get('seed')}"
        lines.append(f"| {m} | {_num(r.get('value'))} | {_num(r.get('floor'))} | {_num(r.get('ceiling'))} | "
                     f"{r.get('step', '?')} | {proto.replace('|', '/')} |")
    if any(r.get("step") not in (None, meta.get("step")) for r in latest.values()):
        lines += ["", f"Some scores were taken at another step than this export's ({meta.get('step')})."]
    return lines


def _privacy(meta: dict) -> list[str]:
    p = meta.get("privacy")
    if not isinstance(p, dict) or "epsilon" not in p:
        return ["Not trained with differential privacy: nothing bounds what the weights reveal about any "
                "one training image."]
    return _guarantee(p) + _init_line(meta.get("init"))


def _init_line(init) -> list[str]:
    if not isinstance(init, dict):
        return []
    return [f"- starting weights: the networks of run `{init.get('run')}` (step {init.get('step')}, trained on "
            f"`{init.get('data')}`); that data is treated as public: the guarantee does not cover it, and the "
            "accounting counts only this run's own private steps"]


def _guarantee(p: dict) -> list[str]:
    if p.get("mechanism") == "gaussian release":
        return [f"Trained with differential privacy (DP-MERF: one Gaussian release of the class-conditional "
                f"random-feature mean embedding of the training images): ({_num(p.get('epsilon'))}, "
                f"{_num(p.get('delta'), 'g')})-DP with respect to one training image, {p.get('accountant', '?')} "
                "accountant.",
                f"- noise multiplier {_num(p.get('noise_multiplier'))} at sensitivity 1, one release of "
                f"{p.get('released_images', '?')} images; the generator saw only that release",
                "- the guarantee covers the training images only, and holds for the weights and anything made from "
                "them (samples, scores)"]
    return [f"Trained with differential privacy (DP-SGD): ({_num(p.get('epsilon'))}, {_num(p.get('delta'), 'g')})-DP "
            f"with respect to one training image, {p.get('accountant', '?')} accountant.",
            f"- private: {p.get('private', '?')} (every network that saw real images through a private phase)",
            f"- noise multiplier {_num(p.get('noise_multiplier'))}, clipping norm {_num(p.get('max_grad_norm'), 'g')}, "
            f"{p.get('sampling', 'poisson')} sampling at rate {_num(p.get('sample_rate'))}, {p.get('steps')} private "
            "steps",
            "- the guarantee covers the training images only, and holds for the weights and anything made from "
            "them (samples, scores)"]


def _limits(meta: dict) -> list[str]:
    source = (meta.get("data") or {}).get("source", "its training data")
    return [f"For research and prototyping. The model was trained on `{source}` only: its samples resemble that "
            "data, with its biases and gaps, and it knows nothing else. Its images are not real and must not be "
            "presented as real. A generative model can reproduce its training images, nearly or exactly; before "
            "sharing the model or its samples, measure that with `ganvae audit RUN` (membership inference, "
            "data-copying and near-copy checks)" + ("" if meta.get("privacy") else
                                                   ", and consider training with `--dp-epsilon`") + "."]


def _translation_loading(model) -> list[str]:
    """How to use a translation model (pix2pix, cyclegan): translate(), not sample()."""
    c = model.config
    size = f"{c.image_size}, {c.image_size}"
    lines = ["```python", "import ganvae", "model = ganvae.load(\"path/to/this/folder\")   # or the run folder",
             f"y = model.translate(x)          # x: (N, {c.channels}, {size}) in [0, 1] -> "
             f"(N, {c.channels_out}, {size})"]
    if "b2a" in model.directions:
        lines.append(f"a = model.translate(y, \"b2a\")   # back: (N, {c.channels_out}, {size}) -> "
                     f"(N, {c.channels}, {size})")
    return lines + ["```", "", "Or `ganvae translate RUN --images DIR --out OUT` on image files."]


def _loading(model, folder: Path, left_out: list[str]) -> list[str]:
    if model.translation:
        return _translation_loading(model)
    c = model.config
    code = f"(N, {c.latent_dim + 1})" if model.conditional else f"(N, {c.latent_dim})"
    shape = f"(N, {c.channels}, {c.image_size}, {c.image_size})"
    lines = ["```python", "import ganvae",
             "model = ganvae.load(\"path/to/this/folder\")   # or the run folder; model.to(\"cuda\") as usual",
             f"x = model.sample(16, seed=0)                  # (16, {c.channels}, {c.image_size}, {c.image_size}) "
             "float images in [0, 1]"]
    if model.conditional:
        lines.append("x = model.sample(16, seed=0, labels=3)        # all of class 3")
    lines += ["G = model.generator_net()                    # the generator as a plain torch.nn.Module", "```", "",
              f"`G` maps latent codes {code} to the generator's raw output; `model.decode_latent(z, G)` turns that "
              "into images in [0, 1] (a GAN's G ends in tanh, in [-1, 1]; a VAE's decoder gives pixel logits or "
              "means). Codes come from `model.latent(N)`: standard normal"
              + (", with the class label as the last column." if model.conditional else ".")]
    graphs = [f"`{f}` ({kind})" for f, kind in GRAPH_FILES.items() if (folder / f).is_file()]
    if graphs:
        lines += ["", f"{' and '.join(graphs)}: latent codes `z` {code} float32 -> images {shape} float32 in [0, 1], "
                  "the generator in eval mode; any batch size N. Load with `onnxruntime.InferenceSession` or "
                  "`torch.jit.load`."]
    else:
        lines += ["", "`ganvae export RUN --format onnx|torchscript` adds the generator as a standalone graph here."]
    if left_out:
        lines += ["", f"This export leaves out {', '.join(left_out)} (not needed to sample or encode): the loaded "
                  "model reports `has_discriminator` False, and `model.discriminate` says the discriminator is "
                  "not in this export."]
    return lines

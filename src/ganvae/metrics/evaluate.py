"""``evaluate(run)``: every score beside its floor and ceiling, with its protocol, appended to eval.jsonl.

Protocol (written into every record): ``n_generated`` samples from the exported
generator (latent seed ``seed``) against ``n_reference`` images of the run's data
split ``reference_split`` (a seeded subset when the split is larger), features from
``feature_net``. The floor is the same metric with real *training* images (as many
as generated) in place of the samples: what a perfect generator that memorised
nothing would score. The ceiling uses an untrained generator built from the run's
config with the same seed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path

import torch

from ..errors import GanvaeError
from .registry import METRICS, EvalInputs, Side

DIGIT_SOURCES = {"mnist", "mnist-5k", "digits"}


def pick_feature_net(meta: dict, source: str) -> str:
    """``auto``: the domain classifier for digit-like data, the shapes net for shapes, else EfficientNet."""
    if source in DIGIT_SOURCES or (meta.get("channels") == 1 and meta.get("num_classes") == 10
                                   and meta.get("image_size") == 28):
        return "mnist"
    if source == "shapes":
        return "shapes"
    return "effnet"


def _subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if images.shape[0] <= n:
        return images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx.sort().values]


def parse_metrics(spec: str | list[str]) -> list[str]:
    names = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    if not names:
        raise GanvaeError("--metrics: give at least one metric, e.g. fid,kid")
    for m in names:
        METRICS.get(m)
    return names


def evaluate(run: str | Path, metrics: str | list[str] = "fid,kid,pr,dc", n: int = 10000,
             feature_net: str = "auto", split: str = "test", seed: int = 0, k: int = 5000,
             kid_subset_size: int = 1000, baselines: bool = True, inception_weights: str | None = None,
             device: str = "cpu", write: bool = True, log=print) -> list[dict]:
    """Score the run's exported generator; return (and append to RUN/eval.jsonl) one record per value."""
    from ..api import load
    from ..config import read_yaml, resolve
    from ..data import load_data
    from ..models import build
    from .features import get_feature_net

    run = Path(run)
    names = parse_metrics(metrics)
    if n < 2:
        raise GanvaeError(f"--n {n}: expected at least 2 samples")
    if split not in ("train", "test"):
        raise GanvaeError(f"--split {split!r}: expected train or test")
    model = load(run, device=device)
    if not (run / "config.yaml").is_file():
        raise GanvaeError(f"{run}: not a run folder (no config.yaml beside the model)")
    cfg = resolve(read_yaml(run / "config.yaml"))
    splits = load_data(cfg.data, progress=False)
    ref_all = getattr(splits, split).images
    if ref_all.shape[0] < 2:
        raise GanvaeError(f"data split {split!r} of {cfg.data.source} has {ref_all.shape[0]} images; nothing to compare")
    net_name = pick_feature_net(splits.meta, cfg.data.source) if feature_net == "auto" else feature_net
    uses_features = any(METRICS.get(m).uses in ("features", "logits", "conditional") for m in names)
    net = get_feature_net(net_name, device=device, **({"weights_path": inception_weights}
                                                       if net_name == "inception" else {})) if uses_features else None
    if "kid" in names and min(n, ref_all.shape[0]) < kid_subset_size:
        raise GanvaeError(f"kid: {min(n, ref_all.shape[0])} samples are fewer than the KID subset size "
                          f"{kid_subset_size}; raise --n or lower --kid-subset-size")

    t0 = time.perf_counter()
    ref = Side(_subset(ref_all, n, seed).float() / 255, net)
    gen = Side(model.sample(n, seed=seed).cpu(), net)
    opts = {"seed": seed, "k": k, "kid_subset_size": kid_subset_size, "binarize": cfg.data.binarize}
    factors = getattr(splits, split).factors  # for mig/dci: the same seeded subset as the reference images
    opts["factors"] = None if factors is None else _subset(factors, n, seed)
    labels = getattr(splits, split).labels  # for cacc: the reference images' classes, the same subset
    opts["ref_labels"] = _subset(labels, n, seed) if labels is not None and labels.dim() == 1 else None
    for m in names:  # refuse what cannot run before scoring anything
        check = METRICS.get(m).check
        if check is not None:
            check(model, opts)
    sides = {"value": EvalInputs(gen, ref, model, opts)}
    if baselines:
        floor_imgs = _subset(splits.train.images, n, seed + 1).float() / 255
        sides["floor"] = EvalInputs(Side(floor_imgs, net), ref, None, opts)
        torch.manual_seed(cfg.train.seed)
        untrained = build(cfg.model_name, cfg.model).to(device).eval()
        sides["ceiling"] = EvalInputs(Side(untrained.sample(n, seed=seed).cpu(), net), ref, untrained, opts)

    meta = model.meta
    records: list[dict] = []
    for m in names:
        spec = METRICS.get(m)
        results = {}
        for which, inputs in sides.items():
            if which == "floor" and spec.uses == "model":
                continue  # a likelihood has no "real data" floor
            results[which] = spec.compute(inputs)
        for key in spec.keys:
            if key not in results["value"]:
                continue
            rec = {
                "metric": key,
                "value": results["value"][key],
                "floor": results.get("floor", {}).get(key),
                "ceiling": results.get("ceiling", {}).get(key),
                "feature_net": net_name if spec.uses != "model" else None,
                "n_generated": gen.images.shape[0] if spec.uses != "model" else 0,
                "n_reference": ref.images.shape[0],
                "reference_split": split,
                "step": meta.get("step"),
                "seed": seed,
                "protocol": spec.summary + (f"; k={k}" if m == "nll" else "")
                + ("; binarised" if m == "nll" and cfg.data.binarize else ""),
                "model_path": str(run / "model"),
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            records.append(rec)
    seconds = time.perf_counter() - t0
    if write:
        with (run / "eval.jsonl").open("a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    if log:
        log(format_table(records, net_name, seconds))
    return records


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.4g}"


def format_table(records: list[dict], net_name: str | None, seconds: float) -> str:
    if not records:
        return "no results"
    r0 = records[0]
    head = (f"{r0['n_generated'] or r0['n_reference']} samples vs {r0['n_reference']} {r0['reference_split']} images; "
            f"features: {net_name}; step {r0['step']}; seed {r0['seed']}; {seconds:.0f}s")
    rows = [("metric", "model", "floor: real train", "ceiling: untrained")]
    rows += [(r["metric"], _fmt(r["value"]), _fmt(r["floor"]), _fmt(r["ceiling"])) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


class TrainingEvaluator:
    """Scores the generator during training on a smaller sample (``train.eval_n``), reference features cached.

    Called by the loop as ``evaluator(model, net) -> {"eval/<key>": value, ...}``; ``primary`` and
    ``lower_is_better`` say which value ``--keep-best`` follows.
    """

    def __init__(self, metric: str, splits, source: str, n: int, seed: int = 0, device: str = "cpu"):
        from .features import get_feature_net

        self.spec = METRICS.get(metric)
        self.metric, self.n, self.seed = metric, n, seed
        self.primary = self.spec.keys[0]
        self.lower_is_better = self.spec.lower_is_better[0]
        if self.spec.uses == "model":
            self.net = None
        else:
            self.net = get_feature_net(pick_feature_net(splits.meta, source), device=device)
        self.ref = Side(_subset(splits.test.images, n, seed).float() / 255, self.net)
        if self.net is not None:
            _ = self.ref.features  # once
        self.opts = {"seed": seed, "k": 100, "factors": None if splits.test.factors is None
                     else _subset(splits.test.factors, n, seed)}

    def __call__(self, model, net=None) -> dict[str, float]:
        gen = Side(model.sample(self.n, seed=self.seed, net=net).cpu(), self.net)
        out = self.spec.compute(EvalInputs(gen, self.ref, model, self.opts))
        return {f"eval/{k}": float(v) for k, v in out.items() if k in self.spec.keys}

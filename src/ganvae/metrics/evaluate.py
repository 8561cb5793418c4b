"""``evaluate(model, splits)``: every score beside its real-data and untrained baselines, with its protocol.

Protocol (written into every record): ``n_generated`` samples from the model (latent seed
``seed``) against ``n_reference`` images of the data split ``reference_split`` (a seeded
subset when the split is larger), features from ``feature_net``. ``real_data`` is the same
metric with real *training* images (as many as generated) in place of the samples: what a
generator that reproduced the data without memorising it would score (older records: ``floor``).
``untrained`` uses an untrained generator (built by the caller from the same config and seed;
older records: ``ceiling``); it is a reference point, not a bound. Each record also carries
``lower_is_better`` and ``reading``, the value in words (:mod:`ganvae.metrics.reading`); the
returned records (and RUN/eval.jsonl) keep ``floor``/``ceiling`` as aliases for older readers.

This module takes loaded objects and returns records; reading and writing run folders
(``RUN/eval.jsonl``) is :func:`ganvae.api.evaluate`'s.
"""

from __future__ import annotations

import datetime as _dt
import math
import time

import torch

from ..errors import GanvaeError
from .progress import OFF, Feedback, duration
from .reading import better_word, read_score
from .diversity import mean_pairwise_distance, relative_diversity
from .registry import METRICS, EvalInputs, Side


def pick_feature_net(data, device: str = "cpu") -> str:
    """``auto``'s net for ``data``: :class:`~ganvae.data.DataSplits` (a domain net is checked on its labelled
    reference images) or a bare meta dict (no images to check: only built-in sources get a domain net).
    The rule and its reasons: :mod:`ganvae.metrics.featnet_auto`."""
    from .featnet_auto import choose, labelled_reference

    if isinstance(data, dict):
        return choose(data, device=device).name
    return choose(data.meta, *labelled_reference(data), device=device).name


def subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most ``n`` rows: a seeded subset, in the original order (the same rows for images, labels, factors)."""
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


def reference(splits, split: str, n: int, seed: int, net, *, k: int = 5000, kid_subset_size: int = 1000,
              binarize: bool = False, feedback: Feedback = OFF) -> tuple[Side, dict]:
    """The reference side (a seeded subset of ``split``) and the options every metric reads.

    One builder for ``evaluate`` and the periodic :class:`TrainingEvaluator`, so both score the same way.
    """
    data = getattr(splits, split)
    if data.images.shape[0] < 2:
        raise GanvaeError(f"data split {split!r} of {splits.meta.get('source')} has {data.images.shape[0]} images; "
                          "nothing to compare")
    ref = Side(subset(data.images, n, seed).float() / 255, net, feedback=feedback, label=f"{split} images")
    opts = {"seed": seed, "k": k, "kid_subset_size": kid_subset_size, "binarize": binarize,
            "factors": None if data.factors is None else subset(data.factors, n, seed),  # mig/dci: same rows
            "ref_labels": (subset(data.labels, n, seed)  # cacc's real-data value: the reference images' classes
                           if data.labels is not None and data.labels.dim() == 1 else None),
            "normal_classes": splits.meta.get("classes")}  # auroc: data.classes, the one-class protocol's normal data
    return ref, opts


def check(names: list[str], model, opts: dict) -> None:
    """Refuse what cannot run on this model and data before anything is scored."""
    for m in names:
        fn = METRICS.get(m).check
        if fn is not None:
            fn(model, opts)


def kid_subset(asked: int, available: dict[str, int]) -> tuple[int, str]:
    """The KID subset size for every side: ``asked``, or what the smallest side has; and why, when it is less.

    ``available``: {what limits a side, a format string ("the test split has {} images"): its number of images}.
    Refuses only below 2 (KID's minimum).
    """
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 2:
        raise GanvaeError(f"--kid-subset-size {asked}: expected at least 2")
    why, have = min(available.items(), key=lambda kv: kv[1])
    if have < 2:
        raise GanvaeError(f"kid: {why.format(have)}; KID needs at least 2 images on each side")
    if have >= asked:
        return asked, ""
    return have, f"not {asked}: {why.format(have)}"


def evaluate(model, splits, *, metrics: str | list[str] = "fid,kid,pr,dc", n: int = 10000,
             feature_net: str = "auto", split: str = "test", seed: int = 0, k: int = 5000,
             kid_subset_size: int = 1000, untrained=None, binarize: bool = False, inception_weights: str | None = None,
             device: str = "cpu", model_path: str | None = None, log=print, progress: bool = True) -> list[dict]:
    """Score ``model`` against ``splits`` (:class:`ganvae.data.DataSplits`); one record per value.

    ``untrained``: the same model untrained (for the real-data and untrained columns; None: no baselines).
    ``binarize``: nll on binarised images, as the run trained. ``model_path`` goes into the records.
    ``progress``: bars and up-front estimates of slow stages on stderr (never when ``log`` is None).
    KID subsets shrink to what the smallest side has (the protocol and the table header say so).
    """
    from .featnet_auto import labelled_reference, resolve

    names = parse_metrics(metrics)
    if n < 2:
        raise GanvaeError(f"--n {n}: expected at least 2 samples")
    if split not in ("train", "test"):
        raise GanvaeError(f"--split {split!r}: expected train or test")
    uses_features = any(METRICS.get(m).uses in ("features", "logits", "conditional") for m in names)
    net, net_name, why = None, "none", None
    if uses_features:  # auto: a domain net only where it classifies the labelled reference images (featnet_auto)
        net, choice = resolve(feature_net, splits.meta, *labelled_reference(splits), device=device,
                              **({"weights_path": inception_weights} if feature_net == "inception" else {}))
        net_name, why = choice.name, choice.reason
    n_split, n_train = getattr(splits, split).images.shape[0], splits.train.images.shape[0]
    have = {"--n is {}": n, f"the {split} split has {{}} images": n_split}
    if untrained is not None:
        have["the train split (real data) has {} images"] = n_train
    kid_size, kid_note = kid_subset(kid_subset_size, have) if "kid" in names else (kid_subset_size, "")
    fb = Feedback(progress and log is not None, device)
    ref, opts = reference(splits, split, n, seed, net, k=k, kid_subset_size=kid_size, binarize=binarize, feedback=fb)
    opts["kid_note"] = kid_note
    check(names, model, opts)

    t0 = time.perf_counter()
    sides = {"value": EvalInputs(_sample(model, n, seed, net, fb, "model"), ref, model, opts)}
    if untrained is not None:
        real = Side(subset(splits.train.images, n, seed + 1).float() / 255, net, feedback=fb, label="real data")
        sides["real_data"] = EvalInputs(real, ref, None, opts)
        sides["untrained"] = EvalInputs(_sample(untrained, n, seed, net, fb, "untrained"), ref, untrained, opts)
    _plan(fb, names, sides, n, k, uses_features)
    records = [rec for m in names for rec in _score(m, sides, dict(
        feature_net=net_name, feature_net_reason=why,
        n_generated=sides["value"].gen.images.shape[0], n_reference=ref.images.shape[0],
        reference_split=split, step=(getattr(model, "meta", None) or {}).get("step"), seed=seed,
        model_path=model_path), k, binarize)]
    if log:
        # the header says which net and why ("features: effnet (the mnist digit net classifies 10% ...)")
        log(format_table(records, f"{net_name} ({why})" if why else net_name, time.perf_counter() - t0, kid_note))
    return records


def _sample(model, n: int, seed: int, net, fb: Feedback, label: str) -> Side:
    """``n`` samples of ``model`` as a side (one bar step: ``model.sample`` reports no progress of its own)."""
    with fb.bar(n, f"sampling: {label}") as bar:
        images = model.sample(n, seed=seed).cpu()
        bar.update(n)
    return Side(images, net, feedback=fb, label=label)


def _plan(fb: Feedback, names: list[str], sides: dict[str, EvalInputs], n: int, k: int, uses_features: bool):
    """The stages whose first chunk is timed: feature extraction (all sides) and the nll bound (model sides)."""
    specs = [METRICS.get(m) for m in names]
    passes = any(s.uses == "features" for s in specs) + any(s.uses in ("logits", "conditional") for s in specs)
    if uses_features and passes:
        n_ref = next(iter(sides.values())).ref.images.shape[0]
        per_n = sum(x.gen.images.shape[0] for x in sides.values()) / n  # sides that scale with --n
        imgs = passes * (n_ref + per_n * n)
        small = min(n, 1000)
        small_imgs = passes * (min(n_ref, small) + per_n * small)
        fb.plan("features", imgs, f"{imgs:.0f} images through the {next(iter(sides.values())).gen.net.name} "
                f"feature net", lambda rate: (f"--n {small} takes {duration(rate * small_imgs)}"
                                              if small < n else None))
    if "nll" in names:
        n_ref = next(iter(sides.values())).ref.images.shape[0]
        runs = 1 + ("untrained" in sides)
        n2, k2 = min(n_ref, 1000), min(k, 1000)
        fb.plan("nll", runs * n_ref * k, f"{n_ref} images at k={k}" + (" (model and untrained)" if runs > 1 else ""),
                lambda rate: (f"--n {n2} --k {k2} takes {duration(rate * runs * n2 * k2)}"
                              if (n2, k2) != (n_ref, k) else None))


def _score(m: str, sides: dict[str, EvalInputs], protocol: dict, k: int, binarize: bool) -> list[dict]:
    """Metric ``m`` on every side; one record per key it returns."""
    spec = METRICS.get(m)
    results = {which: spec.compute(inputs) for which, inputs in sides.items()
               if not (which == "real_data" and spec.uses == "model")}  # a likelihood has no real-data value
    opts = sides["value"].opts
    note = {"nll": f"; k={k}" + ("; binarised" if binarize else ""),
            "kid": f"; subsets of {opts['kid_subset_size']}" + (f" ({opts['kid_note']})" if opts["kid_note"] else "")
            }.get(m, "")
    out = []
    for key, lower in zip(spec.keys, spec.lower_is_better):
        if key not in results["value"]:
            continue
        value, real, unt = (results.get(w, {}).get(key) for w in ("value", "real_data", "untrained"))
        out.append({
            "metric": key,
            "value": value,
            "real_data": real,        # real train images scored the same way (older records: "floor")
            "untrained": unt,         # the same model untrained (older records: "ceiling"; not a bound)
            "floor": real, "ceiling": unt,  # the old names, kept for readers of older records
            "lower_is_better": lower,
            "reading": read_score(key, value, real, unt, lower) if key in spec.headlines() else None,
            **protocol,
            "feature_net": protocol["feature_net"] if spec.uses not in ("model", "images") else None,
            "feature_net_reason": protocol["feature_net_reason"] if spec.uses not in ("model", "images") else None,
            "n_generated": protocol["n_generated"] if spec.uses != "model" else 0,
            **({"kid_subset_size": opts["kid_subset_size"]} if m == "kid" else {}),
            "protocol": spec.summary + note,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.4g}"


def format_table(records: list[dict], net_name: str | None, seconds: float, kid_note: str = "") -> str:
    """The printed scores: a header with the protocol, one row per value with its direction, then the headline
    values in words."""
    if not records:
        return "no results"
    r0 = records[0]
    kid = next((r["kid_subset_size"] for r in records if r.get("kid_subset_size")), None)
    head = (f"{r0['n_generated'] or r0['n_reference']} samples vs {r0['n_reference']} {r0['reference_split']} images; "
            f"features: {net_name}; step {r0['step']}; seed {r0['seed']}"
            + (f"; KID subsets of {kid}" + (f", {kid_note}" if kid_note else "") if kid else "") + f"; {seconds:.0f}s")
    rows = [("metric", "model", "real data", "untrained")]
    rows += [(f"{r['metric']} ({better_word(r.get('lower_is_better'))})" if r.get("lower_is_better") is not None
              else r["metric"], _fmt(r["value"]), _fmt(r.get("real_data", r.get("floor"))),
              _fmt(r.get("untrained", r.get("ceiling")))) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if any(row[2] != "-" or row[3] != "-" for row in rows[1:]):
        lines.append("real data: real train images scored the same way; untrained: the same model before training "
                     "(not a bound)")
    lines += [f"  {r['reading']}" for r in records if r.get("reading")]  # the headline values in words
    return "\n".join(lines)


class TrainingEvaluator:
    """Scores the generator during training on a smaller sample (``train.eval_n``), reference features cached.

    Called by the loop as ``evaluator(model, net) -> {"eval/<key>": value, ...}``; ``primary`` and
    ``lower_is_better`` say which value ``--keep-best`` follows. Built with the same :func:`reference`
    and :func:`check` as :func:`evaluate`; nll uses k=100 importance samples. Feature metrics also give
    ``eval/diversity`` (:mod:`ganvae.metrics.diversity`), which the health alarms watch for mode collapse.
    """

    def __init__(self, metric: str, model, splits, n: int, seed: int = 0, device: str = "cpu",
                 binarize: bool = False, feature_net: str = "auto"):
        from .featnet_auto import labelled_reference, resolve

        self.spec = METRICS.get(metric)
        self.metric, self.n, self.seed = metric, n, seed
        self.primary = self.spec.keys[0]
        self.lower_is_better = self.spec.lower_is_better[0]
        net, self.feature_choice = None, None
        if self.spec.uses not in ("model", "images"):  # ganvae eval's rule (featnet_auto), once per run
            net, self.feature_choice = resolve(feature_net, splits.meta, *labelled_reference(splits), device=device)
        self.ref, self.opts = reference(splits, "test", n, seed, net, k=100, binarize=binarize)
        check([metric], model, self.opts)
        self.ref_spread = None  # feature metrics: the reference's spread, for eval/diversity
        if net is not None:
            _ = self.ref.features  # once
            if self.spec.uses == "features":
                self.ref_spread = mean_pairwise_distance(self.ref.features)

    def __call__(self, model, net=None) -> dict[str, float]:
        gen = Side(model.sample(self.n, seed=self.seed, net=net).cpu(), self.ref.net)
        out = self.spec.compute(EvalInputs(gen, self.ref, model, self.opts))
        scores = {f"eval/{k}": float(v) for k, v in out.items() if k in self.spec.keys}
        if self.ref_spread:  # the samples' spread in the same features (metrics.diversity): collapse shows here
            scores["eval/diversity"] = relative_diversity(gen.features, self.ref_spread)
        return scores

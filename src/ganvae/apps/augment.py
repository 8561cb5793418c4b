"""N-shot augmentation with synthetic data, measured with the fixed classifier; and the CAS protocol's parts.

For each n-shot subset (``n`` labelled images per class, drawn with a seed), ``ganvae.api`` trains a conditional
generator on the subset only; :func:`run_arms` then trains the one :class:`ClassifierConfig` on

- ``real``:      the real subset (with the config's classic augmentation: the baseline to beat),
- ``mixed``:     the real subset plus ``ratio`` x as many synthetic images (balanced classes),
- ``synthetic``: the synthetic images only,

and tests each on the real test split. :func:`summarise` gives the mean and spread over seeds per n and arm,
and the gain of each synthetic arm over ``real`` (mean and standard deviation of the per-seed differences).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data import ImageData
from ..errors import GanvaeError
from .classifier import ClassifierConfig, train_and_test

ARMS = ("real", "mixed", "synthetic")
ARM_TITLES = {"real": "real subset (classic aug.)", "mixed": "real + synthetic", "synthetic": "synthetic only"}


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.long(), minlength=num_classes).tolist()


def check_per_class(labels: torch.Tensor | None, num_classes: int | None, per_class: list[int], what: str) -> None:
    """One clear line when the data has no labels or a class has fewer images than the largest n asked for."""
    if labels is None or not num_classes:
        raise GanvaeError(f"{what}: the data has no class labels; augmentation needs a labelled source "
                          "(class subfolders, idx: with labels, npz: with 'labels', mnist, digits)")
    counts = class_counts(labels, num_classes)
    low = min(range(num_classes), key=lambda k: counts[k])
    if any(n < 1 for n in per_class):
        raise GanvaeError(f"--labels-per-class: expected positive integers, got {per_class}")
    if max(per_class) > counts[low]:
        raise GanvaeError(f"--labels-per-class {max(per_class)}: class {low} of {what} has only {counts[low]} "
                          f"training images; use at most {counts[low]}")


def n_shot_index(labels: torch.Tensor, num_classes: int, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``per_class`` images of each class, a seeded draw (the same seed: the same subset).

    Each class is permuted with its own stream of ``seed``, so the subset for one class does not depend on
    the others' sizes. Raises :class:`GanvaeError` when a class has fewer than ``per_class`` images.
    """
    lab = labels.long().numpy()
    picked = []
    for k in range(num_classes):
        members = np.flatnonzero(lab == k)
        if len(members) < per_class:
            raise GanvaeError(f"--labels-per-class {per_class}: class {k} has only {len(members)} training images")
        perm = np.random.default_rng([seed, k, 0xA46]).permutation(len(members))
        picked.append(members[perm[:per_class]])
    return torch.from_numpy(np.sort(np.concatenate(picked)))


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``n`` labels 0, 1, ..., K-1, 0, 1, ...: every class ``n // K`` or ``n // K + 1`` times."""
    return torch.arange(n) % num_classes


def sample_uint8(model, n: int, num_classes: int, seed: int, batch_size: int = 500) -> ImageData:
    """``n`` images of a conditional model with balanced labels, as uint8 (like real data), on the CPU."""
    labels = balanced_labels(n, num_classes)
    parts = []
    for i in range(0, n, batch_size):  # a seed per chunk: memory stays small, the result is still seeded
        x = model.sample(len(labels[i:i + batch_size]), seed=seed * 100_003 + i, labels=labels[i:i + batch_size])
        parts.append((x.float().cpu() * 255).round().clamp(0, 255).to(torch.uint8))
    return ImageData(images=torch.cat(parts), labels=labels)


def run_arms(cfg: ClassifierConfig, real: ImageData, synthetic: ImageData, test: ImageData,
             num_classes: int, device: str = "cpu") -> dict:
    """Test accuracy of the same classifier config trained on each arm; ``{arm: {"accuracy", "n_train"}}``."""
    sets = {"real": real,
            "mixed": ImageData(images=torch.cat([real.images, synthetic.images]),
                               labels=torch.cat([real.labels, synthetic.labels])),
            "synthetic": synthetic}
    out = {}
    for arm in ARMS:
        d = sets[arm]
        acc = train_and_test(cfg, d.images, d.labels, test.images, test.labels, num_classes, device)
        out[arm] = {"accuracy": acc, "n_train": len(d), "classifier": cfg.to_dict()}
    return out


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def summarise(results: list[dict]) -> list[dict]:
    """Per labels-per-class n: each arm's mean and sample standard deviation over seeds, and the gains.

    ``results``: ``[{"per_class": n, "seed": s, "arms": {arm: {"accuracy": a, ...}}}, ...]``; a gain is
    ``arm - real`` per seed, then its mean and standard deviation.
    """
    rows = []
    for n in sorted({r["per_class"] for r in results}):
        runs = [r for r in results if r["per_class"] == n]
        row = {"per_class": n, "seeds": len(runs)}
        for arm in ARMS:
            row[arm] = dict(zip(("mean", "std"), _mean_std([r["arms"][arm]["accuracy"] for r in runs])))
        for arm in ARMS[1:]:
            diffs = [r["arms"][arm]["accuracy"] - r["arms"]["real"]["accuracy"] for r in runs]
            row[f"gain_{arm}"] = dict(zip(("mean", "std"), _mean_std(diffs)))
        rows.append(row)
    return rows


HEAD = ["labels/class", "seeds", *(ARM_TITLES[a] for a in ARMS), "gain mixed", "gain synthetic"]


def _pm(d: dict, sign: bool = False) -> str:
    return f"{100 * d['mean']:{'+' if sign else ''}.1f} ± {100 * d['std']:.1f}"


def _cells(r: dict) -> list[str]:
    """One summary row's cells: n, seeds, each arm's mean ± std, the two gains (in points)."""
    return [str(r["per_class"]), str(r["seeds"]), *(_pm(r[a]) for a in ARMS), _pm(r["gain_mixed"], True),
            _pm(r["gain_synthetic"], True)]


def table(rows: list[dict]) -> str:
    """A Markdown table of test accuracy (%) per labels-per-class: mean ± std over seeds, and the gains."""
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        lines.append("| " + " | ".join(_cells(r)) + " |")
    return "\n".join(lines)


def plot_png(rows: list[dict], title: str) -> bytes:
    """Test accuracy against labels per class (log x), one line per arm with a ±1 std band; PNG bytes."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["per_class"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for arm in ARMS:
        m = np.array([100 * r[arm]["mean"] for r in rows])
        s = np.array([100 * r[arm]["std"] for r in rows])
        ax.plot(xs, m, marker="o", label=ARM_TITLES[arm])
        ax.fill_between(xs, m - s, m + s, alpha=0.2)
    if len(xs) > 1:
        ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def cas_html(path) -> str:
    """The report's section for ``RUN/cas.json`` (written by ``ganvae cas``)."""
    import html
    import json
    from pathlib import Path

    path = Path(path)
    try:
        r = json.loads(path.read_text())
        acc, real = float(r["cas"]), float(r["real_accuracy"])
    except (ValueError, KeyError, TypeError):
        raise GanvaeError(f"{path}: not a result written by `ganvae cas`; rerun it") from None
    e = lambda v: html.escape(str(v))  # noqa: E731
    return (f"<h2>Classification accuracy score</h2><table><tr><th>classifier trained on</th><th>images</th>"
            f"<th>test accuracy (%)</th></tr><tr><td>generated (balanced labels)</td><td>{e(r.get('n_generated'))}"
            f"</td><td>{100 * acc:.2f}</td></tr><tr><td>real training split</td><td>{e(r.get('n_real_train'))}</td>"
            f"<td>{100 * real:.2f}</td></tr></table><p class=note>The same fixed classifier "
            f"(<code>{e(json.dumps(r.get('classifier')))}</code>), tested on {e(r.get('n_test'))} real test images; "
            f"seed {e(r.get('seed'))} (Ravuri &amp; Vinyals 2019).</p>")


def augment_html(result: dict, png: bytes | None = None) -> str:
    """The augmentation section: the table of accuracy per labels-per-class (mean ± std over seeds, the gains),
    the plot, and the protocol; for ``OUT/report.html`` (the whole study) or a generator run's report (one cell)."""
    import base64
    import html
    import json

    e = html.escape
    rows = result.get("summary") or summarise([result])
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    out = [f"<h2>Synthetic data for a classifier (augment)</h2><p class=note>Model {e(str(result.get('model')))} on "
           f"{e(str((result.get('key') or result).get('data')))}; test accuracy (%) on the real test split of one "
           "fixed "
           f"classifier (<code>{e(json.dumps(result.get('classifier') or (result.get('key') or {}).get('classifier')))}"
           "</code>) trained on the real n-shot subset (classic augmentation), the subset plus synthetic images, "
           "and the synthetic images only; a gain is the arm minus the real-only arm, per seed.</p>",
           "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + f"</tr></thead><tbody>{body}"
           "</tbody></table>"]
    if png:
        out.append(f"<img alt='accuracy against labels per class' src='data:image/png;base64,"
                   f"{base64.b64encode(png).decode()}' style='max-width:100%'>")
    return "\n".join(out)

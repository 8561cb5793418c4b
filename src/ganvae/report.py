"""``ganvae report RUN``: one self-contained HTML page about a run (no external assets).

What it shows, from the run folder alone: the run's identity (model, data, steps, images
seen, training time, versions); loss curves per phase against thousands of images seen
(matplotlib, embedded as PNG); throughput; periodic evaluation scores when the run has
them; health alarms (collapse, D overfitting, divergence) with the step each began; the
sample grids over training as a timeline; the final scores from ``eval.jsonl`` with their
protocol, the real-data and untrained references and a reading in words; each trainer plugin's
summary from ``run.json`` (the privacy guarantee of a DP run) and an audit verdict where the run
folder holds one (``audit.json``); the resolved config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

from .errors import GanvaeError
from .runfolder import info, read_jsonl, read_run_json
from .util.files import atomic_write_bytes

MAX_TIMELINE = 8  # sample grids shown, evenly spaced over training
RUN_JSON_KEYS = {"ganvae_version", "torch_version", "device", "processes", "data", "precision",
                 "cuda_graphs"}  # the rest: plugin summaries


def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _group(key: str) -> str:
    """'loss/D/real' -> 'D'; 'loss/kl' -> 'VAE'; 'D/real_prob' -> 'D probabilities'; 'elbo' -> 'elbo'."""
    parts = key.split("/")
    if parts[0] == "loss":
        return parts[1] if len(parts) > 2 or parts[1] in ("D", "G", "E") else "losses"
    if parts[0] == "D":
        return "D probabilities"
    return parts[0]


def loss_figures(records: list[dict]) -> list[tuple[str, str]]:
    """[(title, base64 PNG)] for the training curves; empty without records."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "img_per_s" in r]
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    figs: list[tuple[str, str]] = []
    if train:
        skip = {"step", "images_seen", "kimg", "time_s", "img_per_s"}
        keys = sorted({k for r in train for k in r if k not in skip and isinstance(r.get(k), (int, float))})
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(_group(k), []).append(k)
        n = len(groups) + 1
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
        axes = axes.flatten()
        for ax, (name, ks) in zip(axes, groups.items()):
            positive = True
            for k in ks:
                pts = [(r["kimg"], r[k]) for r in train if isinstance(r.get(k), (int, float))]
                if pts:
                    ax.plot(*zip(*pts), label=k, linewidth=1.2)
                    positive &= all(v > 0 for _, v in pts)
            vals = [r[k] for r in train for k in ks if isinstance(r.get(k), (int, float)) and r[k] > 0]
            if positive and vals and max(vals) / max(min(vals), 1e-12) > 50:
                ax.set_yscale("log")  # losses that span decades
            ax.set_title(name)
            ax.set_xlabel("thousands of images seen")
            ax.set_ylabel("probability" if name == "D probabilities"
                          else "loss (nats per image)" if all(k.startswith("loss") for k in ks) else "value")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax = axes[len(groups)]
        ax.plot([r["kimg"] for r in train], [r["img_per_s"] for r in train], color="tab:gray")
        ax.set_title("throughput")
        ax.set_xlabel("thousands of images seen")
        ax.set_ylabel("images / s")
        ax.grid(alpha=0.3)
        for ax in axes[n:]:
            ax.axis("off")
        fig.tight_layout()
        figs.append(("Training curves", _png_b64(fig)))
        plt.close(fig)
    if evals:
        keys = sorted({k for r in evals for k in r if k.startswith("eval/")})
        fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.2), squeeze=False)
        for ax, k in zip(axes[0], keys):
            pts = [(r["images_seen"] / 1000, r[k]) for r in evals if k in r]
            ax.plot(*zip(*pts), marker="o", linewidth=1.2)
            ax.set_title(k.removeprefix("eval/"))
            ax.set_xlabel("thousands of images seen")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        figs.append(("Periodic evaluation (train.eval_n samples vs the test split)", _png_b64(fig)))
        plt.close(fig)
    return figs


def _timeline(run: Path) -> list[tuple[int, str]]:
    grids = sorted((run / "samples").glob("step_*.png"))
    if len(grids) > MAX_TIMELINE:
        idx = sorted({round(i * (len(grids) - 1) / (MAX_TIMELINE - 1)) for i in range(MAX_TIMELINE)})
        grids = [grids[i] for i in idx]
    out = []
    for g in grids:
        m = re.search(r"step_(\d+)", g.name)
        out.append((int(m.group(1)) if m else -1, base64.b64encode(g.read_bytes()).decode()))
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[list], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _scores(evals: list[dict]) -> list[str]:
    """The scores section: the latest value of each metric beside real data and untrained, its direction and
    its reading. Older records name the two references ``floor`` and ``ceiling`` and carry no direction or
    reading; both are filled in from the metric registry."""
    from .metrics.reading import better_word, direction, is_headline, read_score

    latest: dict[str, dict] = {}
    for r in evals:
        latest[r["metric"]] = r
    rows = []
    for m, r in latest.items():
        real, unt = r.get("real_data", r.get("floor")), r.get("untrained", r.get("ceiling"))
        lower = r.get("lower_is_better", direction(m))
        reading = r["reading"] if "reading" in r else read_score(m, r.get("value"), real, unt, lower) \
            if is_headline(m) else None
        rows.append([html.escape(m), html.escape(better_word(lower) or "–"), _fmt(r.get("value")), _fmt(real),
                     _fmt(unt), _fmt(reading), _fmt(r.get("feature_net")), _fmt(r.get("n_generated")),
                     f"{_fmt(r.get('n_reference'))} {_fmt(r.get('reference_split'))}", _fmt(r.get("step")),
                     html.escape(r.get("protocol", ""))])
    note = ("<h2>Scores</h2><p class=note>The latest `ganvae eval` value of each metric beside two references "
            "scored the same way: <b>real data</b> = real training images in place of the samples, <b>untrained</b> "
            "= the same model before training (an untrained generator can score better than a trained one, or than "
            "real data on a weak metric: it is a reference, not a bound). Records written before this naming call "
            "them floor and ceiling.</p>")
    return [note, _table(rows, ["metric", "better", "value", "real data", "untrained", "reading", "feature net",
                                "generated", "reference", "step", "protocol"])]


def _health(records: list[dict]) -> list[str]:
    """The health alarms of ``metrics.jsonl`` (:mod:`ganvae.training.health`): each with the step it began."""
    alarms = [r for r in records if "alarm" in r]
    if not alarms and not any(k.startswith("health/") for r in records for k in r):
        return []  # train.health was off
    head = ("<h2>Health alarms</h2><p class=note>Mode collapse, discriminator overfitting and divergence, judged from "
            "a fixed probe every log line and the periodic evaluation (train.health); the run went on.</p>")
    if not alarms:
        return [head, "<p>None raised.</p>"]
    rows = [[_fmt(r.get("alarm")), _fmt(r.get("began")), _fmt(r.get("step")), _fmt(r.get("message"))] for r in alarms]
    return [head, _table(rows, ["alarm", "began at step", "found at step", "message"])]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f4f4f4}.timeline{display:flex;flex-wrap:wrap;gap:1em}.timeline figure{margin:0}
.timeline img{image-rendering:pixelated;width:220px}figcaption{font-size:.8em;color:#555;text-align:center}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}.note{color:#555;font-size:.9em}
"""


def build_report(run: str | Path) -> str:
    """The report's HTML for run folder ``run``."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise GanvaeError(f"{run}: not a run folder (no config.yaml)")
    d = info(run)
    records, damaged = read_jsonl(run / "metrics.jsonl", warn=True)
    evals = [r for r in read_jsonl(run / "eval.jsonl")[0] if "metric" in r]
    run_json = read_run_json(run)
    parts = [f"<h1>ganvae run: {html.escape(run.name)}</h1>"]
    ident = [
        ["model", _fmt(d.get("model"))], ["data", _fmt(d.get("data"))],
        ["steps", f"{_fmt(d.get('step'))} of {_fmt(d.get('steps_target'))}"],
        ["images seen", _fmt(d.get("images_seen"))], ["training time (s)", _fmt(d.get("train_time_s"))],
        ["device", _fmt(run_json.get("device")) + "".join(
            f", {k.replace('_', ' ')} {_fmt(run_json[k])}" for k in ("precision", "cuda_graphs") if k in run_json)],
        ["versions", f"ganvae {_fmt(run_json.get('ganvae_version'))}, torch {_fmt(run_json.get('torch_version'))}"],
    ]
    parts.append(_table(ident, ["", ""]))
    if damaged:
        parts.append(f"<p class=note>{damaged} damaged lines of metrics.jsonl were skipped (a kill mid-write or "
                     "a full disk).</p>")
    if evals:
        parts += _scores(evals)
    parts += _health(records)
    for name, summary in run_json.items():  # plugin summaries (e.g. "privacy": the DP guarantee)
        if name not in RUN_JSON_KEYS and isinstance(summary, dict) and summary:
            parts.append(f"<h2>{html.escape(name.title())}</h2>")
            parts.append(_table([[html.escape(str(k)), _fmt(v)] for k, v in summary.items()], ["", ""]))
    if "privacy" in run_json or (run / "audit.json").is_file():  # guarantee + attacks + utility in plain words
        from .privacy.card import card_html
        parts.append(card_html(run))
    if (run / "audit.json").is_file():  # `ganvae audit`: verdict, headline numbers, closest pairs
        from .privacy.audit import audit_html
        parts.append(audit_html(run / "audit.json"))
    if (run / "augment.json").is_file():  # a generator of `ganvae augment`: its cell's three arms
        from .apps.augment import augment_html
        parts.append(augment_html(json.loads((run / "augment.json").read_text())))
    if (run / "cas.json").is_file():  # `ganvae cas`: the classification accuracy score beside real data
        from .apps.augment import cas_html
        parts.append(cas_html(run / "cas.json"))
    figs = loss_figures(records)
    for title, b64 in figs:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{b64}' style='max-width:100%'>")
    if not figs:
        parts.append("<p class=note>No training records in metrics.jsonl yet.</p>")
    tl = _timeline(run)
    if tl:
        parts.append("<h2>Samples over training</h2><p class=note>The same latent codes at every step "
                     "(train.sample_seed).</p><div class=timeline>")
        parts += [f"<figure><img alt='step {s}' src='data:image/png;base64,{b}'><figcaption>step {s}"
                  "</figcaption></figure>" for s, b in tl]
        parts.append("</div>")
    parts.append("<h2>Config</h2><pre>" + html.escape((run / "config.yaml").read_text()) + "</pre>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>ganvae report: "
            f"{html.escape(run.name)}</title><style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>")


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``) atomically; return its path."""
    run = Path(run)
    page = build_report(run)
    path = Path(out) if out else run / "report.html"
    atomic_write_bytes(path, page.encode())
    return path

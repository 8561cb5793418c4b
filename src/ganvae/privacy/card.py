"""The privacy card: the guarantee, the attacks and the utility of one model in one record, in plain words.

What a data-protection officer asks of a generator trained on sensitive images, gathered from the run folder:

* **guarantee** (``run.json``'s ``privacy``): epsilon, delta, accountant, mechanism, what is covered, and the
  starting weights of ``--init`` (public: not covered);
* **attacks** (``audit.json``, ``ganvae audit``): the best membership-inference AUC and TPR at 1% FPR, the
  near-copies, data-copying Z_U, and the audit's own verdict;
* **utility** (``cas.json``, ``ganvae cas``; the latest FID of ``eval.jsonl``, ``ganvae eval``): what the
  synthetic data is worth beside the real data.

:func:`card` computes the record (each part ``None`` when its command has not run, and the verdict says which
command would fill it); ``ganvae audit`` and ``ganvae cas`` write it to ``RUN/privacy_card.json``; the report
shows it (:func:`card_html`). The thresholds are rules of thumb, stated in the record beside the numbers.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from ..util.files import atomic_write_text

CARD = "privacy_card.json"
STRONG_EPS, MODERATE_EPS = 1.0, 10.0  # epsilon at most 1: strong; at most 10: moderate (common in practice)


def _json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _latest_fid(run: Path) -> dict | None:
    best = None
    try:
        lines = (run / "eval.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("metric") == "fid" and isinstance(r.get("value"), (int, float)):
            best = r
    if best is None:
        return None
    return {"fid": best["value"], "fid_step": best.get("step"), "fid_real_data": best.get("real_data",
                                                                                           best.get("floor")),
            "fid_feature_net": best.get("feature_net")}


def _guarantee(run_info: dict) -> dict:
    p = run_info.get("privacy")
    out: dict = {"private": isinstance(p, dict) and "epsilon" in p}
    if out["private"]:
        out.update({k: p.get(k) for k in ("epsilon", "delta", "accountant", "mechanism", "noise_multiplier",
                                          "steps", "private")})
        out["mechanism"] = out["mechanism"] or "DP-SGD (Opacus): clipped, noised per-sample gradients"
        eps = float(p["epsilon"])
        out["strength"] = "strong" if eps <= STRONG_EPS else "moderate" if eps <= MODERATE_EPS else "weak"
    if isinstance(run_info.get("init"), dict):
        out["init"] = run_info["init"]
    return out


def _attacks(audit: dict | None) -> dict | None:
    if audit is None:
        return None
    keys = ("mia_auc", "mia_best_attack", "mia_tpr_at_1pct_fpr", "n_near_copies", "near_copy_share", "z_u",
            "verdict", "leaks", "thresholds")
    out = {k: audit.get(k) for k in keys}
    out["n_samples"] = (audit.get("protocol") or {}).get("n_samples")
    return out


def _utility(cas: dict | None, fid: dict | None) -> dict | None:
    if cas is None and fid is None:
        return None
    out: dict = {}
    if cas is not None:
        out.update({"cas": cas.get("cas"), "real_accuracy": cas.get("real_accuracy"),
                    "n_generated": cas.get("n_generated"), "n_test": cas.get("n_test")})
    if fid is not None:
        out.update(fid)
    return out


def verdict(g: dict, attacks: dict | None, utility: dict | None) -> list[str]:
    """Plain-language sentences: the guarantee, what the attacks found, what the data is worth, the upshot."""
    lines = []
    if g["private"]:
        lines.append(f"Differentially private: ({g['epsilon']:.3g}, {g['delta']:g})-DP for each training image "
                     f"({g['strength']}: epsilon at most {STRONG_EPS:g} is strong, at most {MODERATE_EPS:g} moderate, "
                     "above that weak). The bound holds for the weights and everything made from them.")
    else:
        lines.append("Not differentially private: nothing bounds what the model reveals about one training image.")
    if g.get("init"):
        lines.append(f"Its starting weights came from run {g['init'].get('run')} (data "
                     f"{g['init'].get('data')}), which is treated as public and is not covered.")
    if attacks is None:
        lines.append("Not audited: run `ganvae audit RUN` for membership inference and near-copies.")
    elif attacks.get("leaks"):
        lines.append(f"The audit found leakage: {attacks.get('verdict', '')}.")
    else:
        lines.append(f"The audit's attacks found no sign of leakage (best membership-inference AUC "
                     f"{_f(attacks.get('mia_auc'), '.3f')}, chance 0.5; {attacks.get('n_near_copies')} near-copies "
                     f"in {attacks.get('n_samples')} samples); a negative audit is evidence, not a proof.")
    if utility is None or utility.get("cas") is None:
        lines.append("Utility of the synthetic data not measured: run `ganvae cas RUN` (labelled data).")
    else:
        lines.append(f"A classifier trained only on {utility.get('n_generated')} generated images scores "
                     f"{100 * utility['cas']:.1f}% on the real test images ({100 * utility['real_accuracy']:.1f}% "
                     "when trained on the real training images).")
    if attacks is not None and attacks.get("leaks"):
        lines.append("Upshot: do not share this model or its samples.")
    elif g["private"] and attacks is not None:
        lines.append("Upshot: shareable under the stated guarantee; no attack contradicted it.")
    elif g["private"]:
        lines.append("Upshot: covered by the stated guarantee; audit it before sharing to check the implementation "
                     "empirically.")
    else:
        lines.append("Upshot: no formal protection; share only if the training images may be seen.")
    return lines


def _f(v, fmt: str = ".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def card(run: str | Path) -> dict:
    """The privacy card of run folder ``run`` from what its files hold now."""
    run = Path(run)
    g = _guarantee(_json(run / "run.json") or {})
    attacks = _attacks(_json(run / "audit.json"))
    utility = _utility(_json(run / "cas.json"), _latest_fid(run))
    return {"run": str(run), "guarantee": g, "attacks": attacks, "utility": utility,
            "verdict": verdict(g, attacks, utility)}


def write_card(run: str | Path) -> Path:
    path = Path(run) / CARD
    atomic_write_text(path, json.dumps(card(run), indent=2) + "\n")
    return path


def card_html(run: str | Path) -> str:
    """The report's section: the verdict, then one table of guarantee, attacks and utility."""
    c = card(run)
    g, a, u = c["guarantee"], c["attacks"] or {}, c["utility"] or {}
    e = html.escape
    rows = [["guarantee", f"({_f(g.get('epsilon'), '.3g')}, {_f(g.get('delta'), 'g')})-DP, {g.get('strength')}"
             if g["private"] else "none (not trained with differential privacy)"],
            ["mechanism", g.get("mechanism") or "–"], ["covered", g.get("private") or "–"],
            ["membership inference AUC (best)", _f(a.get("mia_auc"), ".3f")],
            ["TPR at 1% FPR (best)", _f(a.get("mia_tpr_at_1pct_fpr"), ".3f")],
            ["near-copies", f"{_f(a.get('n_near_copies'))} of {_f(a.get('n_samples'))}"],
            ["data-copying Z_U", _f(a.get("z_u"), ".2f")],
            ["CAS (generated -> real test)", _f(100 * u["cas"], ".1f") + "%" if u.get("cas") is not None else "–"],
            ["same classifier on real data", _f(100 * u["real_accuracy"], ".1f") + "%"
             if u.get("real_accuracy") is not None else "–"],
            ["FID (latest ganvae eval)", _f(u.get("fid"), ".3g")]]
    body = "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in rows)
    return ("<h2>Privacy card</h2>" + "".join(f"<p>{e(s)}</p>" for s in c["verdict"])
            + f"<table><tbody>{body}</tbody></table><p class=note>Also in {e(CARD)} (written by ganvae audit and "
            "ganvae cas).</p>")

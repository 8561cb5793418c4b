"""``ganvae audit RUN``: does a trained generator leak its training images?

Three measurements, all on images the run trained on (members) against images it never saw
(held-out non-members):

1. **Memorisation** (:func:`ganvae.privacy.copying.memorisation`): each generated sample's
   nearest-neighbour distance to the training images and to an equally large held-out set,
   in pixels and in the feature space ``ganvae eval`` uses for the data; the quantiles of the
   ratio d_train/d_heldout, the near-copies (ratio < 1/3 in pixels), and the closest pairs as
   ``RUN/audit_pairs.png`` (each triple: generated | nearest training image | nearest held-out).
2. **Data copying** (:func:`ganvae.privacy.copying.data_copying_test`): Meehan et al.'s Z_U
   (their C_T), in the feature space (pixels when there is none): strongly negative = copying.
3. **Membership inference** (:mod:`ganvae.privacy.mia`): equal numbers of members and held-out
   non-members scored by white-box attacks (a GAN's discriminator logit; a VAE's per-example
   ELBO and importance-weighted bound) and black-box ones that see only generated samples
   (Hilprecht et al. 2019: the Monte-Carlo share of samples within eps of the record, and the
   distance to the nearest sample), in pixels and features; ROC AUC and TPR at 1% FPR of each;
   the best of each is reported.

Which images: the caller gives the members and the held-out images
(:func:`ganvae.data.members_and_heldout` rebuilds them from a run's data config exactly as
training loaded it: members are the training split after ``data.limit``; held-out images are the
test split plus the training-split images ``data.limit`` left out). Both are seeded subsets of at
most ``REFERENCE_CAP`` images; the memorisation ratio uses equally many of each.

This module takes a model and tensors and returns the record and the closest-pairs image;
writing ``RUN/audit.json`` and ``RUN/audit_pairs.png`` is :func:`ganvae.api.audit`'s.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..errors import GanvaeError
from ..metrics.progress import OFF, Feedback, duration
from ..util.modes import eval_mode
from .copying import data_copying_test, memorisation
from .mia import attack_result, mc_scores, median_eps, nearest_sample_scores

REFERENCE_CAP = 10000   # at most this many training and held-out images take part
PAIRS_SHOWN = 16        # closest (generated, train, held-out) triples in audit_pairs.png
Z_U_THRESHOLD = -3.0    # Z_U below this: data copying
NEAR_COPY_SHARE = 0.01  # more than this share of samples being near-copies: leakage
FPR = 0.01


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)


# ------------------------------------------------------------------------------------ white-box
@torch.no_grad()
def discriminator_scores(model, images: torch.Tensor, labels: torch.Tensor | None = None,
                         batch_size: int = 512) -> np.ndarray:
    """D's logit on each record (images in [0, 1], entering D in [-1, 1]); higher = judged real."""
    dev = model.device
    out = []
    for i in range(0, images.shape[0], batch_size):
        y = None if labels is None else labels[i:i + batch_size].to(dev)
        out.append(model.discriminate(_float(images[i:i + batch_size]).to(dev), y).double().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def vae_scores(model, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = 32, seed: int = 0,
               batch_size: int = 256, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per record: (ELBO estimated from ``k`` posterior samples, importance-weighted bound L_k), nats.

    ``progress``: a :class:`~ganvae.metrics.progress.Bar` over the records (image-samples as planned units).
    """
    from ..metrics.likelihood import log_weights

    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    elbo, iw = [], []
    for i in range(0, images.shape[0], batch_size):
        x = _float(images[i:i + batch_size]).to(dev)
        parts = model.bound_parts(None if labels is None else labels[i:i + batch_size])
        lw = log_weights(parts, x, k, gen, on_chunk=None if progress is None else progress.measure).double()
        elbo.append(lw.mean(1).cpu())
        iw.append((torch.logsumexp(lw, 1) - math.log(k)).cpu())
        if progress is not None:
            progress.update(x.shape[0], units=x.shape[0] * k)
    return torch.cat(elbo).numpy(), torch.cat(iw).numpy()


def _features(name: str, meta: dict, device: str, images=None, labels=None):
    """(feature net or None, space name, reason); ``images``/``labels``: labelled held-out images, on which
    ``auto`` checks a domain net as ``ganvae eval`` does (:mod:`ganvae.metrics.featnet_auto`)."""
    from ..metrics.featnet_auto import choose, resolve

    if name in ("pixels", "none"):
        return None, "pixels", "asked for pixels"
    if name == "inception":
        raise GanvaeError("--features inception needs the FID weights file; use mnist, shapes, effnet or pixels")
    auto = name == "auto"
    choice = choose(meta, images, labels, device) if auto else None
    try:
        net, chosen = resolve(choice.name if auto else name, meta, device=device)
        return net, chosen.name, f"auto, as ganvae eval: {choice.reason}" if auto else chosen.reason
    except GanvaeError as e:
        if not auto:
            raise
        return None, "pixels", f"auto picked {choice.name} but it is unavailable ({e}); fell back to pixels"


def _clean(x):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def null_auc_sd(n_members: int, n_nonmembers: int) -> float:
    """Standard deviation of the AUC of an attack that is pure chance (Mann-Whitney null)."""
    return math.sqrt((n_members + n_nonmembers + 1) / (12 * n_members * n_nonmembers))


# --------------------------------------------------------------------------------- the audit
def audit(model, members, heldout, *, n_samples: int = 10000, n_members: int | None = None, seed: int = 0,
          features: str = "auto", meta: dict | None = None, split: str = "images given to audit()",
          cells: int | None = None, elbo_k: int = 32, device: str = "cpu", run: str | None = None,
          log=print, progress: bool | None = None) -> tuple[dict, torch.Tensor]:
    """Audit ``model`` for leakage of ``members`` (its training images) against ``heldout`` ones.

    ``members``, ``heldout``: :class:`ganvae.data.ImageData` (labels used by conditional models'
    white-box attacks) or image tensors, uint8 or float in [0, 1], (N, C, H, W).
    ``n_samples``: generated samples; ``n_members``: members and as many non-members for the
    membership attacks (default min(1000, what the data has)); ``features``: auto, mnist, shapes,
    effnet or pixels (auto picks from ``meta``, the data summary); ``cells``: k of the data-copying
    test (default :func:`default_cells`); ``split``, ``run``: recorded in the protocol.
    ``progress``: a bar per stage (samples, features, memorisation and copying, attacks) and an up-front
    estimate of slow ones on stderr (default: when ``log`` is given).
    Returns the JSON-able record and the closest-pairs image tiles (3 * PAIRS_SHOWN, C, H, W).
    """
    _check_counts(n_samples, n_members)
    (tr, y_tr), (ho, y_ho) = _images_labels(members), _images_labels(heldout)
    meta = dict(meta or {"source": "given", "channels": int(tr.shape[1]), "image_size": int(tr.shape[-1])})
    avail = min(len(tr), len(ho))
    if avail < 2:
        raise GanvaeError(f"{meta.get('source')}: {len(tr)} training and {len(ho)} held-out images; the audit "
                          "needs 2 of each")
    if n_members is None:
        n_members = min(1000, avail)
    elif n_members > avail:
        raise GanvaeError(f"--n-members {n_members}: more than the data has ({len(tr)} training and {len(ho)} "
                          f"held-out images); use at most {avail}")
    ref = _reference_sets(tr, y_tr, ho, y_ho, seed)
    net, space, space_reason = _features(features, meta, device, ho, y_ho)  # a bad --features fails before any work
    fb = Feedback(log is not None if progress is None else progress, device)
    with eval_mode(model), fb.bar(4, "audit: sampling", unit="stage") as stages:
        gen = model.sample(n_samples, seed=seed).cpu().float()
        if tuple(gen.shape[1:]) != tuple(ref.T.shape[1:]):
            raise GanvaeError(f"the model makes {tuple(gen.shape[1:])} images but the data is "
                              f"{tuple(ref.T.shape[1:])}; audit it against the data it trained on")
        stages.update(1)
        stages.describe("audit: features")
        spaces = {"pixels": (gen, ref.T, ref.H)}
        if net is not None:
            spaces[space] = _feature_space(net, gen, ref, fb)
        stages.update(1)
        stages.describe("audit: memorisation, data copying")
        mem = {s: memorisation(g, t[:ref.n], h[:ref.n]) for s, (g, t, h) in spaces.items()}  # 1. memorisation
        head_space = space if net is not None else "pixels"  # 2. data copying, in the feature space
        g, t, h = spaces[head_space]
        copying = {head_space: data_copying_test(t.numpy(), h.numpy(), g.numpy(), k=cells, seed=seed)}
        stages.update(1)
        stages.describe("audit: attacks")
        attacks = _black_box(spaces, n_members, n_samples)   # 3. membership inference
        white, white_skipped = _white_box(model, ref, n_members, elbo_k, seed, fb)
        attacks.update(white)
        stages.update(1)
    verdict = _verdict(attacks, copying[head_space]["z_u"], mem["pixels"]["summary"]["n_near_copies"],
                       n_members, n_samples)
    protocol = {
        "run": run, "model": getattr(model, "registered_name", type(model).__name__),
        "step": (getattr(model, "meta", None) or {}).get("step"), "data": meta.get("source"), "split": split,
        "n_train_images": len(tr), "n_heldout_images": len(ho), "n_samples": n_samples, "n_members": n_members,
        "n_nonmembers": n_members, "n_reference_each": ref.n, "n_copying_train": len(ref.T),
        "n_copying_heldout": len(ref.H), "feature_space": head_space, "feature_reason": space_reason,
        "spaces": list(spaces), "seed": seed, "sample_seed": seed,
        "subset_rule": f"seeded permutations (numpy default_rng([seed, 0xA0D17])) of the training and held-out "
                       f"images, at most {REFERENCE_CAP} each; members/non-members = the first n_members of each; "
                       f"memorisation references = the first {ref.n} of each",
        "elbo_k": elbo_k if "elbo" in attacks else None,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    result = _clean({**verdict, "attacks": attacks, "white_box_skipped": white_skipped,
                     "memorisation": {s: m["summary"] for s, m in mem.items()},
                     "data_copying": copying, "protocol": protocol})
    pairs, distances = _closest_pairs(gen, ref, mem["pixels"])
    result["pairs_caption"] = ("the generated samples closest to a training image (pixels), smallest first; "
                               "each triple: generated | nearest training image | nearest held-out image")
    result["pairs_pixel_distances"] = distances
    if log:
        log(format_audit(result))
    return result, pairs


def _check_counts(n_samples, n_members) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 20 <= n_samples <= 100_000:
        raise GanvaeError(f"--n-samples {n_samples}: expected 20 to 100000")
    if n_members is not None and (isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 2):
        raise GanvaeError(f"--n-members {n_members}: expected at least 2")


def _images_labels(d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ImageData or a tensor -> (images, one class per image or None)."""
    if isinstance(d, torch.Tensor):
        return d, None
    labels = d.labels if d.labels is not None and d.labels.dim() == 1 else None
    return d.images, labels


def _reference_sets(tr, y_tr, ho, y_ho, seed: int) -> SimpleNamespace:
    """Seeded subsets (at most REFERENCE_CAP each) of the members T and held-out H, floats in [0, 1]."""
    rng = np.random.default_rng([seed, 0xA0D17])
    pT = torch.from_numpy(rng.permutation(len(tr))[:min(len(tr), REFERENCE_CAP)])
    pH = torch.from_numpy(rng.permutation(len(ho))[:min(len(ho), REFERENCE_CAP)])
    T, H = _float(tr[pT]), _float(ho[pH])
    return SimpleNamespace(T=T, H=H, yT=None if y_tr is None else y_tr[pT], yH=None if y_ho is None else y_ho[pH],
                           n=min(len(T), len(H)))


def _black_box(spaces: dict, n_members: int, n_samples: int) -> dict:
    """Attacks that see only generated samples, in every space."""
    attacks = {}
    for s, (g, t, h) in spaces.items():
        mem_x, non_x = t[:n_members], h[:n_members]
        eps = median_eps(torch.cat([mem_x, non_x]), g)
        attacks[f"mc_{s}"] = attack_result(
            f"mc_{s}", mc_scores(mem_x, g, eps), mc_scores(non_x, g, eps),
            f"black-box Monte-Carlo (Hilprecht et al. 2019): share of the {n_samples} samples within "
            f"eps={eps:.4g} ({s}; median heuristic) of the record", FPR)
        attacks[f"nn_{s}"] = attack_result(
            f"nn_{s}", nearest_sample_scores(mem_x, g), nearest_sample_scores(non_x, g),
            f"black-box: minus the distance ({s}) to the nearest of the {n_samples} samples", FPR)
    return attacks


def _feature_space(net, gen: torch.Tensor, ref, fb: Feedback) -> tuple:
    """(generated, members T, held-out H) in ``net``'s features, a bar each; the first batch times the stage."""
    n_all = gen.shape[0] + len(ref.T) + len(ref.H)
    fewer = gen.shape[0] > 1000
    fb.plan("audit features", n_all, f"{n_all} images through the {net.name} feature net",
            lambda rate: (f"--n-samples 1000 takes {duration(rate * (n_all - gen.shape[0] + 1000))}" if fewer
                          else "--features pixels skips it"))
    out = []
    for x, what in ((gen, "samples"), (ref.T, "training images"), (ref.H, "held-out images")):
        with fb.bar(x.shape[0], f"features: {what}", "audit features", leave=False) as bar:
            out.append(net.features(x, progress=bar))
    return tuple(out)


def _white_box(model, ref, n_members: int, elbo_k: int, seed: int, fb: Feedback = OFF) -> tuple[dict, str | None]:
    """Attacks on the model's own scores: D's logit, the per-example ELBO and IWAE bound."""
    mem_img, non_img = ref.T[:n_members], ref.H[:n_members]
    mem_y = None if ref.yT is None else ref.yT[:n_members]
    non_y = None if ref.yH is None else ref.yH[:n_members]
    if model.conditional and (mem_y is None or non_y is None):
        return {}, "a conditional model needs the records' class labels, which this data lacks"
    attacks = {}
    if model.has_discriminator:
        attacks["d_logit"] = attack_result(
            "d_logit", discriminator_scores(model, mem_img, mem_y), discriminator_scores(model, non_img, non_y),
            "white-box: the discriminator's logit on the record (higher = judged real)", FPR)
    if model.has_encoder:
        n2 = len(mem_img) + len(non_img)
        fb.plan("audit elbo", n2 * elbo_k, f"{n2} images at k={elbo_k}")
        with fb.bar(len(mem_img), "elbo: members", "audit elbo", leave=False) as bar:
            e_m, iw_m = vae_scores(model, mem_img, mem_y, k=elbo_k, seed=seed, progress=bar)
        with fb.bar(len(non_img), "elbo: held-out", "audit elbo", leave=False) as bar:
            e_n, iw_n = vae_scores(model, non_img, non_y, k=elbo_k, seed=seed, progress=bar)
        attacks["elbo"] = attack_result(
            "elbo", e_m, e_n, f"white-box: the per-example ELBO (mean over {elbo_k} posterior samples)", FPR)
        iw_name = f"iw_bound_k{elbo_k}"
        attacks[iw_name] = attack_result(
            iw_name, iw_m, iw_n, f"white-box: the importance-weighted bound L_{elbo_k} (Burda et al. 2016)", FPR)
    return attacks, None


def _verdict(attacks: dict, z_u: float, near: int, n_members: int, n_samples: int) -> dict:
    """The headline numbers, the thresholds and the verdict."""
    best = max(attacks.values(), key=lambda a: a["auc"])
    best_tpr = max(attacks.values(), key=lambda a: a["tpr_at_1pct_fpr"])
    auc_bar = 0.5 + max(0.05, 3 * null_auc_sd(n_members, n_members))
    leaks = []
    if best["auc"] > auc_bar:
        leaks.append(f"membership inference AUC {best['auc']:.3f} ({best['attack']}) above {auc_bar:.3f}")
    if math.isfinite(z_u) and z_u < Z_U_THRESHOLD:
        leaks.append(f"data-copying Z_U {z_u:.2f} below {Z_U_THRESHOLD:g}")
    if near > NEAR_COPY_SHARE * n_samples:
        leaks.append(f"{near} of {n_samples} samples are near-copies of training images")
    return {
        "verdict": ("leaks: " + "; ".join(leaks)) if leaks else "no sign of leakage",
        "leaks": bool(leaks),
        "mia_auc": best["auc"], "mia_best_attack": best["attack"],
        "mia_tpr_at_1pct_fpr": best_tpr["tpr_at_1pct_fpr"], "mia_best_tpr_attack": best_tpr["attack"],
        "z_u": z_u, "n_near_copies": near, "near_copy_share": near / n_samples,
        "thresholds": {"mia_auc": auc_bar, "mia_auc_rule": "0.5 + max(0.05, 3 x the chance-level AUC sd "
                       "sqrt((n1+n2+1)/(12 n1 n2)))", "z_u": Z_U_THRESHOLD, "near_copy_share": NEAR_COPY_SHARE,
                       "near_copy_rule": "pixel d_train/d_heldout < 1/3"},
    }


def _closest_pairs(gen: torch.Tensor, ref, mp: dict) -> tuple[torch.Tensor, list]:
    """(generated, nearest member, nearest held-out) for the samples closest to a member, and their distances."""
    order = np.argsort(mp["d_train"], kind="stable")[:PAIRS_SHOWN]
    tiles = []
    for i in order:
        tiles += [gen[i], ref.T[int(mp["nn_train_index"][i])], ref.H[int(mp["nn_heldout_index"][i])]]
    return torch.stack(tiles), [[float(mp["d_train"][i]), float(mp["d_heldout"][i])] for i in order]


def format_audit(r: dict) -> str:
    """The short printed verdict: the numbers and one line on what each means."""
    p = r["protocol"]
    zu = r["z_u"]
    mem = r["memorisation"]["pixels"]
    lines = [
        f"audit of {p['run'] or p['model']} ({p['model']}, step {p['step']}; {p['data']}): "
        + ("LEAKS" if r["leaks"] else "no sign of leakage"),
        f"  membership inference: best AUC {r['mia_auc']:.3f} ({r['mia_best_attack']}), TPR at 1% FPR "
        f"{r['mia_tpr_at_1pct_fpr']:.3f} ({r['mia_best_tpr_attack']}); {p['n_members']} members vs "
        f"{p['n_nonmembers']} held-out",
        "      how well an attacker tells training images from unseen ones: 0.5 = chance, 1 = always; "
        f"flagged above {r['thresholds']['mia_auc']:.3f}",
        f"  data copying Z_U:     {'nan' if zu is None else f'{zu:.2f}'} ({p['feature_space']}, "
        f"{r['data_copying'][p['feature_space']]['cells_used']} cells)",
        "      Meehan et al. 2020: samples vs unseen data, distance to the nearest training image; "
        "<< 0 (below -3) = copying, ~0 = fine, > 0 = underfit",
        f"  near-copies:          {r['n_near_copies']} of {p['n_samples']} samples; d_train/d_heldout median "
        f"{mem['ratio_quantiles']['q50']:.3f}, 1st percentile {mem['ratio_quantiles']['q01']:.3f} (pixels)",
        f"      samples at least 3x closer to a training image than to any of {p['n_reference_each']} unseen ones; "
        "a ratio near 1 means no memorisation",
        f"  verdict: {r['verdict']}",
    ]
    if r.get("audit_json"):
        lines.append(f"  wrote {r['audit_json']} and {r.get('pairs_png')}")
    return "\n".join(lines)


def audit_html(path: str | Path) -> str:
    """The report's audit section for ``RUN/audit.json``: verdict, headline numbers, attacks, closest pairs."""
    import base64
    import html

    path = Path(path)
    try:
        r = json.loads(path.read_text())
        p = r["protocol"]
    except (ValueError, KeyError, TypeError):
        raise GanvaeError(f"{path}: not an audit written by `ganvae audit`; rerun it") from None

    def f(v, fmt=".4g"):
        return "–" if v is None else html.escape(format(v, fmt) if isinstance(v, float) else str(v))

    zu = r.get("z_u")
    rows = [
        ["membership inference AUC", f(r.get("mia_auc"), ".3f"), f"best attack {f(r.get('mia_best_attack'))}; "
         "0.5 = chance, 1 = members always told apart"],
        ["TPR at 1% FPR", f(r.get("mia_tpr_at_1pct_fpr"), ".3f"), f"best attack {f(r.get('mia_best_tpr_attack'))}"],
        ["data-copying Z_U", f(zu, ".2f"), f"Meehan et al. 2020, {f(p.get('feature_space'))}; below -3 = copying"],
        ["near-copies", f"{f(r.get('n_near_copies'))} of {f(p.get('n_samples'))}",
         f(r.get("thresholds", {}).get("near_copy_rule"))],
    ]
    body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
    attacks = "".join(f"<tr><td>{f(k)}</td><td>{f(a.get('auc'), '.3f')}</td>"
                      f"<td>{f(a.get('tpr_at_1pct_fpr'), '.3f')}</td><td>{f(a.get('description'))}</td></tr>"
                      for k, a in (r.get("attacks") or {}).items())
    out = [f"<h2>Leakage audit</h2><p><b>{f(r.get('verdict'))}</b></p>",
           f"<p class=note>{f(p.get('n_members'))} training members vs {f(p.get('n_nonmembers'))} held-out images "
           f"({f(p.get('split'))}); {f(p.get('n_samples'))} samples, seed {f(p.get('seed'))}, step {f(p.get('step'))}; "
           f"features: {f(p.get('feature_space'))} ({f(p.get('feature_reason'))}).</p>",
           "<table><thead><tr><th>measure</th><th>value</th><th>meaning</th></tr></thead>"
           f"<tbody>{body}</tbody></table>",
           "<table><thead><tr><th>attack</th><th>AUC</th><th>TPR at 1% FPR</th><th>score</th></tr></thead>"
           f"<tbody>{attacks}</tbody></table>"]
    png = path.parent / "audit_pairs.png"
    if png.is_file():
        b64 = base64.b64encode(png.read_bytes()).decode()
        out.append(f"<p class=note>{f(r.get('pairs_caption'))}</p><img alt='closest pairs' "
                   f"src='data:image/png;base64,{b64}' style='image-rendering:pixelated;max-width:100%'>")
    return "\n".join(out)

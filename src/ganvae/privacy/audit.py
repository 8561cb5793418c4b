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

Which images: the run's data config is reloaded exactly as training loaded it. Members are
the training split (after ``data.limit``); held-out images are the test split (the source's own,
or the seeded hold-out of sources without one) plus, when ``data.limit`` kept a subset, the
training-split images the limit left out. Both are seeded subsets of at most
``REFERENCE_CAP`` images; the memorisation ratio uses equally many of each.
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
from .copying import data_copying_test, memorisation
from .mia import attack_result, mc_scores, median_eps, nearest_sample_scores

REFERENCE_CAP = 10000   # at most this many training and held-out images take part
PAIRS_SHOWN = 16        # closest (generated, train, held-out) triples in audit_pairs.png
Z_U_THRESHOLD = -3.0    # Z_U below this: data copying
NEAR_COPY_SHARE = 0.01  # more than this share of samples being near-copies: leakage
FPR = 0.01


# ----------------------------------------------------------------------------------------- data
def _limit_index(n: int, limit: int, seed: int) -> np.ndarray:
    """The indices :func:`ganvae.data.load.limit_subset` keeps (the same seeded draw)."""
    return np.sort(np.random.default_rng([seed, 0x11A17]).permutation(n)[:limit])


def run_data(data_cfg) -> dict:
    """Training images (members), held-out images and how the split was made, for a run's data config."""
    import dataclasses

    from ..data import ImageData, load_data

    splits = load_data(data_cfg, progress=False)
    train, held = splits.train, splits.test
    meta = splits.meta
    split = (f"{meta['split']} split of {meta['source']}" + ("" if meta["split"] == "source" else
             f" (holdout {meta['holdout']:g}, split_seed {meta['split_seed']})"))
    extra = 0
    if data_cfg.limit is not None:
        full = load_data(dataclasses.replace(data_cfg, limit=None), progress=False).train
        if data_cfg.limit < len(full):
            keep = _limit_index(len(full), data_cfg.limit, data_cfg.split_seed)
            if torch.equal(full.images[torch.from_numpy(keep)], train.images):
                rest = torch.from_numpy(np.setdiff1d(np.arange(len(full)), keep))
                left = full.subset(rest)
                labels = (None if held.labels is None or left.labels is None
                          else torch.cat([held.labels, left.labels]))
                held = ImageData(torch.cat([held.images, left.images]), labels)
                extra = len(left)
                split += f"; plus the {extra} training-split images left out by data.limit={data_cfg.limit}"
    return {"train": train.images, "train_labels": train.labels, "heldout": held.images,
            "heldout_labels": held.labels, "meta": meta, "split": split, "limit_left_out": extra}


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
        x = _float(images[i:i + batch_size]).to(dev) * 2 - 1
        if getattr(model, "conditional", False):
            y = labels[i:i + batch_size].to(dev)
            out.append(model.D(x, y).flatten().double().cpu())
        else:
            out.append(model.D(x).flatten().double().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def vae_scores(model, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = 32, seed: int = 0,
               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per record: (ELBO estimated from ``k`` posterior samples, importance-weighted bound L_k), nats."""
    from ..metrics.likelihood import log_weights
    from ..objectives.vae import Bernoulli

    dev = model.device
    likelihood = getattr(model, "likelihood", None) or Bernoulli()  # VAE-GAN: Bernoulli logits
    gen = torch.Generator(device=dev).manual_seed(seed)
    elbo, iw = [], []
    for i in range(0, images.shape[0], batch_size):
        x = _float(images[i:i + batch_size]).to(dev)
        if getattr(model, "conditional", False):
            y = labels[i:i + batch_size].to(dev)
            shim = SimpleNamespace(encoder=lambda a, y=y: model.encoder(a, y),
                                   decoder=lambda z, y=y: model.decoder(z, y.repeat(z.shape[0] // y.shape[0])),
                                   likelihood=likelihood)
        else:
            shim = SimpleNamespace(encoder=model.encoder, decoder=model.decoder, likelihood=likelihood)
        lw = log_weights(shim, x, k, gen).double()
        elbo.append(lw.mean(1).cpu())
        iw.append((torch.logsumexp(lw, 1) - math.log(k)).cpu())
    return torch.cat(elbo).numpy(), torch.cat(iw).numpy()


# --------------------------------------------------------------------------------- the audit
def _features(name: str, meta: dict, source: str, device: str):
    """(feature net or None, space name, reason)."""
    from ..metrics.evaluate import pick_feature_net
    from ..metrics.features import get_feature_net

    if name in ("pixels", "none"):
        return None, "pixels", "asked for pixels"
    auto = name == "auto"
    net_name = pick_feature_net(meta, source) if auto else name
    why = {"mnist": "the digit classifier ganvae eval uses for digit-like data",
           "shapes": "the shapes factor net ganvae eval uses for shapes",
           "effnet": "EfficientNet-Lite0, what ganvae eval uses for other data"}.get(net_name, "asked for")
    if net_name == "inception":
        raise GanvaeError("--features inception needs the FID weights file; use mnist, shapes, effnet or pixels")
    try:
        return get_feature_net(net_name, device=device), net_name, ("auto: " if auto else "") + why
    except GanvaeError as e:
        if not auto:
            raise
        return None, "pixels", f"auto picked {net_name} but it is unavailable ({e}); fell back to pixels"


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


def audit(run_or_model, *, n_samples: int = 10000, n_members: int | None = None, seed: int = 0,
          features: str = "auto", data=None, cells: int | None = None, elbo_k: int = 32,
          device: str = "cpu", write: bool = True, out: str | Path | None = None, log=print) -> dict:
    """Audit a trained generator for training-data leakage; return the audit dict (also RUN/audit.json).

    ``run_or_model``: a run folder, or a loaded model (then ``data`` is a DataConfig, or
    ``(train_images, heldout_images[, train_labels, heldout_labels])``; default: rebuilt from the
    model's saved data meta).
    ``n_samples``: generated samples; ``n_members``: members and as many non-members for the
    membership attacks (default min(1000, what the data has)); ``features``: auto, mnist, shapes,
    effnet or pixels; ``cells``: k of the data-copying test (default :func:`default_cells`);
    ``out``: folder for audit.json and audit_pairs.png (default: the run folder; none for a
    model without ``out``).
    """
    from ..config import read_yaml, resolve
    from ..data import DataConfig
    from ..export import load_model
    from ..images import save_grid
    from ..models import GenerativeModel

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 20 <= n_samples <= 100_000:
        raise GanvaeError(f"--n-samples {n_samples}: expected 20 to 100000")
    if n_members is not None and (isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 2):
        raise GanvaeError(f"--n-members {n_members}: expected at least 2")
    run = None
    if isinstance(run_or_model, GenerativeModel):
        model = run_or_model
    else:
        run = Path(run_or_model)
        if not run.exists():
            raise GanvaeError(f"{run}: no such run folder")
        model = load_model(run, device=device)
        if not (run / "config.yaml").is_file():
            raise GanvaeError(f"{run}: not a run folder (no config.yaml beside the model)")
        if data is None:
            data = resolve(read_yaml(run / "config.yaml")).data
    meta_model = getattr(model, "meta", {}) or {}
    if data is None:
        dm = meta_model.get("data")
        if not dm:
            raise GanvaeError("audit of a model object needs data=DataConfig(...) or data=(train, heldout) images")
        data = DataConfig(source=dm["source"], holdout=dm.get("holdout", 0.1), split_seed=dm.get("split_seed", 0),
                          limit=dm.get("limit"), image_size=dm.get("image_size"), channels=dm.get("channels"),
                          n=(dm["n_train"] + dm["n_test"]) if dm["source"] == "shapes" else None)
    if isinstance(data, DataConfig):
        d = run_data(data)
    else:
        tr, ho, *labels = data  # (train, heldout) or (train, heldout, train_labels, heldout_labels)
        d = {"train": tr, "heldout": ho, "train_labels": labels[0] if labels else None,
             "heldout_labels": labels[1] if labels else None,
             "meta": {"source": "given", "channels": int(tr.shape[1]), "image_size": int(tr.shape[-1])},
             "split": "images given to audit()", "limit_left_out": 0}
    source = d["meta"]["source"]
    n_train, n_held = len(d["train"]), len(d["heldout"])
    avail = min(n_train, n_held)
    if avail < 2:
        raise GanvaeError(f"{source}: {n_train} training and {n_held} held-out images; the audit needs 2 of each")
    if n_members is None:
        n_members = min(1000, avail)
    elif n_members > avail:
        raise GanvaeError(f"--n-members {n_members}: more than the data has ({n_train} training and {n_held} "
                          f"held-out images); use at most {avail}")

    rng = np.random.default_rng([seed, 0xA0D17])
    pT = torch.from_numpy(rng.permutation(n_train)[:min(n_train, REFERENCE_CAP)])
    pH = torch.from_numpy(rng.permutation(n_held)[:min(n_held, REFERENCE_CAP)])
    T_big, H_big = _float(d["train"][pT]), _float(d["heldout"][pH])
    yT = d["train_labels"][pT] if d["train_labels"] is not None and d["train_labels"].dim() == 1 else None
    yH = d["heldout_labels"][pH] if d["heldout_labels"] is not None and d["heldout_labels"].dim() == 1 else None
    n_ref = min(len(T_big), len(H_big))

    was_training = model.training
    model.eval()
    try:
        gen = model.sample(n_samples, seed=seed).cpu().float()
        if tuple(gen.shape[1:]) != tuple(T_big.shape[1:]):
            raise GanvaeError(f"the model makes {tuple(gen.shape[1:])} images but the data is "
                              f"{tuple(T_big.shape[1:])}; audit it against the data it trained on")
        net, space, space_reason = _features(features, d["meta"], source, device)
        spaces = {"pixels": (gen, T_big, H_big)}
        if net is not None:
            spaces[space] = tuple(net.features(x) for x in (gen, T_big, H_big))

        # 1. memorisation, per space
        mem = {s: memorisation(g, t[:n_ref], h[:n_ref]) for s, (g, t, h) in spaces.items()}
        # 2. data copying (Meehan et al.) in the feature space (pixels when there is none)
        head_space = space if net is not None else "pixels"
        g, t, h = spaces[head_space]
        copying = {head_space: data_copying_test(t.numpy(), h.numpy(), g.numpy(), k=cells, seed=seed)}
        # 3. membership inference
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
        mem_img, non_img = T_big[:n_members], H_big[:n_members]
        mem_y = None if yT is None else yT[:n_members]
        non_y = None if yH is None else yH[:n_members]
        white_skipped = None
        if getattr(model, "conditional", False) and (mem_y is None or non_y is None):
            white_skipped = "a conditional model needs the records' class labels, which this data lacks"
        else:
            if hasattr(model, "D"):
                attacks["d_logit"] = attack_result(
                    "d_logit", discriminator_scores(model, mem_img, mem_y), discriminator_scores(model, non_img, non_y),
                    "white-box: the discriminator's logit on the record (higher = judged real)", FPR)
            if hasattr(model, "encoder"):
                e_m, iw_m = vae_scores(model, mem_img, mem_y, k=elbo_k, seed=seed)
                e_n, iw_n = vae_scores(model, non_img, non_y, k=elbo_k, seed=seed)
                attacks["elbo"] = attack_result(
                    "elbo", e_m, e_n, f"white-box: the per-example ELBO (mean over {elbo_k} posterior samples)", FPR)
                attacks[f"iw_bound_k{elbo_k}"] = attack_result(
                    f"iw_bound_k{elbo_k}", iw_m, iw_n,
                    f"white-box: the importance-weighted bound L_{elbo_k} (Burda et al. 2016)", FPR)
    finally:
        model.train(was_training)

    best = max(attacks.values(), key=lambda a: a["auc"])
    best_tpr = max(attacks.values(), key=lambda a: a["tpr_at_1pct_fpr"])
    z_u = copying[head_space]["z_u"]
    near = mem["pixels"]["summary"]["n_near_copies"]
    sd0 = null_auc_sd(n_members, n_members)
    auc_bar = 0.5 + max(0.05, 3 * sd0)
    leaks = []
    if best["auc"] > auc_bar:
        leaks.append(f"membership inference AUC {best['auc']:.3f} ({best['attack']}) above {auc_bar:.3f}")
    if math.isfinite(z_u) and z_u < Z_U_THRESHOLD:
        leaks.append(f"data-copying Z_U {z_u:.2f} below {Z_U_THRESHOLD:g}")
    if near > NEAR_COPY_SHARE * n_samples:
        leaks.append(f"{near} of {n_samples} samples are near-copies of training images")
    verdict = ("leaks: " + "; ".join(leaks)) if leaks else "no sign of leakage"

    result = {
        "verdict": verdict,
        "leaks": bool(leaks),
        "mia_auc": best["auc"],
        "mia_best_attack": best["attack"],
        "mia_tpr_at_1pct_fpr": best_tpr["tpr_at_1pct_fpr"],
        "mia_best_tpr_attack": best_tpr["attack"],
        "z_u": z_u,
        "n_near_copies": near,
        "near_copy_share": near / n_samples,
        "thresholds": {"mia_auc": auc_bar, "mia_auc_rule": "0.5 + max(0.05, 3 x the chance-level AUC sd "
                       "sqrt((n1+n2+1)/(12 n1 n2)))", "z_u": Z_U_THRESHOLD,
                       "near_copy_share": NEAR_COPY_SHARE,
                       "near_copy_rule": "pixel d_train/d_heldout < 1/3"},
        "attacks": attacks,
        "white_box_skipped": white_skipped,
        "memorisation": {s: m["summary"] for s, m in mem.items()},
        "data_copying": {s: c for s, c in copying.items()},
        "protocol": {
            "run": str(run) if run is not None else None,
            "model": getattr(model, "registered_name", type(model).__name__),
            "step": meta_model.get("step"),
            "data": source, "split": d["split"],
            "n_train_images": n_train, "n_heldout_images": n_held,
            "n_samples": n_samples, "n_members": n_members, "n_nonmembers": n_members,
            "n_reference_each": n_ref, "n_copying_train": len(T_big), "n_copying_heldout": len(H_big),
            "feature_space": head_space, "feature_reason": space_reason,
            "spaces": list(spaces), "seed": seed, "sample_seed": seed,
            "subset_rule": f"seeded permutations (numpy default_rng([seed, 0xA0D17])) of the training and held-out "
                           f"images, at most {REFERENCE_CAP} each; members/non-members = the first n_members of each; "
                           f"memorisation references = the first {n_ref} of each",
            "elbo_k": elbo_k if "elbo" in attacks else None,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    result = _clean(result)

    folder = Path(out) if out is not None else run
    if write and folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        mp = mem["pixels"]
        order = np.argsort(mp["d_train"], kind="stable")[:PAIRS_SHOWN]
        tiles = []
        for i in order:
            tiles += [gen[i], T_big[int(mp["nn_train_index"][i])], H_big[int(mp["nn_heldout_index"][i])]]
        save_grid(torch.stack(tiles), folder / "audit_pairs.png", nrow=12)
        result["pairs_png"] = str(folder / "audit_pairs.png")
        result["pairs_caption"] = ("the generated samples closest to a training image (pixels), smallest first; "
                                   "each triple: generated | nearest training image | nearest held-out image")
        result["pairs_pixel_distances"] = [[float(mp["d_train"][i]), float(mp["d_heldout"][i])] for i in order]
        (folder / "audit.json").write_text(json.dumps(result, indent=2) + "\n")
        result["audit_json"] = str(folder / "audit.json")
    if log:
        log(format_audit(result))
    return result


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
        lines.append(f"  wrote {r['audit_json']} and {r['pairs_png']}")
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

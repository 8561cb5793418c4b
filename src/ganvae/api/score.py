"""``score``: per-image anomaly scores of a run (see :mod:`ganvae.apps.anomaly`), written as CSV.

GAN scores need the discriminator, which the inference export (``RUN/model``) leaves out: it is read from the
run's checkpoint (``RUN/checkpoints/latest.pt``), the generator from the export (its EMA weights).
The f-AnoGAN encoder is trained on first use from the run's training split, seeded, and saved as
``RUN/anomaly/encoder.safetensors`` + ``encoder.json``; later calls reuse it while its options and the
model's step match, and retrain it otherwise.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..apps.anomaly import SCORES as ANOMALY_SCORES
from ..apps.anomaly import anomaly_scores, resolve_scores
from ..apps.encoder import Encoder, EncoderConfig, train_encoder
from ..data import DataConfig, load_data
from ..errors import GanvaeError
from ..models import build
from ..runfolder import read_config
from ..training.checkpoint import load_state
from ..util.device import resolve_device
from ..util.files import atomic_write_bytes, atomic_write_text
from .runs import check_seed, load

__all__ = ["score", "scoring_model", "read_images", "fanogan_encoder", "to_csv", "ANOMALY_SCORES"]


def scoring_model(run: Path, device: str):
    """The run's model with everything scoring needs: the export, plus D from the checkpoint when left out."""
    model = load(run, device=device)
    ckpt = run / "checkpoints" / "latest.pt"
    if model.has_discriminator or not type(model).has_discriminator or not ckpt.is_file():
        return model
    parts = set((model.meta or {}).get("parts") or [])
    full = build(model.registered_name, model.config)
    try:
        full.load_state_dict(load_state(ckpt)["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise GanvaeError(f"{ckpt}: its model weights do not match the export ({str(e).splitlines()[0][:120]})")
    full.load_state_dict({k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in parts}, strict=False)
    full.meta = model.meta
    return full.to(device).eval()


def read_images(spec: str, expect: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(uint8 images (N, C, H, W), labels or None, a description) of ``--images``: a folder of images, an .npz
    file, or a data source (its own test split when it has one, else every image). A folder is resized to the
    run's size (folder images have no one size, as in training); anything else must match ``expect``."""
    c, s, _ = expect
    folder = Path(spec).expanduser().is_dir() or spec.startswith("folder:")
    cfg = DataConfig(source=spec, holdout=0.0, cache="off", image_size=s if folder else None)
    try:
        splits = load_data(cfg, progress=False)
    except GanvaeError as e:
        raise GanvaeError(f"--images {spec}: {e}") from None
    part = splits.test if splits.meta["split"] == "source" else splits.train
    imgs = part.images if isinstance(part.images, torch.Tensor) else part.images.materialize()
    got = tuple(int(v) for v in imgs.shape[1:])
    if got != (c, s, s):
        raise GanvaeError(f"--images {spec}: images are {got[0]}x{got[1]}x{got[2]} (channels x height x width); "
                          f"this run expects {c}x{s}x{s}")
    if imgs.shape[0] == 0:
        raise GanvaeError(f"--images {spec}: no images")
    what = "test split" if splits.meta["split"] == "source" else "all images"
    return imgs, part.labels, f"{spec} ({what}, {imgs.shape[0]} images)"


def fanogan_encoder(run: Path, model, cfg: EncoderConfig, log=print) -> Encoder:
    """The run's f-AnoGAN encoder: loaded from ``RUN/anomaly/`` when its options and model step match, else
    trained on the run's training split and saved there."""
    folder = run / "anomaly"
    meta = {"encoder": cfg.to_dict(), "model_step": (model.meta or {}).get("step")}
    weights, info = folder / "encoder.safetensors", folder / "encoder.json"
    try:
        if weights.is_file() and json.loads(info.read_text()) == meta:
            enc = Encoder(cfg)
            enc.load_state_dict(st_load(weights.read_bytes()))
            return enc.to(model.device).eval()
    except (OSError, ValueError, RuntimeError):
        pass  # unreadable or stale: train afresh below
    train = load_data(read_config(run).data, progress=False).train
    imgs = train.images if isinstance(train.images, torch.Tensor) else train.images.materialize()
    if log:
        log(f"training the f-AnoGAN encoder ({cfg.steps} steps on {imgs.shape[0]} training images, seed {cfg.seed})")
    enc = train_encoder(model, imgs, cfg, log=log)
    folder.mkdir(exist_ok=True)
    atomic_write_bytes(weights, st_save({k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items()}))
    atomic_write_text(info, json.dumps(meta, indent=2) + "\n")
    return enc


def score(run: str | Path, images: str, out: str | Path | None = None, scores: str | list[str] | None = None,
          k: int = 64, seed: int = 0, kappa: float = 1.0, encoder_steps: int = 1000, device: str = "cpu",
          log=print) -> dict:
    """Anomaly scores (higher = more anomalous) for each image of ``images`` (folder, .npz, data source),
    written to ``out`` (default ``RUN/scores.csv``): columns ``index``, ``label`` (when the images have labels),
    then one per score. Returns ``{"csv", "n", "scores": {name: (N,) array}, "labels", "images"}``."""
    check_seed(seed)
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise GanvaeError(f"{run}: not a run folder (no config.yaml)")
    if not 1 <= encoder_steps <= 1_000_000:
        raise GanvaeError(f"--encoder-steps {encoder_steps}: expected 1 to 1000000")
    if not 0 <= kappa <= 1e6:
        raise GanvaeError(f"--kappa {kappa}: expected a number from 0 to 1e6")
    path = Path(out) if out is not None else run / "scores.csv"
    if path.suffix.lower() != ".csv":
        raise GanvaeError(f"--out {path}: expected a .csv file")
    model = scoring_model(run, str(resolve_device(device, "--device")))
    names = resolve_scores(model, scores, f"run ({model.registered_name})")
    c = model.config
    x, labels, what = read_images(str(images), (c.channels, c.image_size, c.image_size))
    enc = None
    if "fanogan" in names:
        in_dim = c.channels * c.image_size * c.image_size
        ecfg = EncoderConfig(in_dim=in_dim, latent_dim=c.latent_dim, steps=encoder_steps, kappa=kappa, seed=seed)
        enc = fanogan_encoder(run, model, ecfg, log=log)
    result = anomaly_scores(model, x, names, k=k, seed=seed, encoder=enc, kappa=kappa)
    atomic_write_text(path, to_csv(result, labels))
    if log:
        means = ", ".join(f"{n} {v.mean():.4g}" for n, v in result.items())
        log(f"scored {what} with {', '.join(names)}; means: {means}; wrote {path}")
    return {"csv": str(path), "n": int(x.shape[0]), "scores": result, "labels": labels, "images": what}


def to_csv(result: dict, labels: torch.Tensor | None) -> str:
    """The CSV text: ``index[,label],<score>,...``, one row per image."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(result)
    w.writerow(["index"] + (["label"] if labels is not None else []) + names)
    n = len(next(iter(result.values()))) if result else 0
    for i in range(n):
        w.writerow([i] + ([int(labels[i])] if labels is not None else []) + [f"{result[s][i]:.6g}" for s in names])
    return buf.getvalue()

"""Train the offline feature networks shipped with ganvae.

    python -m ganvae.metrics.train_feature_net mnist  [--epochs 3] [--out DIR]
    python -m ganvae.metrics.train_feature_net shapes [--epochs 6] [--out DIR]

Writes ``DIR/<name>.safetensors`` (the state dict; no pickle) and
``DIR/<name>.json`` (architecture, input spec, test metrics, the command,
seconds, torch version, date). ``DIR`` defaults to the package's
``ganvae/metrics/weights`` folder, where :func:`ganvae.metrics.features.get_feature_net`
looks. Training is seeded (``--seed``, default 0) and runs on the CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .feature_nets import SHAPE_SYMMETRY, DigitClassifier, ShapesNet

DEFAULT_OUT = Path(__file__).resolve().parent / "weights"
DEFAULTS = {
    "mnist": {"epochs": 3, "batch_size": 128, "lr": 3e-3},
    "shapes": {"epochs": 6, "batch_size": 128, "lr": 3e-3, "n": 40000},
}


def _to_float(u8: torch.Tensor) -> torch.Tensor:
    return u8.float().div_(255.0)


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by an independent integer offset in [-max_shift, max_shift] (zero fill)."""
    b, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    rows = (torch.arange(h)[None, :] + dy[:, None])  # (b, h)
    cols = (torch.arange(w)[None, :] + dx[:, None])  # (b, w)
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


@torch.no_grad()
def _predict(model: torch.nn.Module, images: torch.Tensor, fn, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    outs = [fn(_to_float(images[i : i + batch_size].to(dev))).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outs)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination; for (N, 2) targets the vector (pooled) version."""
    pred, target = pred.double().reshape(len(pred), -1), target.double().reshape(len(target), -1)
    ss_res = ((pred - target) ** 2).sum()
    ss_tot = ((target - target.mean(0, keepdim=True)) ** 2).sum()
    return float(1.0 - ss_res / ss_tot)


def _train_loop(model, images, step_loss, epochs, batch_size, lr, seed, log, augment=None):
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = len(images) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(images), generator=gen)
        total, count = 0.0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x, gen)  # on the CPU, uint8: same random stream whatever the device
            x = _to_float(x.to(dev, non_blocking=True))
            loss = step_loss(model, x, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f} ({time.time() - t0:.0f}s)")


def train_mnist(args, log) -> tuple[torch.nn.Module, dict, dict]:
    from ganvae.data import DataConfig, load_data

    s = load_data(DataConfig(source="mnist"), progress=False)
    torch.manual_seed(args.seed)
    model = DigitClassifier().to(args.device)
    labels = s.train.labels.to(args.device)

    def step_loss(m, x, idx):
        return F.cross_entropy(m(x), labels[idx.to(labels.device)], label_smoothing=0.05)

    _train_loop(
        model, s.train.images, step_loss, args.epochs, args.batch_size, args.lr, args.seed, log,
        augment=lambda x, g: random_shift(x, 2, g),
    )
    logits = _predict(model, s.test.images, model)
    acc = float((logits.argmax(1) == s.test.labels).float().mean())
    metrics = {"test_accuracy": round(acc, 5), "test_errors": int((logits.argmax(1) != s.test.labels).sum()),
               "test_set": "MNIST test (10000 images)"}
    train_info = {"data": "MNIST train (60000 images)", "augmentation": "random integer shifts of +-2 px, zero fill",
                  "loss": "cross-entropy, label smoothing 0.05"}
    return model, metrics, train_info


def shapes_metrics(model: ShapesNet, images: torch.Tensor, factors: torch.Tensor) -> dict:
    """Per-factor test metrics of a ShapesNet on uint8 images with their factor rows."""
    raw = _predict(model, images, model.raw)
    p, t = ShapesNet.decode(raw), ShapesNet.targets(factors)
    n = len(images)
    rot = p["rotation"][torch.arange(n), t["shape"]]  # the true shape's head
    k = torch.tensor(SHAPE_SYMMETRY, dtype=torch.float32)[t["shape"]]
    rot_err = torch.atan2(rot[:, 1], rot[:, 0]) - torch.atan2(t["rotation"][:, 1], t["rotation"][:, 0])
    rot_err = torch.remainder(rot_err + math.pi, 2 * math.pi) - math.pi  # in k*theta units
    hue_err = torch.atan2(p["hue"][:, 1], p["hue"][:, 0]) - torch.atan2(t["hue"][:, 1], t["hue"][:, 0])
    hue_err = torch.remainder(hue_err + math.pi, 2 * math.pi) - math.pi
    per_shape_acc = {}
    pred_shape = p["shape"].argmax(1)
    for i, name in enumerate(("square", "ellipse", "triangle")):
        m = t["shape"] == i
        per_shape_acc[name] = round(float((pred_shape[m] == i).float().mean()), 5)
    return {
        "shape_accuracy": round(float((pred_shape == t["shape"]).float().mean()), 5),
        "shape_accuracy_per_class": per_shape_acc,
        "scale_r2": round(_r2(p["scale"], t["scale"]), 5),
        "rotation_r2": round(_r2(rot, t["rotation"]), 5),
        "rotation_mae_degrees": round(float((rot_err.abs() / k).mean() * 180 / math.pi), 3),
        "x_r2": round(_r2(p["x"], t["x"]), 5),
        "y_r2": round(_r2(p["y"], t["y"]), 5),
        "hue_r2": round(_r2(p["hue"], t["hue"]), 5),
        "hue_mae_degrees": round(float(hue_err.abs().mean() * 180 / math.pi), 3),
    }


def train_shapes(args, log) -> tuple[torch.nn.Module, dict, dict]:
    from ganvae.data import DataConfig, load_data

    t0 = time.time()
    s = load_data(DataConfig(source="shapes", n=args.n, split_seed=args.seed), progress=False)
    log(f"rendered {args.n} shapes images in {time.time() - t0:.0f}s")
    torch.manual_seed(args.seed)
    model = ShapesNet().to(args.device)
    factors = s.train.factors.to(args.device)

    def step_loss(m, x, idx):
        return ShapesNet.loss(m.raw(x), factors[idx.to(factors.device)])

    _train_loop(model, s.train.images, step_loss, args.epochs, args.batch_size, args.lr, args.seed, log)
    metrics = shapes_metrics(model, s.test.images, s.test.factors)
    metrics["test_set"] = (
        f"held-out 10% of DataConfig(source='shapes', n={args.n}, split_seed={args.seed}) ({len(s.test)} images)"
    )
    train_info = {
        "data": f"DataConfig(source='shapes', n={args.n}, split_seed={args.seed}) train split ({len(s.train)} images)",
        "augmentation": "none (any geometric change alters the factors)",
        "loss": "cross-entropy(shape) + MSE(standardised scale, x, y) + 2*MSE(cos/sin k*rotation, true shape's head, "
                "k = 4 square, 2 ellipse, 3 triangle) + 2*MSE(cos/sin 2*pi*hue)",
    }
    return model, metrics, train_info


SPECS = {
    "mnist": {
        "train": train_mnist,
        "architecture": "DigitClassifier",
        "input": {"channels": 1, "size": 28, "value_range": [0.0, 1.0], "dtype": "float32"},
        "outputs": {"logits": 10, "features": DigitClassifier.feature_dim},
        "features_layer": "fc: Linear(3136->128) + BatchNorm1d + ReLU (penultimate, before dropout)",
    },
    "shapes": {
        "train": train_shapes,
        "architecture": "ShapesNet",
        "input": {"channels": 3, "size": 32, "value_range": [0.0, 1.0], "dtype": "float32"},
        "outputs": {"logits": 3, "features": ShapesNet.feature_dim,
                    "raw": "14 = 3 shape logits, scale, x, y, 3x(cos, sin) rotation, (cos, sin) hue"},
        "features_layer": "fc: Linear(2048->256) + BatchNorm1d + ReLU (penultimate, before dropout)",
    },
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ganvae.metrics.train_feature_net", description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=sorted(SPECS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--n", type=int, default=None, help="shapes only: images to render (10%% held out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    for k, v in DEFAULTS[args.name].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.threads:
        torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"[{args.name}] {msg}", flush=True)

    spec = SPECS[args.name]
    t0 = time.time()
    model, metrics, train_info = spec["train"](args, log)
    model = model.cpu()
    seconds = time.time() - t0
    log(f"test metrics: {json.dumps(metrics)}")

    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    wpath = args.out / f"{args.name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(wpath), metadata={"architecture": spec["architecture"], "name": args.name})
    digest = hashlib.sha256(wpath.read_bytes()).hexdigest()
    cmd = f"python -m ganvae.metrics.train_feature_net {args.name} --epochs {args.epochs} --seed {args.seed}"
    if args.name == "shapes":
        cmd += f" --n {args.n}"
    if args.device != "cpu":
        cmd += f" --device {args.device}"
    info = {
        "name": args.name,
        "architecture": spec["architecture"],
        "input": spec["input"],
        "outputs": spec["outputs"],
        "features_layer": spec["features_layer"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_metrics": metrics,
        "training": {
            **train_info,
            "command": cmd,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"Adam, OneCycleLR max_lr={args.lr}",
            "seed": args.seed,
            "seconds": round(seconds, 1),
            "device": (f"cpu ({torch.get_num_threads()} threads, {platform.machine()})" if args.device == "cpu"
                       else f"{args.device} ({torch.cuda.get_device_name()})" if str(args.device).startswith("cuda")
                       else str(args.device)),
        },
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "weights_file": wpath.name,
        "weights_sha256": digest,
        "weights_bytes": wpath.stat().st_size,
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"wrote {wpath} ({wpath.stat().st_size / 1e6:.2f} MB) and {args.name}.json in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

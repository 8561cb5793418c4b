"""Wall-clock to quality: ganvae's MNIST GAN and VAE (settings in ``OURS``) against the tutorial loops.

    .venv/bin/python benchmarks/time_to_quality.py                        # GAN 8 min + VAE 4 min per loop
    .venv/bin/python benchmarks/time_to_quality.py --gan-minutes 20 --vae-minutes 10 --device cuda \\
        --results benchmarks/results/time-to-quality-gpu.md

Both loops train in this process, one after the other, on the same MNIST train split; only training
steps are timed (scoring pauses the clock). Every ``--eval-every`` (GAN) or ``--vae-eval-every`` (VAE) seconds of training:

- GAN: domain FID (features of the shipped MNIST classifier, ``--n`` generated samples against ``--n``
  MNIST test images, latent seed 0). The reference generator is scored with its BatchNorm statistics
  recomputed on its own outputs (standing statistics, as ganvae scores its EMA generator), so neither
  side loses to stale running statistics. The target of the evaluation issue is 2 x the floor (FID of
  ``--n`` real *train* images).
- VAE: held-out ELBO in nats per image (Bernoulli likelihood on the [0, 1] pixels, as the PyTorch VAE
  example trains; one reparameterised sample per image with a fixed seed, the same function for both).
  The target is the reference's final ELBO.

The reference is :mod:`reference` (PyTorch's DCGAN tutorial and VAE example, batch 128) over
ganvae's networks at the default sizes; ganvae's side uses its own loop with the options given below
(the choice is free: architecture, objective, batch size and learning rates).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from reference import TutorialGAN, TutorialVAE  # noqa: E402
from speed import cpu_model  # noqa: E402

from ganvae.data import DataConfig, load_data  # noqa: E402
from ganvae.metrics.evaluate import TrainingEvaluator, subset  # noqa: E402
from ganvae.metrics.frechet import fid  # noqa: E402
from ganvae.metrics.registry import Side  # noqa: E402
from ganvae.models import MODELS, build, standing_stats  # noqa: E402
from ganvae.training import TrainConfig, Trainer  # noqa: E402

# ganvae's side: the demo's GAN (narrower D, higher learning rates, EMA) and the MLP VAE at a higher
# learning rate and batch (on this CPU it beat the conv VAE at widths 16 and 32, lr 1e-3 to 3e-3, to -104 nats)
OURS = {
    "gan": ("dcgan", {"g_width": 64, "d_width": 32, "lr_g": 5e-4, "lr_d": 5e-4}, 64),
    "vae": ("mlp-vae", {"lr": 2e-3}, 128),
}


def model_of(name: str, over: dict, meta: dict):
    cfg = MODELS.get(name).config_class(image_size=meta["image_size"], channels=meta["channels"], **over)
    return build(name, cfg)


@torch.no_grad()
def test_elbo(encoder, decoder, x: torch.Tensor, seed: int = 0) -> float:
    """Mean ELBO (nats per image) of a Bernoulli-on-[0,1] VAE on ``x``; one fixed-seed sample per image."""
    was = encoder.training, decoder.training
    encoder.eval()
    decoder.eval()
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(x), 500):
        xb = x[i:i + 500]
        mu, logvar = encoder(xb).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
        rec = -F.binary_cross_entropy_with_logits(decoder(z), xb, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        total += float((rec - kl).sum())
    encoder.train(was[0])
    decoder.train(was[1])
    return total / len(x)


def run_loop(step, score, minutes: float, every_s: float, label: str) -> list[dict]:
    """Train with ``step()`` for ``minutes`` of step time, scoring every ``every_s`` seconds."""
    curve, t_train, images, next_eval = [], 0.0, 0, every_s
    while t_train < minutes * 60:
        t = time.perf_counter()
        images += step()
        t_train += time.perf_counter() - t
        if t_train >= next_eval or t_train >= minutes * 60:
            value = score()
            curve.append({"train_s": round(t_train, 1), "kimg": round(images / 1000, 1), "value": value})
            print(f"  {label:9s} {t_train:7.1f}s {images / 1000:7.1f}k img  {value:.4g}", flush=True)
            next_eval += every_s
    return curve


def first_time(curve: list[dict], ok) -> float | None:
    return next((p["train_s"] for p in curve if ok(p["value"])), None)


def run_ours(kind: str, splits, args, device, score, minutes: float, every_s: float) -> tuple[list[dict], dict]:
    """ganvae's loop (``OURS[kind]``) through :func:`run_loop`; ``score(model, trainer)``; the curve and config."""
    name, over, batch = OURS[kind]
    torch.manual_seed(args.seed)
    model = model_of(name, over, splits.meta).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(model, TrainConfig(batch_size=batch, seed=args.seed, tensorboard=False, report=False),
                     splits.train.images, splits.train.labels, tmp, device)

        def step():
            tr.train_step()
            return tr._images_this_step

        curve = run_loop(step, lambda: score(model, tr), minutes, every_s, "ganvae")
    return curve, {"model": name, **over, "batch_size": batch}


def bench_gan(splits, args, device) -> dict:
    meta = splits.meta
    ev = TrainingEvaluator("fid", None, splits, args.n, seed=0, device=str(device))
    floor = fid(Side(subset(splits.train.images, args.n, 1).float() / 255, ev.ref.net).features, ev.ref.features)
    out = {"floor": floor, "target": 2 * floor}
    print(f"GAN: FID floor {floor:.4f}, target {2 * floor:.4f}", flush=True)

    torch.manual_seed(args.seed)
    ref_model = model_of("dcgan", {}, meta).to(device)
    ref = TutorialGAN(ref_model.G, ref_model.D, ref_model.config.latent_dim, splits.train.images,
                      splits.train.labels, 128, device)

    def ref_score():
        gen = torch.Generator(device=device).manual_seed(12345)
        net = standing_stats(ref_model.G, lambda n: ref_model.latent(n, gen))
        return ev(ref_model, net)["eval/fid"]

    out["reference"] = run_loop(ref.step, ref_score, args.gan_minutes, args.eval_every, "reference")

    out["ganvae"], out["ours_config"] = run_ours("gan", splits, args, device,
                                                 lambda model, tr: ev(model, tr.sampling_net())["eval/fid"],
                                                 args.gan_minutes, args.eval_every)
    return out


def bench_vae(splits, args, device) -> dict:
    meta = splits.meta
    x_test = subset(splits.test.images, args.n, 0).float().div(255).to(device)
    torch.manual_seed(args.seed)
    ref_model = model_of("vae", {}, meta).to(device)
    ref = TutorialVAE(ref_model.encoder, ref_model.decoder, splits.train.images, splits.train.labels, 128, device)
    out = {"reference": run_loop(ref.step, lambda: test_elbo(ref_model.encoder, ref_model.decoder, x_test),
                                 args.vae_minutes, args.vae_eval_every, "reference")}
    out["ganvae"], out["ours_config"] = run_ours("vae", splits, args, device,
                                                 lambda model, tr: test_elbo(model.encoder, model.decoder, x_test),
                                                 args.vae_minutes, args.vae_eval_every)
    out["target"] = out["reference"][-1]["value"]
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res), figsize=(5.5 * len(res), 4), squeeze=False)
    for ax, (kind, r) in zip(axes[0], res.items()):
        for who, style in (("reference", "o--"), ("ganvae", "s-")):
            c = r[who]
            ax.plot([p["train_s"] / 60 for p in c], [p["value"] for p in c], style, label=who)
        if kind == "gan":
            ax.set_yscale("log")
            ax.axhline(r["target"], color="grey", lw=1, ls=":", label="target (2 x floor)")
            ax.set_ylabel("domain FID (log scale, lower is better)")
        else:
            ax.axhline(r["target"], color="grey", lw=1, ls=":", label="reference's final ELBO")
            ax.set_ylabel("held-out ELBO, nats per image (higher is better)")
        ax.set_xlabel("training wall-clock (minutes)")
        ax.set_title({"gan": "GAN on MNIST", "vae": "VAE on MNIST"}[kind])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="gan,vae")
    ap.add_argument("--gan-minutes", type=float, default=8.0)
    ap.add_argument("--vae-minutes", type=float, default=4.0)
    ap.add_argument("--eval-every", type=float, default=60.0, help="seconds of training between GAN scores")
    ap.add_argument("--vae-eval-every", type=float, default=10.0, help="seconds of training between VAE scores")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results", default="benchmarks/results/time-to-quality.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    splits = load_data(DataConfig(source="mnist"), progress=False)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    # parts not run now keep their earlier results (each part records its own command, date and machine)
    res = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    machine = (torch.cuda.get_device_name(0) if device.type == "cuda" else
               f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} torch threads")
    stamp = {"date": str(dt.date.today()), "machine": machine, "torch": torch.__version__, "n": args.n,
             "command": f"python {' '.join(shlex.quote(a) for a in sys.argv)}"}
    parts = args.parts.split(",")
    if "gan" in parts:
        res["gan"] = {**bench_gan(splits, args, device), **stamp, "every_s": args.eval_every}
    if "vae" in parts:
        res["vae"] = {**bench_vae(splits, args, device), **stamp, "every_s": args.vae_eval_every}
    res = {k: res[k] for k in ("gan", "vae") if k in res}
    png = out.with_suffix(".png")
    plot(res, png)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["# Time to quality: ganvae against the tutorial loops on MNIST", "",
             "- Protocol: see the script's docstring. Only training steps are timed (scoring pauses the clock).",
             f"- Curves: `{png.name}`; raw points: `{out.with_suffix('.json').name}`.", ""]
    for kind, r in res.items():
        ref, ours = r["reference"], r["ganvae"]
        head = [f"- Date: {r.get('date', '?')}; machine: {r.get('machine', '?')}; torch {r.get('torch', '?')}",
                f"- Command: `{r.get('command', '?')}`",
                f"- Scores every {r.get('every_s', '?')} s of training; n = {r.get('n', '?')}.", ""]
        if kind == "gan":
            better = lambda v, t: v <= t  # noqa: E731
            lines += [f"## GAN (reference: dcgan defaults, tutorial loop, batch 128; ganvae: {r['ours_config']})", "",
                      *head, f"FID floor {r['floor']:.4f}; the evaluation issue's target 2 x floor = {r['target']:.4f}.", ""]
        else:
            better = lambda v, t: v >= t  # noqa: E731
            lines += [f"## VAE (reference: vae defaults, PyTorch VAE example loop, batch 128; ganvae: "
                      f"{r['ours_config']})", "", *head,
                      f"Target: the reference's final held-out ELBO, {r['target']:.2f} nats.", ""]
        t_ref, t_ours = first_time(ref, lambda v: better(v, r["target"])), first_time(ours, lambda v: better(v, r["target"]))
        lines.append(f"Time to the target: reference {_t(t_ref)}, ganvae {_t(t_ours)}"
                     + (f"; ratio {t_ref / t_ours:.2f}x" if t_ref and t_ours else "") + ".")
        # the reference's final value, and when ganvae got there
        fin = ref[-1]["value"]
        t_fin = first_time(ours, lambda v: better(v, fin))
        lines.append(f"The reference's final value {fin:.4g} after {ref[-1]['train_s'] / 60:.1f} min; ganvae reached "
                     f"it after {_t(t_fin)}" + (f" ({ref[-1]['train_s'] / t_fin:.2f}x sooner)." if t_fin else "."))
        lines += ["", "| train min | reference kimg | reference | ganvae kimg | ganvae |", "|---:|---:|---:|---:|---:|"]
        for i in range(max(len(ref), len(ours))):
            a = ref[i] if i < len(ref) else None
            b = ours[i] if i < len(ours) else None
            tm = (a or b)["train_s"] / 60
            cell = lambda p: (str(p["kimg"]), f"{p['value']:.4g}") if p else ("", "")  # noqa: E731
            lines.append(f"| {tm:.1f} | {' | '.join(cell(a))} | {' | '.join(cell(b))} |")
        lines.append("")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} and {png}")


def _t(s: float | None) -> str:
    return "not reached" if s is None else f"{s / 60:.1f} min"


if __name__ == "__main__":
    main()

"""`ganvae score`: per-image anomaly scores of a trained run, as CSV."""

from __future__ import annotations

from .. import api
from .common import DEVICE_HELP


def add(sub) -> None:
    p = sub.add_parser(
        "score", help="anomaly scores per image from a trained run (higher = more anomalous), as CSV",
        description="One or more anomaly scores per image; higher means the model finds the image less likely. "
                    "VAEs: neg_elbo, neg_iwae (importance-weighted bound, --k samples), recon (reconstruction "
                    "error). GANs: disc (negated discriminator logit), fanogan (f-AnoGAN residual: an encoder into "
                    "G's latent space is trained on first use, seeded, and saved in RUN/anomaly/). The CSV has "
                    "columns index, label (when the images have labels), then one per score.")
    p.add_argument("run", help="run folder")
    p.add_argument("--images", required=True, metavar="DIR|NPZ|SOURCE",
                   help="a folder of images (resized to the run's size), an .npz file, or a data source such as "
                        "mnist (its test split when it has one, else every image); size and channels must match "
                        "the run's")
    p.add_argument("--out", help="CSV file (default: RUN/scores.csv)")
    p.add_argument("--scores", metavar="A,B", help="which scores (default: every score the model offers: "
                   + ", ".join(api.ANOMALY_SCORES) + ")")
    p.add_argument("--k", type=int, default=64, help="posterior samples for neg_elbo and neg_iwae (default: 64)")
    p.add_argument("--kappa", type=float, default=1.0,
                   help="fanogan: weight of the discriminator-feature residual (default: 1)")
    p.add_argument("--encoder-steps", type=int, default=1000,
                   help="fanogan: training steps of the encoder when it is (re)trained (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples and the encoder (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_score)


def cmd_score(a) -> int:
    api.score(a.run, a.images, out=a.out, scores=a.scores, k=a.k, seed=a.seed, kappa=a.kappa,
              encoder_steps=a.encoder_steps, device=a.device, log=print)
    return 0

"""GPU smoke check: train, resume and sample on CUDA; report throughput and resume exactness.

    PYTHONPATH=src python benchmarks/device_check.py DATA_SOURCE OUT_DIR

Run on a machine with a GPU (the project's device tool); prints JSON lines.
"""

from __future__ import annotations

import json
import sys
import time

import torch

import ganvae
from ganvae.training import checkpoint as ckpt


def main(source: str, out: str) -> None:
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                      "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
    for model, sets, bs in [("dcgan", [], 128), ("dcgan", ["model.g_width=64", "model.d_width=32"], 128),
                            ("vae", [], 128), ("mlp-gan", [], 128)]:
        t = time.perf_counter()
        run = ganvae.train(model, source, out=f"{out}/{model}-{len(sets)}", overwrite=True, steps=600,
                           batch_size=bs, device="cuda", progress=False,
                           set=sets + ["train.log_every=100", "train.sample_every=600"])
        lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
        print(json.dumps({"model": model, "sets": sets, "steps": run.step, "wall_s": round(time.perf_counter() - t, 1),
                          "img_per_s_last": lines[-1]["img_per_s"], "last": {k: round(v, 4) for k, v in run.last.items()}}))
    # on CUDA: straight 40 steps twice, and 20 + 20 resumed; with and without deterministic kernels
    def diff(x, y):
        sa = ckpt.load_state(f"{out}/{x}/checkpoints/latest.pt")["model"]
        sb = ckpt.load_state(f"{out}/{y}/checkpoints/latest.pt")["model"]
        return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)

    for det in (False, True):
        kw = dict(batch_size=64, device="cuda", progress=False,
                  set=["train.checkpoint_every=10", f"train.deterministic={str(det).lower()}"])
        ganvae.train("dcgan", source, out=f"{out}/a", overwrite=True, steps=40, **kw)
        ganvae.train("dcgan", source, out=f"{out}/a2", overwrite=True, steps=40, **kw)
        ganvae.train("dcgan", source, out=f"{out}/b", overwrite=True, steps=20, **kw)
        ganvae.train(out=f"{out}/b", resume=True, steps=40, progress=False)
        print(json.dumps({"deterministic": det, "straight_vs_straight_max_abs_diff": diff("a", "a2"),
                          "straight_vs_resumed_max_abs_diff": diff("a", "b")}))
    g = ganvae.load(f"{out}/a", device="cuda")
    x = g.sample(16, seed=0)
    print(json.dumps({"sample_device": str(x.device), "shape": list(x.shape)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

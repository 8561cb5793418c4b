"""One training step on the GPU agrees with the same step on the CPU (within float tolerance).

    python benchmarks/gpu_step_check.py        # part of benchmarks/gpu_check.sh

For each model (dcgan, vae, cdcgan with DiffAugment; small widths, 28 px): the same initial weights,
the same uint8 batch and the same noise (a CPU noise generator for both runs: ``ganvae.rng`` draws on
the generator's device and moves the numbers), one ``Trainer.train_step()`` on each device in fp32 with
TF32 off. Prints the largest weight difference after the step beside the largest weight change the step
made (floating-point state only: BatchNorm's step counters would inflate the change), and exits 1 when a
difference exceeds 1e-3 of that change. CUDA graphs are off here (the eager step against the CPU);
``gpu_graphs.py`` checks the graphed step against this eager one.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile

import torch

from ganvae.models import MODELS, build
from ganvae.training import TrainConfig, Trainer

TOL = 1e-3


def one_step(model, device: str) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model).to(device)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (256, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,), generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(model, TrainConfig(batch_size=64, tensorboard=False, report=False, channels_last=False,
                                        ema=False, tf32=False, cuda_graphs=False), images, labels, tmp,
                     torch.device(device))
        tr.noise = torch.Generator().manual_seed(7)  # on the CPU for both devices: identical draws
        tr.train_step()
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items() if v.is_floating_point()}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    bad = 0
    for name, over in (("dcgan", {"g_width": 16, "d_width": 16}), ("vae", {"width": 16}),
                       ("cdcgan", {"g_width": 16, "d_width": 16, "augment": "translation,cutout"})):
        cfg = MODELS.get(name).config_class(image_size=28, channels=1, num_classes=10, latent_dim=16, **over)
        torch.manual_seed(0)
        model = build(name, cfg)
        init = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        a, b = one_step(model, "cpu"), one_step(model, "cuda")
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        moved = max((a[k] - init[k]).abs().max().item() for k in a)
        ok = worst <= TOL * moved
        bad += not ok
        print(json.dumps({"model": name, "max_abs_diff": worst, "max_step_change": moved, "ok": ok}), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

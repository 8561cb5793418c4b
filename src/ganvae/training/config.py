"""``TrainConfig``: the ``train:`` section of a run's config, one commented field per option."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import GanvaeError
from ..util.device import bf16_native, bf16_pays, resolve_device

@dataclass
class TrainConfig:
    steps: int = 2000                 # training steps (each: every phase once, D d_steps times)
    batch_size: int = 64              # images per batch
    seed: int = 0                     # seeds the weights, the training noise and the data order
    device: str = "auto"              # auto (cuda when available, else cpu), cpu, cuda, cuda:N
    ema: bool | None = None           # EMA of the generator; null: the model's default (on for GANs)
    ema_kimg: float = 10.0            # EMA half-life in thousands of images
    ema_rampup: float | None = 0.05   # half-life at most this share of the images seen so far (null: off)
    log_every: int = 50               # steps between lines of metrics.jsonl
    sample_every: int = 500           # steps between sample grids (and one at the end)
    checkpoint_every: int = 500       # steps between training-state checkpoints (and one at the end)
    grid_size: int = 64               # images per sample grid
    sample_seed: int = 0              # latent seed of the grids: the same codes all run long
    max_minutes: float | None = None  # wall-clock budget; stops cleanly (checkpoint, export) when spent
    threads: int | None = None        # torch intra-op threads; null: torch's default
    eval_every_kimg: float | None = None  # score the generator every this many thousand images (null: never)
    eval_metric: str = "fid"          # what the periodic evaluation computes (see `ganvae eval --help`;
                                      # checked against the metric registry by ganvae.runfolder)
    eval_n: int = 2000                # samples (and reference images) per periodic evaluation
    eval_feature_net: str = "auto"    # features of the periodic evaluation: auto, a registered net (mnist, effnet,
                                      # ...) or a .safetensors file from `ganvae featnet train`
    keep_best: bool = False           # export the best-scoring generator so far to RUN/best/ (needs eval_every_kimg)
    tensorboard: bool = True          # TensorBoard event files in RUN/tensorboard/ (x axis: images seen)
    report: bool = True               # write RUN/report.html at the end (`ganvae report RUN` any time)
    deterministic: bool = False       # GPU: deterministic kernels (slower) so runs and resumes repeat exactly;
                                      # CPU runs are deterministic already
    precision: str = "fp32"           # fp32; bf16 (autocast: bfloat16 matmuls/convs, fp32 weights and optimizer);
                                      # auto: bf16 where it pays (GPUs with native bf16, CPUs with AVX512-BF16/AMX), else fp32.
                                      # run.json records what ran; bf16 on a CPU without it warns (emulated: slow)
    channels_last: bool | None = None  # conv nets and batches in channels-last memory format; null: on for conv
                                       # nets on the CPU (1.05-1.4x there, benchmarks/results/speed.md), else off
    compile: bool = False             # torch.compile the networks (nn.Module.compile; first steps are slow)
    tf32: bool = True                 # CUDA: TF32 tensor cores for fp32 matmuls and convolutions (Ampere and newer)
    init: str | None = None           # start from the networks of this run folder (--init RUN: public pretraining,
                                      # then private fine-tuning; a DP run's guarantee covers only its own data)
    cuda_graphs: bool | None = None   # CUDA: the whole training step captured once and replayed (training/graphs.py);
                                      # null: on for models up to 50M parameters whose step allows it; true: insist
                                      # (an error says what stands in the way); false: eager. No-op on the CPU

    def validate(self) -> None:
        if not 0 <= self.seed < 2**32:
            raise GanvaeError(f"train.seed {self.seed}: expected 0 to {2**32 - 1}")
        if not 0 <= self.sample_seed < 2**32:
            raise GanvaeError(f"train.sample_seed {self.sample_seed}: expected 0 to {2**32 - 1}")
        if self.ema_rampup is not None and self.ema_rampup < 0:
            raise GanvaeError(f"train.ema_rampup: expected >= 0 or null, got {self.ema_rampup}")
        for name in ("steps", "log_every", "sample_every", "checkpoint_every", "grid_size"):
            if getattr(self, name) < 1:
                raise GanvaeError(f"train.{name}: expected >= 1, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise GanvaeError(f"train.batch_size: expected >= 1, got {self.batch_size}")
        if self.ema_kimg <= 0:
            raise GanvaeError(f"train.ema_kimg: expected > 0, got {self.ema_kimg}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise GanvaeError(f"train.max_minutes: expected > 0, got {self.max_minutes}")
        if self.eval_every_kimg is not None and self.eval_every_kimg <= 0:
            raise GanvaeError(f"train.eval_every_kimg: expected > 0, got {self.eval_every_kimg}")
        if self.keep_best and self.eval_every_kimg is None:
            raise GanvaeError("train.keep_best needs train.eval_every_kimg (--eval-every KIMG)")
        if self.eval_n < 2:
            raise GanvaeError(f"train.eval_n: expected >= 2, got {self.eval_n}")
        if self.threads is not None and self.threads < 1:
            raise GanvaeError(f"train.threads: expected >= 1, got {self.threads}")
        if self.precision not in PRECISION_CHOICES:
            raise GanvaeError(f"train.precision {self.precision!r}: expected one of {', '.join(PRECISION_CHOICES)}")
        device = resolve_device(self.device, "train.device")
        if self.cuda_graphs is True and device.type != "cuda":
            raise GanvaeError(f"train.cuda_graphs=true needs a CUDA device; this run is on {device.type} "
                              "(--set train.cuda_graphs=null: graphs where they apply, nothing elsewhere)")


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # what runs -> the autocast dtype (None: no autocast)
PRECISION_CHOICES = ("auto", *PRECISIONS)            # what a user may ask for
_WARNED: set[str] = set()  # warnings given in this process (each once)


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses for ``train.precision`` ``name``: ``auto`` -> bf16 where it pays
    (:func:`ganvae.util.device.bf16_pays`), else fp32. Asking for bf16 where it is emulated warns, once per process."""
    if name == "auto":
        return "bf16" if bf16_pays(device) else "fp32"
    if name == "bf16" and device.type in ("cpu", "cuda") and device.type not in _WARNED and not bf16_native(device):
        _WARNED.add(device.type)
        what = ("this CPU has no AVX512-BF16 or AMX instructions" if device.type == "cpu" else
                "this GPU has no native bfloat16 (compute capability below 8.0)")
        warnings.warn(f"train.precision=bf16: {what}, so bf16 is emulated and far slower than fp32 (about 100x on "
                      "a CPU); use --precision fp32, or auto to pick bf16 only where it pays", stacklevel=3)
    return name



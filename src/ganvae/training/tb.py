"""TensorBoard event files beside metrics.jsonl (``RUN/tensorboard/``), through ``torch.utils.tensorboard``.

Scalars: every logged loss term, throughput, health probe value and periodic evaluation score; text:
health alarms; images: the sample grids. The x axis is images seen (not steps), so runs with other batch sizes line up.
View with ``tensorboard --logdir runs/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import GanvaeError

SKIP = {"step", "images_seen", "kimg", "time_s"}


class TensorBoard:
    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GanvaeError("train.tensorboard=true needs the tensorboard package: pip install tensorboard "
                              "(or --set train.tensorboard=false)") from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, rec: dict, images_seen: int) -> None:
        if "alarm" in rec:  # a health alarm (ganvae.training.health): its line as text, its start step as a scalar
            self.writer.add_text(f"alarm/{rec['alarm']}", str(rec.get("message", "")), images_seen)
            self.writer.add_scalar(f"alarm/{rec['alarm']}", rec.get("began", rec.get("step", 0)), images_seen)
            return
        for k, v in rec.items():
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, v, images_seen)

    def grid(self, images: torch.Tensor, images_seen: int) -> None:
        from ..images import make_grid

        arr = np.asarray(make_grid(images).convert("RGB"))  # (H, W, 3) uint8
        self.writer.add_image("samples", arr, images_seen, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()

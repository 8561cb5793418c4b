"""The loop's clock: wall time, the time budget, and loss terms averaged between two log lines."""

from __future__ import annotations

import math
import time

import torch

from . import distributed


class Clock:
    """Wall time, the time budget and the loss terms averaged between two log lines of one ``run()``."""

    def __init__(self, base_seconds: float, max_minutes: float | None, images_seen: int, step: int = 0):
        self.start = time.perf_counter()
        self.base = base_seconds  # training seconds of earlier runs (resumes add up)
        self.deadline = self.start + max_minutes * 60 if max_minutes else math.inf
        self.acc: dict[str, torch.Tensor] = {}
        self.n, self.t_log, self.img_log = 0, self.start, images_seen
        self.last: dict[str, float] = {}
        self.first_step = step  # the step this run() started from

    def seconds(self) -> float:
        return self.base + time.perf_counter() - self.start

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n += 1

    def peek(self) -> dict[str, float]:
        """The terms averaged since the last log line, without resetting them (syncs the device)."""
        return {k: float(v) / max(self.n, 1) for k, v in self.acc.items()}

    def fit_bar(self, bar, step: int, target: int, now: float) -> None:
        """With a time budget, size the progress bar to the steps that fit in it, so its ETA is the budget's."""
        if not math.isfinite(self.deadline) or step < 1 or now <= self.start:
            return
        rate = (step - self.first_step) / (now - self.start) if step > self.first_step else 0.0
        fit = step + int(rate * max(0.0, self.deadline - now))
        total = max(step, min(target, fit))
        if total != bar.total:
            bar.total = total
            bar.refresh()

    def line(self, tr, now: float) -> dict:
        """The metrics.jsonl record for the steps since the last line (averaged over ranks); resets the sums."""
        self.last = distributed.average_scalars({k: float(v) / self.n for k, v in self.acc.items()},
                                                tr.world, tr.device)
        dt = max(now - self.t_log, 1e-9)
        rec = {"step": tr.step, "images_seen": tr.images_seen, "kimg": round(tr.images_seen / 1000, 3),
               "time_s": round(self.base + now - self.start, 3),
               "img_per_s": round((tr.images_seen - self.img_log) / dt, 2), **self.last, **tr.log_extras()}
        self.acc, self.n, self.t_log, self.img_log = {}, 0, now, tr.images_seen
        return rec

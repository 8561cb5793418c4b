"""Feedback while scoring: tqdm bars on stderr, and one line up front when the work will plainly be slow.

A :class:`Feedback` is handed down to whatever loops over images (feature extraction, the likelihood
bound, the audit's stages). The caller first :meth:`Feedback.plan`\\ s a stage: how much work it is in
all. The first bar of that stage times its first chunk of work (a batch of features, a chunk of
importance samples: part of the job, never extra work), extrapolates to the whole stage and, when that
exceeds :data:`SLOW_S`, says so in one line with a faster setting where there is one, then continues::

    nll: about 3.1 h for 10000 images at k=5000 (model and untrained) on cpu; --n 1000 --k 1000 takes about 4 min

``Feedback(on=False)`` (:data:`OFF`) shows and says nothing; the work and its results are the same either way.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from tqdm import tqdm

SLOW_S = 120.0      # a stage expected to take longer than this (seconds) is announced up front
BAR_DELAY_S = 2.0   # a bar appears once its work has lasted this long (seconds): quick commands stay quiet


def duration(seconds: float) -> str:
    """under a second, about 45 s, about 4 min, about 3.1 h."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


class Feedback:
    """Bars and up-front estimates on stderr (``on``), or nothing. ``device`` is named in the estimates."""

    def __init__(self, on: bool = True, device: str = "cpu"):
        self.on, self.device = bool(on), str(device)
        self.plans: dict[str, tuple[float, str, Callable[[float], str | None] | None]] = {}
        self.measured: set[str] = set()
        self.estimates: dict[str, float] = {}  # stage -> the extrapolated seconds (for tests and callers)

    def plan(self, stage: str, units: float, what: str, advice: Callable[[float], str | None] | None = None):
        """Stage ``stage`` is ``units`` of work in all (``what`` says it in words: "10000 images at k=5000").

        ``advice(seconds_per_unit)``: a faster setting and its expected time, or None.
        """
        self.plans[stage] = (float(units), what, advice)

    def bar(self, total: int, desc: str, stage: str | None = None, unit: str = "img", leave: bool = True) -> "Bar":
        return Bar(self, total, desc, stage, unit, leave)

    def note(self, line: str) -> None:
        if self.on:
            tqdm.write(line, file=sys.stderr)

    def first_chunk(self, stage: str | None, seconds: float, units: float) -> None:
        """``units`` of ``stage``'s planned work took ``seconds``: announce the stage if it will be slow."""
        if not self.on or stage is None or stage in self.measured or stage not in self.plans or units <= 0:
            return
        self.measured.add(stage)
        total, what, advice = self.plans[stage]
        rate = seconds / units
        self.estimates[stage] = est = rate * total
        if est > SLOW_S:
            tip = advice(rate) if advice is not None else None
            self.note(f"{stage}: {duration(est)} for {what} on {self.device}" + (f"; {tip}" if tip else ""))


class Bar:
    """One tqdm bar, shown once its work has lasted :data:`BAR_DELAY_S` (quick work prints nothing); its first
    :meth:`measure` (or :meth:`update`) times the stage's first chunk."""

    def __init__(self, fb: Feedback, total: int, desc: str, stage: str | None, unit: str, leave: bool):
        self.fb, self.stage, self.measured = fb, stage, False
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.done, self.closed, self.tq, self.timer = 0, False, None, None
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()
        if fb.on and BAR_DELAY_S <= 0:
            self._show()
        elif fb.on:
            self.timer = threading.Timer(BAR_DELAY_S, self._show)
            self.timer.daemon = True
            self.timer.start()

    def _show(self) -> None:
        with self.lock:
            if self.tq is None and not self.closed:
                self.tq = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=self.leave,
                               dynamic_ncols=True)
                # elapsed time and rate counted from the start of the work, not from when the bar appears
                self.tq.start_t = self.tq.last_print_t = time.time() - (time.perf_counter() - self.t0)
                if self.done:
                    self.tq.update(self.done)
                self.tq.refresh()

    def measure(self, units: float) -> None:
        """The first chunk is done: ``units`` of the stage's planned work took the time since the bar began."""
        if not self.measured:
            self.measured = True
            self.fb.first_chunk(self.stage, time.perf_counter() - self.t0, units)

    def update(self, n: int, units: float | None = None) -> None:
        """``n`` more done (``units`` of planned work, default ``n``)."""
        self.measure(n if units is None else units)
        with self.lock:
            self.done += n
            if self.tq is not None:
                self.tq.update(n)

    def describe(self, desc: str) -> None:
        with self.lock:
            self.desc = desc
            if self.tq is not None:
                self.tq.set_description_str(desc)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self.closed = True
            if self.tq is not None:
                self.tq.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


OFF = Feedback(False)

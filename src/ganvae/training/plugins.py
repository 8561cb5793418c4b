"""Trainer plugins: how anything beyond plain training (differential privacy, for one) joins the loop.

The loop calls each plugin at fixed points and knows nothing else about it:

- construction: :meth:`attach` (refuse what the plugin cannot do), then :meth:`wrap_phases`
  (replace a phase's loss or optimizer) and :meth:`wrap_stream` (replace the batch stream);
- each step: :meth:`before_step`, then :meth:`after_step`, which may return a reason to stop
  (the loop stops cleanly after that step: checkpoint, export);
- each run: :meth:`before_run` (may raise) and :meth:`after_run` (also on errors);
- logging: :meth:`log_values` adds values to each line of ``metrics.jsonl``; :meth:`after_record` sees
  each record written there (a log line, an evaluation) and may return further records (health alarms);
- state: :meth:`state_dict` / :meth:`load_state_dict`, kept in the checkpoint under
  ``plugin.name`` (exact resume); :meth:`summary` goes into ``run.json``, the export's
  ``config.json``, ``ganvae info`` and the report under the same name.

A plugin holds its own state; it changes the trainer only through what these hooks return.
"""

from __future__ import annotations

from typing import Any

# Annotations name the loop's Trainer and the models' Phase as strings: the loop imports this module.


class TrainerPlugin:
    """Base class: every hook does nothing. Subclasses set ``name`` and override what they need."""

    name: str = ""                  # the checkpoint key, run.json key and report section
    channels_last_ok: bool = True   # False: the loop keeps the default memory format

    def attach(self, trainer: "Trainer") -> None:
        """Called first in ``Trainer.__init__``: check the trainer (world, model) and remember it."""

    def wrap_phases(self, phases: list["Phase"], optimizers: list) -> tuple[list["Phase"], list]:
        """Return the phases and optimizers the loop will use (same length, same order)."""
        return phases, optimizers

    def wrap_stream(self, stream: Any) -> Any:
        """Return the batch stream the loop will draw real batches from (``next()``, ``state_dict()``)."""
        return stream

    def before_run(self, trainer: "Trainer", target_steps: int) -> None:
        """Before the first step of ``Trainer.run``; raise a GanvaeError to refuse to train."""

    def after_run(self, trainer: "Trainer") -> None:
        """After ``Trainer.run``, also when it raised."""

    def before_step(self, trainer: "Trainer") -> None:
        """Before each training step."""

    def after_step(self, trainer: "Trainer") -> str | None:
        """After each training step; a string stops the run after this step, with that reason."""
        return None

    def log_values(self, trainer: "Trainer") -> dict[str, float]:
        """Values logged as they are now (not averaged over the steps since the last line)."""
        return {}

    def after_record(self, trainer: "Trainer", rec: dict) -> list[dict]:
        """After each ``metrics.jsonl`` record: further records to write after it (each with a ``step``)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict | None) -> None:
        """``state`` is what :meth:`state_dict` saved, or None when the checkpoint has none."""

    def summary(self) -> dict:
        """A JSON-able record of what the plugin did, for run.json, the export, info and the report."""
        return {}

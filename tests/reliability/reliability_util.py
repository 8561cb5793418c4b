"""Helpers for the reliability tests: the CLI in a subprocess, tiny runs, a small tmpfs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TINY = ["--set", "model.latent_dim=8", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "train.tensorboard=false", "--set", "train.report=false", "--set", "train.log_every=2",
        "--set", "train.checkpoint_every=4", "--set", "train.sample_every=1000", "--set", "train.threads=1"]


def cli(*args, check_rc: int | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``python -m ganvae ARGS`` in a fresh process; its output as text."""
    p = subprocess.run([sys.executable, "-m", "ganvae", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def _default_stop_signals() -> None:
    """In the child: SIGINT, SIGTERM and SIGHUP at their defaults, whatever the test runner inherited. A suite
    started in the background (``cmd &`` ignores SIGINT) or under ``nohup`` (ignores SIGHUP) would otherwise
    hand the ignored signals on, and ganvae keeps an ignored signal ignored (as nohup asks)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def start_train(out: Path, *extra, steps: int = 100000) -> subprocess.Popen:
    """A long tiny training run in the background (its stderr and stdout piped), stop signals at default."""
    return subprocess.Popen([sys.executable, "-m", "ganvae", "train", "--model", "dcgan", "--data", "digits",
                             "--steps", str(steps), "--batch-size", "16", "--out", str(out), "--quiet", *TINY,
                             *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_stop_signals)


def wait_for(cond, timeout: float = 60, what: str = "condition") -> None:
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def metrics_lines(out: Path) -> int:
    p = out / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.is_file() else 0


def one_line_error(p: subprocess.CompletedProcess, rc: int = 2) -> str:
    """The process failed with ``rc`` and said why in one line, with no traceback."""
    err = p.stderr.strip()
    assert p.returncode == rc, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [ln for ln in err.splitlines() if not ln.startswith("ganvae: warning")]
    assert len(lines) == 1 and lines[0].startswith("ganvae: error: "), err
    return lines[0]


class Tmpfs:
    """A small tmpfs mounted at ``path`` (root only); ``remount_ro()``; unmounted on ``close()``."""

    def __init__(self, path: Path, size: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PermissionError(r.stderr.strip() or "mount failed")

    def remount_ro(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def fill(self) -> None:
        """Fill the file system to the last byte."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for chunk in (1 << 16, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def can_mount() -> str | None:
    """None when this process may mount a tmpfs, else why not (the tests that need one skip with it)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None

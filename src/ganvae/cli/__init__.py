"""The command line: argument parsing and clean errors only; the work is in the library.

One module per group of commands (train, runs, misc, ...), each with ``add(sub)``; this module
holds ``main``: the error handling, signals and exit codes.

    ganvae train --model dcgan --data mnist --steps 2000 --out runs/x
    ganvae sample runs/x -n 64 --seed 0 --out grid.png
    ganvae info runs/x
    ganvae traverse runs/x --dims 0-9 --range 3 --columns 9
    ganvae interpolate runs/x --seeds 1 2 --frames 10
    ganvae models
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import warnings

from ..errors import GanvaeError


# the command groups, in the order `ganvae --help` lists them; each module has add(subparsers)
COMMAND_MODULES = ("train", "runs", "translate", "score", "augment", "data", "featnet", "misc")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from ..version import __version__

    parser = argparse.ArgumentParser(prog="ganvae", description="Train, sample and inspect GANs and VAEs.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ganvae {__version__}")
    # no option abbreviations: `sample --n 4` must not quietly mean --nrow 4
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add(sub)
    return parser


EXIT_CODES = """exit codes:
  0    done, or stopped by plan (--max-minutes, a privacy budget); the run is saved
  1    an unexpected error (a bug: please report it with the traceback)
  2    bad input or an unusable file, disk or folder: one line says which and why; nothing good was lost
  3    training diverged (a loss or a weight became NaN/inf); the last good checkpoint is kept
  128+N  stopped by signal N after saving: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP;
       `ganvae train --resume RUN` continues it exactly"""


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ganvae: warning: {message}", file=sys.stderr)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP before training has its own handlers (start-up): unwind like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum, frame):
    raise Interrupted(signum)


def _forget_unhandled_interrupt() -> None:
    """CPython marks a KeyboardInterrupt as unhandled when it leaves code run by ``exec`` of a string (dataclasses
    and torch do this while importing), even if an outer ``except`` handles it; at exit the interpreter then kills
    itself with SIGINT instead of returning our exit code. Each ``exec`` of a string clears that mark first."""
    exec("None")  # noqa: S102 - a constant; run for its side effect on the interpreter's flag


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _warn  # library warnings (damaged log lines, ...) as one line each
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):  # the training loop installs its graceful handlers itself
            if signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _interrupt)
    try:
        return _main(argv)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    try:
        parser = _while_deferring_stop_signals(build_parser)
        args = parser.parse_args(argv)
        return args.func(args)
    except (KeyboardInterrupt, Exception) as e:  # SystemExit (--help, usage errors) passes through
        if isinstance(e, KeyboardInterrupt):
            return _interrupted(e)
        if isinstance(e, GanvaeError):
            print(f"ganvae: error: {e}", file=sys.stderr)
            return e.exit_code
        if isinstance(e, BrokenPipeError):  # `ganvae info RUN | head`: the reader left; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        if isinstance(e, OSError) and (e.filename is not None or e.errno is not None):
            # a full or read-only disk, a missing folder: the file and the cause, one line
            where = f"{e.filename}: " if e.filename else ""
            print(f"ganvae: error: {where}{e.strerror or e}", file=sys.stderr)
            return 2
        interrupt = _interrupt_behind(e)  # an unexpected error that a Ctrl-C caused (a known one, such as a full
        if interrupt is not None:          # disk while saving after it, keeps its own message above)
            return _interrupted(interrupt)
        raise


def _while_deferring_stop_signals(fn):
    """Run ``fn`` (the imports: torch and ours) with Ctrl-C, SIGTERM and SIGHUP held until it returns: a signal that
    lands inside an import can be swallowed ("Exception ignored in ...") or leave half-made modules. A second signal
    while held acts at once, for an import that hangs."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    pending: list[int] = []

    def hold(signum, frame):
        if pending:
            raise KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)
        pending.append(signum)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # an ignored one (nohup, `cmd &`) stays ignored
    old = {sig: signal.signal(sig, hold) for sig in sigs if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        result = fn()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt() if pending[0] == signal.SIGINT else Interrupted(pending[0])
    return result


def _interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or start-up SIGTERM/SIGHUP) that caused ``e``: itself, or one in its cause/context chain. A signal
    that lands while a library runs code it wraps turns into that library's error: Python 3.11 re-raises a
    KeyboardInterrupt from a descriptor's ``__set_name__`` (torch's import creates such classes) as a RuntimeError."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _interrupted(e: KeyboardInterrupt) -> int:
    signum = getattr(e, "signum", signal.SIGINT)
    print("ganvae: interrupted" + ("" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"),
          file=sys.stderr)
    _forget_unhandled_interrupt()
    return 128 + signum

if __name__ == "__main__":
    raise SystemExit(main())

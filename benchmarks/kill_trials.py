"""Kill `ganvae train` at random moments and check that every run is still usable.

    python benchmarks/kill_trials.py --trials 24 [--signal KILL|TERM|INT|HUP] [--out benchmarks/results/kill_trials.md]

Each trial starts a tiny dcgan run on `digits` (checkpoint every 4 steps), sends the signal at a uniformly
random moment between 0.2 s and 6 s after launch (start-up included), then checks what a user would do next:
a run with a checkpoint must resume (`train --resume` to 3 steps past its checkpoint) and end with an
export of that step; a run killed before its first checkpoint must be refused by `--resume` in one line
(exit 2, no traceback) or have left no folder. For TERM/INT/HUP the process itself must also exit with
128 + the signal number and leave a checkpoint and an export of the same step. Writes a table of outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["--set", "model.latent_dim=8", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "train.tensorboard=false", "--set", "train.report=false", "--set", "train.log_every=2",
        "--set", "train.checkpoint_every=4", "--set", "train.sample_every=1000", "--set", "train.threads=1"]


def ganvae(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ganvae", *map(str, args)], capture_output=True, text=True, **kw)


def trial(root: Path, sig: signal.Signals, delay: float) -> dict:
    import torch

    out = root / "run"
    p = subprocess.Popen([sys.executable, "-m", "ganvae", "train", "--model", "dcgan", "--data", "digits",
                          "--steps", "100000", "--batch-size", "16", "--out", str(out), "--quiet", *TINY],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    rec = {"delay_s": round(delay, 2), "exit": p.returncode, "traceback": "Traceback" in err}
    ckpt = out / "checkpoints" / "latest.pt"
    if not ckpt.exists():
        if not out.exists():
            rec["outcome"] = "no folder (killed before the run folder was made)"
            rec["usable"] = True
            return rec
        r = ganvae("train", "--resume", out, "--steps", 8, "--quiet")
        one_line = r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        rec["outcome"] = "no checkpoint yet; --resume refused in one line" if one_line else f"BAD: {r.stderr[-300:]}"
        rec["usable"] = one_line
        return rec
    step = torch.load(ckpt, weights_only=True)["step"]
    rec["checkpoint_step"] = step
    if sig != signal.SIGKILL:
        meta = json.loads((out / "model" / "config.json").read_text()) if (out / "model").exists() else {}
        rec["exported_at_stop"] = meta.get("step") == step
    r = ganvae("train", "--resume", out, "--steps", step + 3, "--quiet")
    meta = json.loads((out / "model" / "config.json").read_text()) if r.returncode == 0 else {}
    rec["usable"] = r.returncode == 0 and meta.get("step") == step + 3 and not list(out.rglob("*.tmp"))
    rec["outcome"] = "resumed and exported" if rec["usable"] else f"BAD: {r.stderr[-300:]}"
    if sig != signal.SIGKILL:
        rec["usable"] &= rec["exit"] == 128 + int(sig) and rec["exported_at_stop"] and not rec["traceback"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--signal", default="KILL", choices=["KILL", "TERM", "INT", "HUP"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/kill_trials.md")
    args = ap.parse_args()
    sig = getattr(signal, f"SIG{args.signal}")
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials):
        with tempfile.TemporaryDirectory() as d:
            rec = trial(Path(d), sig, rng.uniform(0.2, 6.0))
        rows.append(rec)
        print(i, rec, flush=True)
    ok = sum(r["usable"] for r in rows)
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    lines = [f"# Kill trials: SIG{args.signal} at random moments ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores)", "", f"Command: `{cmd}`", "",
             f"**{ok} of {len(rows)} runs usable afterwards** (resumed exactly to 3 steps past their checkpoint and "
             "exported, or refused in one line when killed before the first checkpoint).", "",
             "| trial | delay s | exit | checkpoint step | outcome |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {r['delay_s']} | {r['exit']} | {r.get('checkpoint_step', '-')} | {r['outcome']} |"
              for i, r in enumerate(rows)]
    path = Path(args.out)
    old = path.read_text() if path.is_file() else ""
    marker = f"# Kill trials: SIG{args.signal} "
    kept = "\n\n".join(b for b in old.split("\n\n\n") if b.strip() and not b.startswith(marker))
    path.write_text((kept + "\n\n\n" if kept else "") + "\n".join(lines) + "\n")
    print(f"{ok}/{len(rows)} usable; wrote {path}")


if __name__ == "__main__":
    main()

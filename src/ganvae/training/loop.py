"""One training loop for every model, driven by the model's phases.

Each step runs the phases in order (a GAN: D ``d_steps`` times, then G; a VAE:
one phase), each with its own Adam optimizer, then updates the generator EMA.
Progress is counted in images seen. The loop owns everything a resume needs:
weights, both optimizers, the EMA, the step, the images seen, the data order,
the training noise generator and the global RNG states.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import rng
from ..errors import GanvaeError
from ..models import Batch, GenerativeModel, standing_stats
from . import distributed
from .batches import BatchStream
from ..util.files import atomic_write_bytes, remove_stale_temps
from .checkpoint import check_state, load_state, nonfinite, rng_state, save_state, set_rng_state
from .clock import Clock as _Clock
from .config import PRECISIONS, TrainConfig, resolve_precision
from .distributed import World
from .ema import EMA
from . import graphs
from .plugins import TrainerPlugin


EARLY_GRID_STEP, EARLY_GRID_SECONDS = 100, 60.0  # a first grid before the first sample_every, whichever comes first
EARLY_POSTFIX = (1, 2, 5, 10, 20)                # steps that show the running losses before the first log line


class DivergenceError(GanvaeError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    exit_code = 3


class Trainer:
    """Drives ``model`` on ``images`` (uint8, (N, C, H, W)); writes into the run folder ``out``."""

    # Whether a non-finite loss is found at the next boundary (log line, grid, score, checkpoint, stop) rather
    # than by a host sync after every phase. None: on CUDA only, where the sync would stall the launch queue;
    # on the CPU the check is free and stops at the step itself. Either way no checkpoint holds a bad step.
    defer_finite_check: bool | None = None

    def __init__(self, model: GenerativeModel, cfg: TrainConfig, images: torch.Tensor,
                 labels: torch.Tensor | None, out: str | Path, device: torch.device, binarize: bool = False,
                 evaluator=None, on_best=None, world: World = distributed.SINGLE,
                 plugins: list[TrainerPlugin] | tuple = (), images_b: torch.Tensor | None = None,
                 paired: bool = True):
        # images_b: translation models' domain B (uint8), row-aligned with images when paired (see BatchStream)
        self.model, self.cfg, self.out, self.device = model, cfg, Path(out), device
        self.world = world
        self.plugins = list(plugins)  # see ganvae.training.plugins: DP and any other extension of the loop
        self.target_steps: int | None = None  # the step count run() is heading for
        self.n_train = int(images.shape[0])   # training images
        distributed.check_batch(world, cfg.batch_size)
        for pl in self.plugins:
            pl.attach(self)
        if self.defer_finite_check is None:
            self.defer_finite_check = device.type == "cuda"
        self._first_bad: dict[str, torch.Tensor] = {}  # phase -> first step with a non-finite loss (-1: none)
        self.precision = resolve_precision(cfg.precision, device)  # auto -> bf16 or fp32; run.json records it
        self.autocast_dtype = PRECISIONS[self.precision]
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        self.channels_last = cfg.channels_last
        if self.channels_last is None:
            self.channels_last = all(pl.channels_last_ok for pl in self.plugins) and device.type == "cpu" and any(
                isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.phases = model.phases()
        self.optimizers = [
            torch.optim.Adam(ph.parameters(), lr=ph.lr, betas=ph.betas, weight_decay=ph.weight_decay,
                             fused=True)  # one kernel for all parameters (CPU and CUDA); measured in speed.md
            for ph in self.phases
        ]
        use_ema = model.ema_default if cfg.ema is None else cfg.ema
        self.ema = EMA(model.generator_net(), cfg.ema_kimg, cfg.ema_rampup) if use_ema else None
        if cfg.compile:
            for net in model.children():
                net.compile()
        self.noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.stream = BatchStream(images, labels, cfg.batch_size, cfg.seed, device,
                                  binarize=self.noise if binarize else None, rank=world.rank, world=world.size,
                                  images_b=images_b, paired=paired)
        for pl in self.plugins:
            self.phases, self.optimizers = pl.wrap_phases(self.phases, self.optimizers)
            self.stream = pl.wrap_stream(self.stream)
        self.graphs, self.cuda_graphs = graphs.attach(self)  # CUDA graphs of the step, or None; run.json's words
        self.step = 0
        self.images_seen = 0
        self.train_seconds = 0.0  # summed over resumes
        self.evaluator = evaluator  # callable(model, net) -> {"eval/<key>": value}; see metrics.evaluate
        self.on_best = on_best      # callable(trainer, score) when the primary eval value improves
        self.best: dict | None = None  # {"metric", "value", "step"} of the best evaluation so far
        self._images_this_step = 0
        self.stop_reason: str | None = None  # why run() stops before its target (first reason wins)
        self.interrupted_by: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM, SIGHUP)
        self._early_grid = False
        self.tb = None  # TensorBoard writer while run() is active

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "optimizers": {ph.name: opt.state_dict() for ph, opt in zip(self.phases, self.optimizers)},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "noise": self.noise.get_state(),
            "data": self.stream.state_dict(),
            "rng": rng_state(),
            "best": self.best,
            **{pl.name: pl.state_dict() for pl in self.plugins},
        }

    def load_state_dict(self, state: dict, where: str = "checkpoint") -> None:
        check_state(state, where, [ph.name for ph in self.phases])
        for pl in self.plugins:  # first: a plugin refuses a checkpoint that is not its run's before anything changes
            pl.load_state_dict(state.get(pl.name))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:  # missing/unexpected keys, shape mismatches: another model's checkpoint
            first = str(e).strip().splitlines()
            detail = " ".join(x.strip() for x in first[:2])[:200]
            raise GanvaeError(f"checkpoint {where}: does not fit this run's model ({detail})") from None
        for ph, opt in zip(self.phases, self.optimizers):
            opt.load_state_dict(state["optimizers"][ph.name])
        if self.ema is not None:
            if state.get("ema") is None:
                raise GanvaeError("checkpoint has no EMA state but the config asks for one (train.ema)")
            self.ema.load_state_dict(state["ema"])
        self.noise.set_state(state["noise"].cpu())  # generator states are CPU ByteTensors on every device
        self.stream.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.best = state.get("best")
        if self.graphs is not None:
            self.graphs.reset()  # the optimizers hold new tensors now: capture again

    def save_checkpoint(self) -> Path:
        """Write checkpoints/latest.pt atomically; never a state with NaN or infinite weights."""
        path = self.out / "checkpoints" / "latest.pt"
        state = self.state_dict()
        bad = nonfinite({"model": state["model"], "optimizers": state["optimizers"], "ema": state["ema"]})
        if bad:
            raise DivergenceError(f"{bad[0]} holds NaN or infinite values at step {self.step} (the update "
                                  f"diverged); stopped, {self._last_good()}")
        save_state(state, path)
        return path

    def _last_good(self) -> str:
        """Where the last good state is, naming only a file that exists."""
        latest = self.out / "checkpoints" / "latest.pt"
        if latest.is_file():
            return f"the last good checkpoint is {latest}"
        return "no checkpoint was written yet (lower the learning rate and start again)"

    def _link_final(self) -> None:
        """checkpoints/final.pt: the state at the end of the requested steps (a hard link when possible)."""
        latest, final = self.out / "checkpoints" / "latest.pt", self.out / "checkpoints" / "final.pt"
        tmp = final.with_name(".final.pt.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(latest, tmp)
        except OSError:
            shutil.copyfile(latest, tmp)
        os.replace(tmp, final)

    def resume(self) -> None:
        # load on the CPU: RNG states must stay there; modules and optimizers move tensors to their device
        path = self.out / "checkpoints" / "latest.pt"
        if self.world.is_main:
            remove_stale_temps(self.out)  # a kill mid-write leaves .latest.pt.*.tmp; we hold the run's lock
        self.load_state_dict(load_state(path, map_location="cpu"), str(path))
        if self.world.is_main:
            self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop metrics lines logged after the checkpoint we resume from (a killed run logs past it)."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return
        lines = path.read_bytes().splitlines()
        keep = []
        for line in lines:
            try:
                if json.loads(line.decode("utf-8")).get("step", 0) <= self.step:
                    keep.append(line)
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                continue
        if len(keep) != len(lines):  # atomically: a full disk keeps the old log whole
            atomic_write_bytes(path, b"".join(k + b"\n" for k in keep))

    # ------------------------------------------------------------------ sampling
    def sampling_net(self) -> torch.nn.Module:
        """The EMA generator with exact BatchNorm statistics (a copy), or the live generator."""
        if self.ema is None:
            return self.model.generator_net()
        gen = torch.Generator(device=self.device).manual_seed(12345)
        return standing_stats(self.ema.module, lambda n: self.model.latent(n, gen))

    def write_grid(self) -> Path:
        from ..images import save_grid

        fixed = getattr(self.stream, "fixed", None)  # fixed real images, for models whose grid shows inputs
        imgs = self.model.grid(self.cfg.grid_size, self.cfg.sample_seed, self.sampling_net(), fixed)
        path = self.out / "samples" / f"step_{self.step:06d}.png"
        save_grid(imgs, path)
        if self.tb is not None:
            self.tb.grid(imgs, self.images_seen)
        return path

    # ------------------------------------------------------------------ the loop
    def request_stop(self, reason: str) -> None:
        """Stop cleanly after the current step (checkpoint, export); the first reason given is kept."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def train_step(self) -> dict[str, torch.Tensor]:
        for pl in self.plugins:
            pl.before_step(self)
        with rng.shard(self.world.rank, self.world.size):
            terms = self.graphs.step(self) if self.graphs is not None else None
            if terms is None:  # the eager step (no graphs, or a capture refused from the same state)
                terms = self._train_step()
        for pl in self.plugins:
            reason = pl.after_step(self)
            if reason:
                self.request_stop(reason)
        return terms

    def _train_step(self) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        seen_before = self.images_seen
        all_params = list(self.model.parameters())
        world = self.world
        shared = None  # this step's real batch, for phases that reuse it
        for ph, opt in zip(self.phases, self.optimizers):
            for p in all_params:
                p.requires_grad_(False)
            params = ph.parameters()
            for p in params:
                p.requires_grad_(True)
            for _ in range(ph.repeats):
                if ph.real_data and ph.reuse_batch and shared is not None:
                    batch = shared  # the batch an earlier phase of this step drew (counted once)
                elif ph.real_data:
                    batch = shared = self.stream.next()
                    if self.channels_last:
                        batch.x = batch.x.contiguous(memory_format=torch.channels_last)
                    self.images_seen += batch.n * world.size
                else:
                    batch = Batch(None, None, n=self.cfg.batch_size // world.size)
                with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                    enabled=self.autocast_dtype is not None):
                    out = ph.loss(batch, self.noise)
                loss = out["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world.active:  # average the gradients over the ranks; the loss rides along
                    loss = distributed.average_gradients(params, loss, world)
                if self.defer_finite_check:
                    self._note_finite(ph.name, loss)
                elif not bool(torch.isfinite(loss)):
                    self._diverged(ph, out, loss)
                opt.step()
                for k, v in out.items():
                    key = f"loss/{ph.name}" if k == "loss" else k
                    terms[key] = terms.get(key, 0.0) + v.detach().float() / ph.repeats
        for p in all_params:
            p.requires_grad_(True)
        if self.ema is not None:
            self.ema.update(self.model.generator_net(), self.cfg.batch_size, self.images_seen)
        self.step += 1
        self._images_this_step = self.images_seen - seen_before
        return terms

    def _note_finite(self, phase: str, loss: torch.Tensor) -> None:
        """Record on the device the first step whose ``phase`` loss is not finite (no host sync)."""
        first = self._first_bad.get(phase)
        if first is None:
            first = self._first_bad[phase] = torch.full((), -1, dtype=torch.long, device=loss.device)
        first.copy_(torch.where((first < 0) & ~torch.isfinite(loss.detach()), self.step + 1, first))

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if a deferred check recorded a non-finite loss (one sync per phase)."""
        bad = {name: int(t) for name, t in self._first_bad.items()}
        bad = {name: step for name, step in bad.items() if step >= 0}
        if bad:
            phase = min(bad, key=bad.get)
            raise DivergenceError(
                f"loss/{phase} became non-finite at step {bad[phase]} (found at step {self.step}); stopped, "
                f"{self._last_good()}")

    def _diverged(self, ph, out: dict[str, torch.Tensor], loss: torch.Tensor):
        bad = [k for k, v in out.items() if not bool(torch.isfinite(v).all())]
        bad = [b for b in bad if b != "loss"] or ["loss"]
        where = " on another process" if bool(torch.isfinite(out["loss"])) else ""
        raise DivergenceError(
            f"loss/{ph.name} became {loss.item()} at step {self.step + 1}{where} "
            f"(term {', '.join(bad)}); stopped, {self._last_good()}"
        )

    def run(self, target_steps: int, progress: bool = True) -> dict:
        """Train up to ``target_steps`` in total (or until a stop reason); log, sample, score, checkpoint."""
        self.target_steps = target_steps
        for pl in self.plugins:
            pl.before_run(self, target_steps)
        self.model.train()
        main = self.world.is_main  # only rank 0 writes files
        metrics_path = self.out / "metrics.jsonl" if main else Path(os.devnull)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        clock = _Clock(self.train_seconds, self.cfg.max_minutes, self.images_seen, self.step)
        bar = tqdm(total=target_steps, initial=self.step, disable=not (progress and main), unit="step",
                   dynamic_ncols=True, smoothing=0.1)
        if self.cfg.tensorboard and main:
            from .tb import TensorBoard
            self.tb = TensorBoard(self.out / "tensorboard")
        old_handler = self._install_sigint()
        try:
            with metrics_path.open("a") as mf:
                while self.step < target_steps:
                    clock.add(self.train_step())
                    bar.update(1)
                    if self._boundary(target_steps, clock, mf, bar):
                        break
        finally:
            bar.close()
            self._restore_sigint(old_handler)
            if self.tb is not None:
                self.tb.close()
                self.tb = None
            for pl in self.plugins:
                pl.after_run(self)
        self.train_seconds = clock.seconds()
        return {"step": self.step, "images_seen": self.images_seen, "stopped": self.stop_reason,
                "last": clock.last}

    def _boundary(self, target_steps: int, clock: "_Clock", mf, bar) -> bool:
        """After a step: decide whether to stop; log, sample, score and checkpoint when due. True: stop."""
        cfg, main = self.cfg, self.world.is_main
        now = time.perf_counter()
        done = self.step >= target_steps
        if now >= clock.deadline and not done:
            self.request_stop(f"time budget of {cfg.max_minutes:g} min spent")
        if self.world.active and not done:  # every rank stops at the same step
            if distributed.any_rank(self.stop_reason is not None, self.world, self.device):
                self.request_stop("stopped by another process")
        stopping = done or self.stop_reason is not None
        if self.defer_finite_check and (
                stopping or any(self.step % k == 0 for k in (cfg.log_every, cfg.sample_every, cfg.checkpoint_every))
                or self._due_eval(stopping)):
            self.check_finite()  # before anything leaves the loop: no bad step is logged or saved
        if self.step % cfg.log_every == 0 or stopping:
            rec = clock.line(self, now)
            self._write_record(mf, rec)
            bar.set_postfix({k: f"{v:.3g}" for k, v in clock.last.items() if k.count("/") == 1}, refresh=False)
            clock.fit_bar(bar, self.step, target_steps, now)  # the ETA respects --max-minutes
        elif self.step in EARLY_POSTFIX and not self.defer_finite_check:  # losses on the bar from the first steps
            bar.set_postfix({k: f"{v:.3g}" for k, v in clock.peek().items() if k.count("/") == 1}, refresh=False)
        early = (not self._early_grid and self.step < cfg.sample_every
                 and (self.step == EARLY_GRID_STEP or now - clock.start >= EARLY_GRID_SECONDS))
        if main and (self.step % cfg.sample_every == 0 or stopping or early):
            self._early_grid = True  # one grid early (step 100 or the first minute), then every sample_every
            self.write_grid()
        if main and self._due_eval(stopping):
            self._write_record(mf, self.run_eval())
        if self.step % cfg.checkpoint_every == 0 or stopping:
            self.train_seconds = clock.seconds()
            if main:
                self.save_checkpoint()
        if stopping and done and main:
            self._link_final()
        return stopping

    def _write_record(self, mf, rec: dict) -> None:
        for r in [rec, *(x for pl in self.plugins for x in pl.after_record(self, rec))]:  # plugins may add (alarms)
            mf.write(json.dumps(r) + "\n")
            mf.flush()
            if self.tb is not None:
                self.tb.scalars(r, self.images_seen)

    def log_extras(self) -> dict[str, float]:
        """Values logged as they are now (not averaged over the steps since the last line): the plugins'."""
        return {k: v for pl in self.plugins for k, v in pl.log_values(self).items()}

    def _due_eval(self, stopping: bool) -> bool:
        if self.evaluator is None or not self.cfg.eval_every_kimg:
            return False
        every = self.cfg.eval_every_kimg * 1000
        due = self.images_seen // every > (self.images_seen - self._images_this_step) // every
        return due or stopping

    def run_eval(self) -> dict:
        """Score the sampling generator; record it; hand improvements to ``on_best``."""
        scores = self.evaluator(self.model, self.sampling_net())
        self.model.train()
        rec = {"step": self.step, "images_seen": self.images_seen, **scores}
        key = f"eval/{self.evaluator.primary}"
        value = scores[key]
        better = self.best is None or (value < self.best["value"] if self.evaluator.lower_is_better
                                       else value > self.best["value"])
        if better:
            self.best = {"metric": self.evaluator.primary, "value": value, "step": self.step}
            if self.on_best is not None:
                self.on_best(self, value)
        return rec

    # Ctrl-C (SIGINT), SIGTERM (docker stop, Kubernetes, Slurm, systemd) and SIGHUP (the terminal went away):
    # finish the current step, checkpoint, export, stop; ``interrupted_by`` says which. A second signal
    # interrupts at once. A signal that is ignored (nohup ignores SIGHUP) stays ignored.
    STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self.interrupted_by is not None:
                raise KeyboardInterrupt
            self.interrupted_by = signum
            self.request_stop(f"interrupted ({signal.Signals(signum).name})")

        old = {}
        for name in self.STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                old[sig] = signal.signal(sig, handler)
        return old

    def _restore_sigint(self, old) -> None:
        for sig, h in (old or {}).items():
            signal.signal(sig, h)

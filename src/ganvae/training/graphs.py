"""CUDA graphs for the whole training step: one replay instead of hundreds of kernel launches.

Small models on a large GPU are bound by kernel launches, not by arithmetic (dcgan-28 trained at about 19k img/s
on an H200 eagerly, ``benchmarks/results/device_check.md``). Here every phase of a step (forwards, backwards,
the fused Adam updates, the noise draws) is captured once in a CUDA graph (``torch.cuda.graph``) and replayed
each step. Outside the graph, each step: the real batches are drawn (a gather on the device, where the data set
lives) into the graph's static input buffers; after the replay, the loss terms are copied out, the deferred
non-finite check is noted and the generator EMA updated (its rate depends on the images seen, a host number).

Same numbers as the eager step: the noise generator is registered with the graph, so each replay draws what the
eager step would (CUDA's graph-safe Philox offsets, checked after the first replay), and the warm-up steps a
capture needs are undone (weights, buffers, optimizer moments, generator states). A graphed step agrees with
the eager step within float tolerance (``benchmarks/gpu_graphs.py`` checks it on the GPU; on the CPU an
emulated graph, which reruns the step, is bit-identical to the eager loop: ``tests/test_cuda_graphs.py``).
Checkpoints and resumes work as before (loading a state drops the graph; the next step captures again).

When (``train.cuda_graphs``): null (auto) captures on CUDA when nothing stands in the way and the model has at
most :data:`SMALL_MODEL` parameters; true insists (an error names what stands in the way); false never; on other
devices it does nothing. In the way (:func:`blockers`): a plugin that wraps the phases or the data stream (DP's
per-sample gradients; plugins acting around the step, such as ADA's and the health alarms', are fine), several
processes, ``train.compile``, dynamic binarisation (draws inside the data stream), the per-phase finite check
that syncs the host, a model with ``cuda_graphs_ok = False``. A step that cannot be captured (a host sync in a
loss, e.g. lazy R1's step counter) fails at the capture: auto warns once and trains eagerly from the same state;
true stops with the reason.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from ..errors import GanvaeError
from ..models import Batch
from .plugins import TrainerPlugin

SMALL_MODEL = 50_000_000  # auto captures models up to this many parameters (graphs keep their memory pool)
WARMUP = 2                # eager steps before a capture (lazy optimizer state, cuBLAS/cuDNN handles); undone


def blockers(trainer) -> list[str]:
    """What stands in the way of capturing ``trainer``'s step, in words (empty: nothing)."""
    out = [f"the {pl.name or type(pl).__name__} plugin changes the step" for pl in trainer.plugins
           if changes_step(pl)]
    if trainer.world.active:
        out.append(f"data-parallel training over {trainer.world.size} processes")
    if trainer.cfg.compile:
        out.append("train.compile (torch.compile makes its own graphs)")
    if getattr(trainer.stream, "binarize", None) is not None:
        out.append("data.binarize (its draws are made in the data stream)")
    if getattr(trainer.model, "cuda_graphs_ok", True) is False:
        out.append("the model's step cannot be captured")
    return out


def changes_step(plugin) -> bool:
    """Whether a plugin reaches into the step (wraps the phases or the batch stream, as DP does), unless it says
    otherwise with ``cuda_graphs_ok``. Hooks around the step (before/after it, logging) leave it capturable."""
    ok = getattr(plugin, "cuda_graphs_ok", None)
    if ok is not None:
        return not ok
    cls = type(plugin)
    return cls.wrap_phases is not TrainerPlugin.wrap_phases or cls.wrap_stream is not TrainerPlugin.wrap_stream


def decide(want: bool | None, device_type: str, why_not: list[str], params: int) -> tuple[bool, str]:
    """(capture?, what run.json says) for ``train.cuda_graphs`` ``want`` (None: auto); true with ``why_not`` is an
    error."""
    if want is False:
        return False, "off (train.cuda_graphs=false)"
    if device_type != "cuda":
        return False, f"off (not a CUDA device: {device_type})"
    if why_not:
        if want:
            raise GanvaeError(f"train.cuda_graphs=true: the training step cannot be captured: {'; '.join(why_not)} "
                              "(set it to null or false)")
        return False, f"off ({'; '.join(why_not)})"
    if want is None and params > SMALL_MODEL:
        return False, (f"off (the model has {params / 1e6:.0f}M parameters; auto captures models up to "
                       f"{SMALL_MODEL // 1_000_000}M: train.cuda_graphs=true to insist)")
    return True, "on"


def attach(trainer) -> tuple["GraphedStep | None", str]:
    """The trainer's graphed step (or None) and what run.json says about it."""
    params = sum(p.numel() for p in trainer.model.parameters())
    on, why = decide(trainer.cfg.cuda_graphs, trainer.device.type, blockers(trainer), params)
    return (GraphedStep(trainer, insist=bool(trainer.cfg.cuda_graphs)) if on else None), why


def draw_plan(phases) -> list[list[str]]:
    """Per phase, per repeat: ``draw`` a real batch, ``reuse`` an earlier phase's, or ``none`` (as the eager loop)."""
    plan, shared = [], False
    for ph in phases:
        row = []
        for _ in range(ph.repeats):
            if ph.real_data and ph.reuse_batch and shared:
                row.append("reuse")
            elif ph.real_data:
                row.append("draw")
                shared = True
            else:
                row.append("none")
        plan.append(row)
    return plan


class _Snapshot:
    """Everything a warm-up step changes, to put back: weights and buffers, optimizer state, RNG states."""

    def __init__(self, tr):
        self.tensors = [(t, t.detach().clone()) for t in tr.model.state_dict(keep_vars=True).values()]
        self.opt = [(opt, p, {k: v.detach().clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                     if p in opt.state else None)
                    for opt in tr.optimizers for group in opt.param_groups for p in group["params"]]
        self.noise = tr.noise.get_state()
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(tr.device) if tr.device.type == "cuda" else None

    @torch.no_grad()
    def restore(self, tr) -> None:
        for t, saved in self.tensors:
            t.copy_(saved)
        for opt, p, saved in self.opt:
            for k, v in (opt.state[p] if p in opt.state else {}).items():
                if not torch.is_tensor(v):
                    continue
                if saved is None or k not in saved:  # state the warm-up created: Adam's fresh state is zeros (step 0)
                    v.zero_()
                else:
                    v.copy_(saved[k])
        tr.noise.set_state(self.noise)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, tr.device)


class _CudaGraph:
    """``torch.cuda.graph`` of the step, the noise generator registered (each replay advances it)."""

    def capture(self, body, tr) -> torch.Tensor:
        if tr.noise.device.type != "cuda":  # a CPU generator cannot be registered with the graph
            raise RuntimeError(f"the noise generator is on {tr.noise.device.type}, not on the GPU")
        g = torch.cuda.CUDAGraph()
        g.register_generator_state(tr.noise)
        groups = [grp for opt in tr.optimizers for grp in opt.param_groups]
        old = [grp.get("capturable", False) for grp in groups]
        for grp in groups:  # fused Adam runs the same kernels either way; the capture check asks for the flag
            grp["capturable"] = True
        # torch.cuda.graph's steps by hand, so that a failed capture always ends and leaves the capture stream
        main, side = torch.cuda.current_stream(tr.device), torch.cuda.Stream(tr.device)
        torch.cuda.synchronize(tr.device)
        side.wait_stream(main)
        try:
            with torch.cuda.stream(side):
                g.capture_begin(capture_error_mode="thread_local")  # (thread_local: other threads may allocate)
                try:
                    out = body()
                except BaseException:
                    with contextlib.suppress(Exception):  # the body's error is the one to report
                        g.capture_end()
                    raise
                g.capture_end()
        finally:
            main.wait_stream(side)
            for grp, flag in zip(groups, old):
                grp["capturable"] = flag
        self.g = g
        return out

    def replay(self) -> None:
        self.g.replay()


class _Emulated:
    """A CPU stand-in for tests: the capture runs the step once (undone), each replay runs it again into the output."""

    def capture(self, body, tr) -> torch.Tensor:
        self.body = body
        self.out = body()
        return self.out

    def replay(self) -> None:
        self.out.copy_(self.body())


class GraphedStep:
    """The training step of a :class:`ganvae.training.Trainer` as a CUDA graph; ``step(trainer)`` runs one step."""

    def __init__(self, trainer, insist: bool = False, emulate: bool = False):
        self.insist = insist    # train.cuda_graphs=true: a refused capture is an error, not a warning
        self.emulate = emulate  # the CPU stand-in (tests, benchmarks/gpu_graphs.py --cpu-smoke)
        self.plan = draw_plan(trainer.phases)
        self.disabled: str | None = None  # why the step runs eagerly after all (a refused capture)
        self.reset()

    def reset(self) -> None:
        """Drop the graph (a loaded state replaced the optimizer's tensors): the next step captures again."""
        self.graph = self.static = self.out = None
        self.layout: list[tuple[str, int, int, torch.Size]] = []  # term key, start, end, shape in the output
        self.losses: list[tuple[str, int]] = []                     # phase name, position of each loss

    # ------------------------------------------------------------------ one step
    def step(self, tr) -> dict[str, torch.Tensor] | None:
        """One training step of ``tr`` through the graph; None: run it eagerly (graphs refused, state untouched)."""
        if self.disabled:
            return None
        if not tr.defer_finite_check:
            self._refuse(tr, "the finite check after every phase syncs the host (Trainer.defer_finite_check)")
            return None
        data_state, seen_before = tr.stream.state_dict(), tr.images_seen
        batches = self._draw(tr)
        if self.graph is None:
            try:
                self._capture(tr, batches)
            except Exception as e:  # noqa: BLE001 - any failure: back to the eager step from the same state
                tr.stream.load_state_dict(data_state)
                tr.images_seen = seen_before
                detail = (str(e).strip().splitlines() or [""])[0][:200]
                self._refuse(tr, f"capturing the training step failed ({type(e).__name__}: {detail})")
                return None
            check_offset = not self.emulate
        else:
            self._fill(batches)
            check_offset = False
        offset = tr.noise.get_offset() if check_offset else 0
        self.graph.replay()
        if check_offset and tr.noise.get_offset() != offset + self.noise_per_step:  # guard: never the same noise twice
            tr.noise.set_offset(offset + self.noise_per_step)
            self._refuse(tr, "the noise generator did not advance in the replay")
        return self._finish(tr, seen_before)

    def _draw(self, tr) -> list[Batch]:
        out = []
        for row in self.plan:
            for kind in row:
                if kind == "draw":
                    b = tr.stream.next()
                    if tr.channels_last:
                        b.x = b.x.contiguous(memory_format=torch.channels_last)
                    tr.images_seen += b.n * tr.world.size
                    out.append(b)
        return out

    def _fill(self, batches: list[Batch]) -> None:
        for s, b in zip(self.static, batches):
            s.x.copy_(b.x)
            if s.y is not None:
                s.y.copy_(b.y)
            if s.b is not None:  # translation models: the B-domain images
                s.b.copy_(b.b)

    def _finish(self, tr, seen_before: int) -> dict[str, torch.Tensor]:
        flat = self.out.clone()  # the next replay overwrites the graph's output
        terms = {k: flat[a:b].view(shape) for k, a, b, shape in self.layout}
        for name, i in self.losses:
            tr._note_finite(name, flat[i])
        if tr.ema is not None:
            tr.ema.update(tr.model.generator_net(), tr.cfg.batch_size, tr.images_seen)
        tr.step += 1
        tr._images_this_step = tr.images_seen - seen_before
        return terms

    def _refuse(self, tr, why: str) -> None:
        if self.insist:
            raise GanvaeError(f"train.cuda_graphs=true: {why}; set it to null (auto) or false")
        warnings.warn(f"train.cuda_graphs: {why}; training without CUDA graphs", stacklevel=4)
        self.disabled = why
        tr.cuda_graphs = f"off ({why})"

    # ------------------------------------------------------------------ capture
    def _capture(self, tr, batches: list[Batch]) -> None:
        # the graph's input buffers, holding this step's batches (copies: a stream may reuse its own buffers)
        self.static = [Batch(b.x.clone(), b.y.clone() if b.y is not None else None,
                             b=b.b.clone() if b.b is not None else None) for b in batches]
        snap = _Snapshot(tr)
        try:
            with torch.cuda.device(tr.device) if tr.device.type == "cuda" else contextlib.nullcontext():
                self._warmup(tr)
                snap.restore(tr)
                for opt in tr.optimizers:
                    opt.zero_grad(set_to_none=True)
                graph = _Emulated() if self.emulate else _CudaGraph()
                self.out = graph.capture(lambda: self._body(tr), tr)
            snap.restore(tr)  # an emulated capture ran the step; a CUDA capture ran nothing (a no-op copy)
        except BaseException:
            snap.restore(tr)
            self.reset()
            raise
        self.graph = graph

    def _warmup(self, tr) -> None:
        if self.emulate or tr.device.type != "cuda":
            for _ in range(WARMUP):
                self._body(tr)
            self.noise_per_step = 0
            return
        side, main = torch.cuda.Stream(tr.device), torch.cuda.current_stream(tr.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            start = tr.noise.get_offset()
            self._body(tr)
            self.noise_per_step = tr.noise.get_offset() - start
            for _ in range(WARMUP - 1):
                self._body(tr)
        main.wait_stream(side)

    def _body(self, tr) -> torch.Tensor:
        """The step's phases on the static batches, as the eager loop runs them (no host syncs); the loss terms
        and each optimizer step's loss, flattened into one tensor (the graph's output)."""
        terms: dict[str, torch.Tensor] = {}
        losses: list[tuple[str, torch.Tensor]] = []
        all_params = list(tr.model.parameters())
        static, shared = iter(self.static), None
        for ph, opt, row in zip(tr.phases, tr.optimizers, self.plan):
            for p in all_params:
                p.requires_grad_(False)
            for p in ph.parameters():
                p.requires_grad_(True)
            for kind in row:
                if kind == "draw":
                    batch = shared = next(static)
                elif kind == "reuse":
                    batch = shared
                else:
                    batch = Batch(None, None, n=tr.cfg.batch_size // tr.world.size)
                with torch.autocast(tr.device.type, dtype=tr.autocast_dtype, enabled=tr.autocast_dtype is not None):
                    out = ph.loss(batch, tr.noise)
                loss = out["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append((ph.name, loss.detach().float()))
                for k, v in out.items():
                    key = f"loss/{ph.name}" if k == "loss" else k
                    terms[key] = terms.get(key, 0.0) + v.detach().float() / ph.repeats
        for p in all_params:
            p.requires_grad_(True)
        return self._flatten(terms, losses)

    def _flatten(self, terms: dict[str, torch.Tensor], losses: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        parts, self.layout, self.losses, at = [], [], [], 0
        for k, v in terms.items():
            self.layout.append((k, at, at + v.numel(), v.shape))
            parts.append(v.reshape(-1))
            at += v.numel()
        for name, loss in losses:
            self.losses.append((name, at))
            parts.append(loss.reshape(-1)[:1])
            at += 1
        return torch.cat(parts)

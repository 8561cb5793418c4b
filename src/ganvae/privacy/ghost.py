"""Per-sample gradient clipping without per-sample gradients ("ghost clipping"), for private nets made of
``nn.Linear`` and ``nn.Embedding`` layers.

DP-SGD needs, for a batch of n samples, the sum of each sample's gradient clipped to norm C. Opacus's
:class:`~opacus.GradSampleModule` materialises every per-sample gradient: for a Linear layer of ``out x in``
weights, n x out x in numbers per step (44 million for the feature D's first layer at n = 128), which is half
of a private step's time there. For a Linear layer the per-sample gradient is an outer product,
``G_i = g_i a_i^T`` (``a_i`` the layer's input, ``g_i`` the gradient at its output), so

* its norm needs no ``G_i``: ``||G_i||^2 = ||g_i||^2 ||a_i||^2`` (2-D inputs), or, for inputs with a sequence
  axis (n, T, in), ``sum_{t,s} (a_t . a_s)(g_t . g_s)`` (Goodfellow 2015; Li et al. 2022, "ghost norm");
* the clipped sum is one matrix product: ``sum_i c_i G_i = (c * g)^T a``, ``c_i = min(1, C / ||G_i||)`` with
  ``||G_i||`` the norm over every layer's parameters together.

An Embedding row looked up by sample i gets ``g_i``: its norm is ``||g_i||`` and the clipped sum an
``index_add``. Biases get ``g_i`` (summed over the sequence axis). The result is the same sum Opacus forms
(to rounding), with the same noise drawn after it, at the cost of the layer's own forward and backward.

Conditions, as for Opacus with ``loss_reduction="mean"``: the loss is the mean over the n samples of per-sample
terms (no batch statistics), and each layer runs once per private pass (a second call is an error, not a silent
mistake). :func:`unsupported` says why a set of nets does not qualify (another layer type with weights, a
parametrised weight such as spectral norm); the DP plugin then keeps Opacus's per-sample hooks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import GanvaeError

GHOST_LAYERS = (nn.Linear, nn.Embedding)


def _layers(net: nn.Module) -> list[nn.Module]:
    """The modules that hold trainable parameters of their own."""
    return [m for m in net.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]


def unsupported(net: nn.Module) -> str | None:
    """Why ghost clipping cannot clip ``net``'s per-sample gradients, or None when it can."""
    for m in net.modules():
        if parametrize.is_parametrized(m):
            return f"a parametrised {type(m).__name__} (e.g. spectral norm)"
    for m in _layers(net):
        if type(m) not in GHOST_LAYERS:
            return f"a {type(m).__name__} layer with weights (ghost clipping covers Linear and Embedding)"
        if isinstance(m, nn.Embedding) and (m.max_norm is not None or m.sparse):
            return "an Embedding with max_norm or sparse gradients"
    return None


class GhostClipper:
    """Records each layer's input and output gradient during a private pass; :meth:`clipped_sum` then gives the
    sum over samples of the clipped per-sample gradients. ``enable_hooks`` / ``disable_hooks`` as Opacus's
    GradSampleModule (recording happens only in between)."""

    def __init__(self, net: nn.Module, max_grad_norm: float):
        why = unsupported(net)
        if why is not None:
            raise GanvaeError(f"privacy.clipping=ghost: the private nets have {why}; use privacy.clipping=auto "
                              "or per-sample")
        self.max_grad_norm = float(max_grad_norm)
        self.layers = _layers(net)
        self.enabled = False
        self.records: dict[nn.Module, list] = {}
        for m in self.layers:
            m.register_forward_hook(self._record)

    def enable_hooks(self) -> None:
        self.enabled = True

    def disable_hooks(self) -> None:
        self.enabled = False

    def _record(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if not self.enabled or not torch.is_grad_enabled() or not output.requires_grad:
            return
        if module in self.records:
            raise GanvaeError(f"privacy.clipping=ghost: a {type(module).__name__} ran twice in one private pass; "
                              "use privacy.clipping=per-sample")
        rec = [inputs[0].detach(), None]
        self.records[module] = rec
        output.register_hook(lambda g: rec.__setitem__(1, g.detach()))

    def clipped_sum(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """``sum_i c_i grad_i`` for each of ``params`` (zeros for a parameter no recorded layer holds); the
        records are consumed."""
        records, self.records = self.records, {}
        parts = [(m, a, g * g.shape[0]) for m, (a, g) in records.items() if g is not None]  # mean -> per sample
        sums = {id(p): torch.zeros_like(p) for p in params}
        if not parts or parts[0][2].shape[0] == 0:
            return [sums[id(p)] for p in params]
        n = parts[0][2].shape[0]
        if any(g.shape[0] != n for _, _, g in parts):
            raise GanvaeError("privacy.clipping=ghost: the private layers saw different batch sizes in one pass")
        sq = sum(_sq_norms(m, a, g) for m, a, g in parts)
        c = (self.max_grad_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for m, a, g in parts:
            for p, s in _sums(m, a, g, c).items():
                if id(p) in sums:
                    sums[id(p)] += s
        return [sums[id(p)] for p in params]


def _flat(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, T, in) and (n, T, out): inputs with any number of axes between the batch and the features."""
    return a.reshape(a.shape[0], -1, a.shape[-1]), g.reshape(g.shape[0], -1, g.shape[-1])


def _sq_norms(m: nn.Module, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Each sample's squared gradient norm over ``m``'s parameters, (n,)."""
    if isinstance(m, nn.Embedding):
        if a.dim() != 1:
            raise GanvaeError("privacy.clipping=ghost: an Embedding looked up more than one index per sample; "
                              "use privacy.clipping=per-sample")
        keep = (a != m.padding_idx).to(g.dtype) if m.padding_idx is not None else 1.0
        return g.pow(2).sum(1) * keep
    if a.dim() == 2:
        w = g.pow(2).sum(1) * a.pow(2).sum(1)
        return w + (g.pow(2).sum(1) if m.bias is not None else 0.0)
    a3, g3 = _flat(a, g)
    w = (a3 @ a3.transpose(1, 2) * (g3 @ g3.transpose(1, 2))).sum((1, 2))
    return w + (g3.sum(1).pow(2).sum(1) if m.bias is not None else 0.0)


def _sums(m: nn.Module, a: torch.Tensor, g: torch.Tensor, c: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``sum_i c_i grad_i`` of each of ``m``'s parameters."""
    if isinstance(m, nn.Embedding):
        cg = g * c[:, None]
        if m.padding_idx is not None:
            cg = cg * (a != m.padding_idx).to(g.dtype)[:, None]
        return {m.weight: torch.zeros_like(m.weight).index_add_(0, a, cg)}
    a3, g3 = _flat(a, g)
    cg = g3 * c[:, None, None]
    out = {m.weight: torch.einsum("nto,nti->oi", cg, a3)}
    if m.bias is not None:
        out[m.bias] = cg.sum((0, 1))
    return out

"""Privacy accounting through Opacus's accountants: epsilon for a history, calibration, the steps a budget allows.

A history is Opacus's: a list of ``(noise multiplier, sample rate, steps)``.
"""

from __future__ import annotations

import functools
import warnings

from ..errors import GanvaeError


def make_accountant(mechanism: str, history: list | None = None):
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=mechanism)
    acc.history = [(float(s), float(q), int(k)) for s, q, k in (history or [])]
    return acc


@functools.lru_cache(maxsize=64)
def _rdp_one_step(sigma: float, q: float):
    """Opacus's RDP of one Poisson-subsampled Gaussian step at its default orders (an array)."""
    from opacus.accountants.analysis import rdp as analysis
    from opacus.accountants.rdp import RDPAccountant

    return analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)


def epsilon_for(history: list, delta: float, mechanism: str = "rdp") -> float:
    """Epsilon Opacus's ``mechanism`` accountant gives for ``history`` [(sigma, q, steps), ...] at ``delta``.

    RDP adds up over steps (Opacus computes ``compute_rdp(q, sigma, 1) * steps``), so the per-step RDP
    is computed once per (sigma, q) and scaled: the same numbers as ``RDPAccountant.get_epsilon``,
    cheap enough to ask every step. PRV asks Opacus's ``PRVAccountant`` each time.
    """
    history = [(float(s), float(q), int(k)) for s, q, k in history if int(k) > 0]
    if not history:
        return 0.0
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound holds, just not tight
        warnings.simplefilter("ignore", UserWarning)
        if mechanism == "rdp":
            from opacus.accountants.analysis import rdp as analysis
            from opacus.accountants.rdp import RDPAccountant

            rdp = sum(_rdp_one_step(s, q) * k for s, q, k in history)
            eps, _ = analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
            return float(eps)
        return float(make_accountant(mechanism, history).get_epsilon(delta=delta))


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, mechanism: str = "rdp") -> float:
    """The noise multiplier with which ``steps`` Poisson-subsampled steps at ``sample_rate`` spend <= ``epsilon``."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=mechanism))
    except ValueError as e:
        raise GanvaeError(f"privacy.epsilon (--dp-epsilon) {epsilon:g}: no noise multiplier reaches it in {steps} "
                          f"steps at sample rate {sample_rate:.3g} ({e}); raise epsilon or lower the steps") from None


def steps_within(history: list, sigma: float, q: float, epsilon: float, delta: float, mechanism: str = "rdp",
                 hint: int = 1) -> int:
    """The most further steps (sigma, q) after ``history`` that keep the epsilon spent <= ``epsilon``
    (-1 when ``history`` alone exceeds it). Epsilon grows with the steps: doubling, then bisection."""
    def ok(k: int) -> bool:
        return epsilon_for(extend_history(history, sigma, q, k), delta, mechanism) <= epsilon

    if not ok(0):
        return -1
    lo, hi = 0, max(1, int(hint))
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi > 2**40:
            return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def extend_history(history: list, sigma: float, q: float, k: int) -> list:
    """``history`` plus ``k`` more steps, merged the way Opacus's accountants merge them."""
    h = [tuple(x) for x in history]
    if k <= 0:
        return h
    if h and h[-1][0] == sigma and h[-1][1] == q:
        h[-1] = (h[-1][0], h[-1][1], int(h[-1][2]) + k)
    else:
        h.append((sigma, q, k))
    return h

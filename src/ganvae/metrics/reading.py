"""Scores in words: where a model's value sits between real data and an untrained generator.

Every value ``ganvae eval`` prints sits beside two references scored the same way: **real data**
(real training images in place of the samples: what a generator that reproduced the data would
score; older records call it ``floor``) and **untrained** (the same model before training; older
records call it ``ceiling``, though it is no bound: an untrained generator can beat a trained one,
or even real data on a flawed metric). :func:`read_score` says in one line where the value is,
measuring "close" and "far" along the way from the untrained value to the real-data value::

    t = (value - untrained) / (real data - untrained)    0 = as the untrained generator, 1 = as real data
    (distances such as FID and KID on a log scale: t = log(untrained / value) / log(untrained / real data))

    t >= 1          as good as real data           0.5 <= t < 0.9  nearer real data than untrained
    0.9 <= t < 1    close to real data             0 < t < 0.5     far from real data (below 0.1: barely
                                                                    better than untrained)
    t <= 0          worse than (or as bad as) an untrained generator

When the untrained generator scores as well as real data or better (by the metric's direction), the
metric does not tell good samples from bad ones here, and the reading says that instead.
"""

from __future__ import annotations

import math

CLOSE = 0.9   # t at or above this: close to real data
MIDDLE = 0.5  # t at or above this: nearer real data than untrained
BARELY = 0.1  # t below this (and above 0): barely better than untrained


def display_name(key: str) -> str:
    """fid -> FID, is -> IS, nll -> NLL; longer names unchanged."""
    return key.upper() if len(key) <= 4 and "_" not in key else key


def direction(key: str) -> bool | None:
    """Whether lower values of the record key ``key`` are better (None: not a registered metric's key)."""
    from .registry import METRICS

    for name in METRICS.names():
        spec = METRICS.get(name)
        if key in spec.keys:
            return spec.lower_is_better[spec.keys.index(key)]
    return None


def is_headline(key: str) -> bool:
    """Whether record key ``key`` is read out in words (fid, precision, nll; not kid_std, nll_bits_per_dim)."""
    from .registry import METRICS

    return any(key in METRICS.get(name).headlines() for name in METRICS.names())


def better_word(lower_is_better: bool | None) -> str:
    return "" if lower_is_better is None else "lower is better" if lower_is_better else "higher is better"


def _num(v) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _f(v: float) -> str:
    return f"{v:.3g}"


def position(v: float, r: float, u: float, lower_is_better: bool) -> float:
    """How far ``v`` has come from the untrained value ``u`` toward the real-data value ``r`` (0 to 1).

    Distances (lower is better, all values > 0: FID, KID) on a log scale, where halving a distance is the
    same step at any size (FID 8 against real data 0.1 and untrained 114 is 38% of the way, not 93%);
    other metrics on a linear scale.
    """
    if lower_is_better and min(v, r, u) > 0:
        return math.log(u / v) / math.log(u / r)
    return (v - u) / (r - u)


def read_score(key: str, value, real_data, untrained, lower_is_better: bool | None) -> str | None:
    """One plain line on ``value`` of metric key ``key`` against its references; None when there is nothing
    to compare (no value, no reference, or a metric without a direction)."""
    v, r, u = _num(value), _num(real_data), _num(untrained)
    if v is None or (r is None and u is None) or lower_is_better is None:
        return None
    head = f"{display_name(key)} {_f(v)}"

    def better(a: float, b: float) -> bool:  # a scores better than b
        return a < b if lower_is_better else a > b

    if r is None or u is None:  # one reference only (nll has no real-data value)
        ref, name = (u, "an untrained generator") if r is None else (r, "real data")
        if v == ref:
            return f"{head}: the same as {name} ({_f(ref)})"
        return f"{head}: {'better' if better(v, ref) else 'worse'} than {name} ({_f(ref)})"
    if not better(r, u):
        rel = "the same as" if r == u else ("below" if lower_is_better else "above")
        return (f"{head}: the untrained generator scores {_f(u)}, {rel} real data ({_f(r)}), so {display_name(key)} "
                "does not tell good samples from bad ones here")
    t = position(v, r, u, lower_is_better)
    if t >= 1:
        return f"{head}: as good as real data ({_f(r)}); untrained: {_f(u)}"
    if t <= 0:
        worse = "no better than" if t == 0 else "worse than"
        return f"{head}: {worse} an untrained generator ({_f(u)}); real data: {_f(r)}"
    where = (f"close to real data ({_f(r)}), far better than untrained ({_f(u)})" if t >= CLOSE else
             f"nearer real data ({_f(r)}) than untrained ({_f(u)})" if t >= MIDDLE else
             f"far from real data ({_f(r)}), barely better than untrained ({_f(u)})" if t < BARELY else
             f"far from real data ({_f(r)}), clearly better than untrained ({_f(u)})")
    return f"{head}: {where}; {t:.0%} of the way from untrained to real data"

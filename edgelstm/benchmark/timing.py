"""Timing: individually timed calls, repeated calls, and the statistics every benchmark reports.

All times are ``time.perf_counter_ns`` readings taken around each call, so the timer's own cost (~50 ns,
``timer_overhead_ns``) is included, as a user's loop would see it."""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager

import numpy as np


def time_calls(fn, inputs, n: int) -> np.ndarray:
    """n individually timed calls ``fn(inputs[k % len(inputs)])`` -> ns per call."""
    clock = time.perf_counter_ns
    out = np.empty(n, np.int64)
    k = len(inputs)
    for i in range(n):
        x = inputs[i % k]
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out


def time_repeats(fn, repeats: int) -> np.ndarray:
    """``repeats`` timed calls of ``fn()`` -> ns per call."""
    clock = time.perf_counter_ns
    out = np.empty(repeats, np.int64)
    for i in range(repeats):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn()``, in seconds (for whole sequences on a shared machine)."""
    return float(time_repeats(fn, repeats).min()) / 1e9


def timer_overhead_ns(n: int = 200_000) -> float:
    """Median cost of one timer reading pair (included in every per-call number)."""
    clock = time.perf_counter_ns
    d = np.empty(n, np.int64)
    for i in range(n):
        t0 = clock()
        t1 = clock()
        d[i] = t1 - t0
    return float(np.median(d))


@contextmanager
def gc_paused():
    """No garbage collection inside a timed loop (a collection would land on one engine's calls only)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def median_p99_us(ns) -> tuple[float, float]:
    """(median, p99) of ns samples, in µs."""
    return float(np.median(ns)) / 1e3, float(np.percentile(ns, 99)) / 1e3


def stats_us(ns) -> dict:
    """{"median_us", "p10_us", "p90_us", "n"} of ns samples."""
    p10, p50, p90 = np.percentile(ns, [10, 50, 90])
    return {"median_us": p50 / 1e3, "p10_us": p10 / 1e3, "p90_us": p90 / 1e3, "n": int(np.size(ns))}

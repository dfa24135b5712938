#!/usr/bin/env python
"""Soak: stream audio-rate frames through int8 and float32 streams for a long time, watching RSS and latency.

    python bench/soak.py --minutes 60 [--json bench/results/soak.json]

Two streams (the bundled int8 GRU tagger and its float32 twin) step frame by frame, as fast as they go, through
a slowly drifting log-mel-like signal (10 ms frames: one hour of wall time is many hours of audio).  Every
minute it records the process's RSS and the median / p99 of 2,000 individually timed `step` calls per stream.
At the end it checks that a saved state replays exactly: the int8 stream's state is saved, the next 5,000
frames are stepped, then a fresh stream given the saved state steps the same frames; the outputs must be
equal bit for bit (int8) and the float32 stream's within 1e-6.  Exit status 1 if that check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgelstm.benchmark import time_calls, write_json

REPO = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Frames:
    """A drifting random-walk signal shaped like log-mel frames (bounded, never repeating exactly)."""

    def __init__(self, n_features: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.level = np.zeros(n_features, np.float32)

    def block(self, n: int) -> np.ndarray:
        steps = self.rng.standard_normal((n, self.level.size)).astype(np.float32) * 0.3
        out = np.empty_like(steps)
        for t in range(n):
            self.level = np.clip(0.98 * self.level + steps[t], -4.0, 4.0)
            out[t] = self.level
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--json", default=None, help="write the curve here")
    args = ap.parse_args(argv)

    import edgelstm as el
    q = el.load(REPO / "edgelstm" / "data" / "tagger_gru_int8.elstm")
    f = el.load(REPO / "edgelstm" / "data" / "tagger_gru.elstm")
    streams = {"int8": q.stream(), "f32": f.stream()}
    frames = Frames(q.input_size)
    for s in streams.values():  # compile / load kernels before the clock starts
        s.step(frames.block(1)[0])
    start = time.perf_counter()
    rows, steps = [], 0
    block = frames.block(2000)
    next_mark = 0.0
    deadline = args.minutes * 60.0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= next_mark:
            row = {"minute": round(elapsed / 60.0, 2), "rss_mib": round(rss_mib(), 2), "steps": steps}
            for name, s in streams.items():
                us = time_calls(s.step, block, len(block)) / 1000.0
                row[f"{name}_median_us"] = round(float(np.median(us)), 3)
                row[f"{name}_p99_us"] = round(float(np.percentile(us, 99)), 3)
            steps += 2 * len(block)
            rows.append(row)
            print(json.dumps(row), flush=True)
            next_mark += 60.0
            if elapsed >= deadline:
                break
        block = frames.block(2000)
        for s in streams.values():
            for t in range(len(block)):
                s.step(block[t])
        steps += 2 * len(block)

    # saved state must replay exactly after the long stream
    X = frames.block(5000)
    ok = True
    for name, s in streams.items():
        saved = s.state
        Y = np.stack([s.step(x).copy() for x in X])
        fresh = s.model.stream()
        fresh.state = saved
        Y2 = np.stack([fresh.step(x).copy() for x in X])
        same = np.array_equal(Y, Y2) if name == "int8" else bool(np.max(np.abs(Y - Y2)) <= 1e-6)
        print(f"{name}: replay from the saved state after {steps:,} steps: {'identical' if same else 'DIFFERENT'}")
        ok &= same
    summary = {"minutes": args.minutes, "steps": steps, "replay_identical": ok, "curve": rows,
               "rss_start_mib": rows[0]["rss_mib"], "rss_end_mib": rows[-1]["rss_mib"]}
    if args.json:
        write_json(args.json, summary)
    print(f"steps {steps:,}; RSS start {rows[0]['rss_mib']} MiB, end {rows[-1]['rss_mib']} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

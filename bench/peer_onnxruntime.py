#!/usr/bin/env python
"""ONNX Runtime runs our own ``to_onnx`` export of the same model, side by side with edgelstm, in one run.

    nice python bench/peer_onnxruntime.py [--json bench/results/peer_onnxruntime.json] [--steps 2000]

Models: LSTM and GRU (I=40, H in 64/128) + Dense 8 sigmoid, random weights; edgelstm float32 and int8
(quantized on the same frames).  Two ways of running each:
  step      one frame per call, state kept: edgelstm ``Stream.step``; ONNX Runtime on
            ``to_onnx(model, streaming=True)`` with the state outputs fed back as the next call's inputs
            (the full step: build the feed dict, run, keep the state).  Median of individually timed calls.
  sequence  one call over T=1000 frames: ``Model.run`` and ONNX Runtime on ``to_onnx(model)``; best of 5, per
            frame.
ONNX Runtime: CPUExecutionProvider, 1 intra-op thread.  Before timing, ONNX Runtime's outputs are checked
against edgelstm float32 (whole sequence, and 200 steps with the state fed back): max abs error reported.
Timers, the onnxruntime session and its fed-back step are edgelstm.benchmark's (shared with ``edgelstm
bench``); the machine record is bench_latency.py's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import machine_info  # noqa: E402

from edgelstm.benchmark import best_of, head_spec, ort_session, ort_step, stats_us, time_calls, write_json  # noqa: E402

I, T_SEQ = 40, 1000


class OrtPeer:
    """ONNX Runtime on to_onnx(model) (whole sequences) and to_onnx(model, streaming=True) (one step, state fed
    back: hN_k / cN_k become the next h0_k / c0_k)."""

    def __init__(self, model):
        from edgelstm.export import to_onnx
        with tempfile.TemporaryDirectory() as d:
            to_onnx(model, os.path.join(d, "seq.onnx"))
            to_onnx(model, os.path.join(d, "step.onnx"), streaming=True)
            self.seq = ort_session(os.path.join(d, "seq.onnx"))
            self.step = ort_step(ort_session(os.path.join(d, "step.onnx")))
        self.reset = self.step.reset

    def run(self, X):
        return self.seq.run(["y"], {"x": X})[0]


def best_per_frame_us(fn, X, reps=5):
    return best_of(lambda: fn(X), reps) / X.shape[-2] * 1e6


def main() -> int:
    import edgelstm as el
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=2000, help="individually timed step calls per engine")
    ap.add_argument("--hidden", default="64,128")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((1, T_SEQ, I)) * 0.8).astype(np.float32)
    frames = [np.ascontiguousarray(X[0, t]) for t in range(256)]
    rows, checks = [], []
    for kind in ("lstm", "gru"):
        for H in [int(h) for h in a.hidden.split(",")]:
            fm = el.Model(head_spec(kind, I, H, seed=H))
            qm = el.quantize(fm, calibration=X, progress=False)
            peer = OrtPeer(fm)
            # correctness first: ONNX Runtime on the export vs our float32 runtime
            seq_err = float(np.abs(peer.run(X) - fm.run(X)).max())
            s = fm.stream()
            step_err = max(float(np.abs(peer.step(x[None, None]).reshape(-1) - s.step(x)).max())
                           for x in frames[:200])
            peer.reset()
            checks.append({"model": f"{kind.upper()} H={H}", "sequence_max_abs_error": seq_err,
                           "step_max_abs_error": step_err})
            row = {"model": f"{kind.upper()} H={H}"}
            for name, m in (("edgelstm int8", qm), ("edgelstm f32", fm)):
                st = m.stream()
                st.step(frames[0])
                row[f"{name} step"] = stats_us(time_calls(st.step, frames, a.steps))
                m.run(X)
                row[f"{name} sequence /frame"] = best_per_frame_us(m.run, X)
            ort_frames = [f[None, None] for f in frames]
            peer.step(ort_frames[0])
            row["ORT step (state fed back)"] = stats_us(time_calls(peer.step, ort_frames, a.steps))
            peer.run(X)
            row["ORT sequence /frame"] = best_per_frame_us(peer.run, X)
            rows.append(row)
            print(f"{row['model']}: checked (sequence {seq_err:.1e}, step {step_err:.1e}); "
                  f"step median us int8 {row['edgelstm int8 step']['median_us']:.2f} "
                  f"f32 {row['edgelstm f32 step']['median_us']:.2f} "
                  f"ORT {row['ORT step (state fed back)']['median_us']:.2f}; sequence us/frame "
                  f"int8 {row['edgelstm int8 sequence /frame']:.2f} f32 {row['edgelstm f32 sequence /frame']:.2f} "
                  f"ORT {row['ORT sequence /frame']:.2f}", flush=True)
    result = {"machine": machine_info(), "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "input_size": I, "T_sequence": T_SEQ, "step_calls": a.steps, "checks": checks, "rows": rows,
              "load_average_end": list(os.getloadavg())}
    ok = all(c["sequence_max_abs_error"] <= 1e-5 and c["step_max_abs_error"] <= 1e-5 for c in checks)
    print("| model | our int8 step | our f32 step | ORT step (state fed back) | ORT / our int8 | ORT / our f32 "
          "| our int8 seq /frame | our f32 seq /frame | ORT seq /frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        i8, f32 = r["edgelstm int8 step"]["median_us"], r["edgelstm f32 step"]["median_us"]
        o = r["ORT step (state fed back)"]["median_us"]
        print(f"| {r['model']} | {i8:.2f} | {f32:.2f} | {o:.2f} | {o / i8:.1f}x | {o / f32:.1f}x | "
              f"{r['edgelstm int8 sequence /frame']:.2f} | {r['edgelstm f32 sequence /frame']:.2f} | "
              f"{r['ORT sequence /frame']:.2f} |")
    if a.json:
        write_json(a.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

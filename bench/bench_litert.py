#!/usr/bin/env python
"""edgelstm side by side with LiteRT running the SAME model (exported with ``edgelstm.export.to_tflite``).

    python bench/bench_litert.py [--quick] [--json bench/results/litert.json]

Model: LSTM I=40, H in (64, 128, 256) + Dense 8 sigmoid, random weights, int8 (quantized on a random walk)
and float32. Measured in one process, single thread, medians of individually timed calls:
  ours     Stream.step (one frame) on the Numba JIT and, for int8 when the C library is built
           (edgelstm/backends/native.py), on the C runtime through ctypes; Stream.step_many over T=1000 (per step);
           model.streams(16).step (one call steps 16 streams; per stream)
  LiteRT   full streaming step from Python: set the input frame, invoke, read the output (its LSTM state
           stays in the op's variable tensors between invokes, so no state is copied in or out); and the
           fused sequence op over T=1000 in one invoke (per step). Default op resolver, 1 thread.
Before timing, the int8 outputs of both are checked to be identical over the timed frames.
Models, timers, LiteRT's step wrapper and the agreement check are edgelstm.benchmark's (``edgelstm bench``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgelstm.benchmark import (agrees, best_of, head_spec, litert_interpreter, litert_step, median_p99_us,
                                quantize_frames, time_calls, walk, write_json)

I, O, T_SEQ = 40, 8, 1000


def _median_us(fn, xs, n):
    """(median, p99) µs of n individually timed calls."""
    return median_p99_us(time_calls(fn, xs, n))


def measure(H: int, quantized: bool, n_steps: int, reps: int) -> dict:
    import edgelstm as el
    from edgelstm.export import to_tflite
    Interpreter = litert_interpreter()

    frames = walk(T_SEQ, I, H)
    model = el.Model(head_spec("lstm", I, H, seed=H))
    if quantized:
        model = el.quantize(model, calibration=frames[None], progress=False)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tflite"
        to_tflite(model, path)
        step_it = Interpreter(model_path=str(path), num_threads=1)
        seq_it = Interpreter(model_path=str(path), num_threads=1)
    inp = step_it.get_input_details()[0]
    step_it.resize_tensor_input(inp["index"], [1, 1, I])
    step_it.allocate_tensors()
    seq_it.resize_tensor_input(inp["index"], [1, T_SEQ, I])
    seq_it.allocate_tensors()
    i_idx, o_idx = step_it.get_input_details()[0]["index"], step_it.get_output_details()[0]["index"]
    si_idx, so_idx = seq_it.get_input_details()[0]["index"], seq_it.get_output_details()[0]["index"]

    frames_lr, frames = quantize_frames(model, frames)
    frames_lr3 = frames_lr[:, None, None, :].copy()  # (T, 1, 1, I): one invoke's input each
    lr_step = litert_step(step_it, i_idx, o_idx)      # its LSTM state stays in the op's variable tensors

    # identical outputs first (int8), so the speed comparison is between equal computations
    ours = model.stream().step_many(frames)
    lr = np.array([lr_step(x)[0, 0].copy() for x in frames_lr3[:200]])
    assert agrees(model, ours[:200], lr, atol=1e-5), "outputs differ from LiteRT"

    s = model.stream()
    s._step_kernel = model._kernel(frame=True)          # the Numba JIT, whatever the default backend is
    step_med, step_p99 = _median_us(s.step, frames, n_steps)
    native_med = native_p99 = None
    from edgelstm.backends import native
    if quantized and native.library() is not None:   # the C backend when found (EDGELSTM_NATIVE_LIB=...)
        s_nat = model.stream()
        s_nat._step_kernel = native.NativeStep(native.library(), model._prep)
        native_med, native_p99 = _median_us(s_nat.step, frames, n_steps)
    n_streams = 16
    ss = model.streams(n_streams)
    frames_n = [np.ascontiguousarray(frames[k:k + n_streams]) for k in range(0, T_SEQ - n_streams, n_streams)]
    ss_med, ss_p99 = _median_us(ss.step, frames_n, max(200, n_steps // n_streams))
    lr_med, lr_p99 = _median_us(lr_step, frames_lr3, n_steps)
    s2 = model.stream()
    many = best_of(lambda: s2.step_many(frames), reps) / T_SEQ * 1e6
    seq_in = frames_lr[None]

    def lr_seq():
        seq_it.set_tensor(si_idx, seq_in)
        seq_it.invoke()
        seq_it.get_tensor(so_idx)

    lr_seq_us = best_of(lr_seq, reps) / T_SEQ * 1e6
    return {"H": H, "dtype": "int8" if quantized else "float32", "step_us": step_med, "step_p99_us": step_p99,
            "native_step_us": native_med, "native_step_p99_us": native_p99,
            "streams16_per_stream_us": ss_med / n_streams, "streams16_call_us": ss_med,
            "streams16_call_p99_us": ss_p99, "streams16_per_stream_over_step": ss_med / n_streams / step_med,
            "step_many_us": many, "litert_step_us": lr_med, "litert_step_p99_us": lr_p99,
            "litert_sequence_us": lr_seq_us, "litert_step_over_step": lr_med / step_med,
            "litert_step_over_step_many": lr_med / many, "litert_sequence_over_step_many": lr_seq_us / many}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="H=64 only, fewer calls (CI)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sizes = (64,) if args.quick else (64, 128, 256)
    n_steps, reps = (2000, 3) if args.quick else (20000, 7)
    rows = []
    for H in sizes:
        for quantized in (True, False):
            r = measure(H, quantized, n_steps, reps)
            rows.append(r)
            print(f"LSTM I={I} H={H:<3} {r['dtype']:<7} step {r['step_us']:6.2f} us  step_many {r['step_many_us']:6.2f}"
                  f"  | LiteRT step {r['litert_step_us']:6.2f}  sequence {r['litert_sequence_us']:6.2f}"
                  f"  | LiteRT step / our step {r['litert_step_over_step']:.2f}x, / our step_many "
                  f"{r['litert_step_over_step_many']:.2f}x; LiteRT sequence / our step_many "
                  f"{r['litert_sequence_over_step_many']:.2f}x", flush=True)
    if args.json:
        import ai_edge_litert
        write_json(args.json, {"litert": getattr(ai_edge_litert, "__version__", "?"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

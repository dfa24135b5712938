#!/usr/bin/env python
"""Issue 10's speed measurements in ONE process (so ratios hold under the machine's load):

    python bench/bench_speed.py [--quick] [--json bench/results/speed.json]
    EDGELSTM_NATIVE_LIB=/path/libedgelstm_native.so python bench/bench_speed.py ...   # + the C backend

1. Side by side with LiteRT on the same exported model (``bench_litert.measure``): int8 LSTM I=40 H=64 +
   Dense 8 sigmoid: JIT step, C step (when the library is found), step_many per step, 16 streams per call
   (per stream), LiteRT's full streaming step and fused sequence; then the float32 twin.  Also LiteRT's full
   step on the converter-made int8 step model of the bundled tagger's shapes (``converter_step``).
2. int8 step_many at H in (64, 256): effective GMAC/s (useful multiply-adds: 4H(I+H) + 8H per step) and the
   fraction of the machine's int8 peak (see ``int8_peak``), plus the pairwise dot kernel alone on the
   H=256 recurrent matrix.
3. Batched run: (B, T, F) for B = 1, 4, 16, time per sequence.
4. Threads: 1 vs 2 threads, each with its own stream (and its own ``streams(16)``) on one shared model,
   ``step``, ``step_many`` (100 frames per call) and ``streams(16).step``; results checked equal to a
   sequential run; best of 5 trials (frames per second of all threads together).
The machine record, the int8 peak, models, timers and LiteRT's fed-back step are edgelstm.benchmark's
(shared with ``edgelstm bench``).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_litert  # noqa: E402

from edgelstm.benchmark import (best_of, cpu_info, head_spec, int8_peak, litert_file_step, macs_per_step,  # noqa: E402
                                median_p99_us, time_calls, write_json)
from edgelstm.benchmark import walk as feature_walk  # noqa: E402

I, O = 40, 8


def _model(H: int, quantized: bool = True, kind: str = "lstm"):
    import edgelstm as el
    frames = feature_walk(1000, I, H)
    m = el.Model(head_spec(kind, I, H, seed=H))
    return (el.quantize(m, calibration=frames[None], progress=False) if quantized else m), frames


def converter_step(n_steps: int) -> dict | None:
    """LiteRT's full streaming step on the converter-made int8 LSTM step model (bench/fixtures, builtin ops,
    the bundled tagger's shapes 40 -> 64 -> 4, float I/O: set x, h, c, invoke, read y, h, c and feed the
    state back), next to our int8 ``step`` of the bundled LSTM tagger (same shapes)."""
    root = Path(__file__).resolve().parents[1]
    path = root / "bench" / "fixtures" / "lstm_tagger_step_int8.tflite"
    if not path.exists():
        return None
    import edgelstm as el
    X = np.load(root / "edgelstm" / "data" / "demo_features.npy")[:1000].astype(np.float32)
    lr_step, frames, _ = litert_file_step(path, X, 64, 2, n_inputs=len(X))      # x in, (h, c) fed back
    lr_med, lr_p99 = median_p99_us(time_calls(lr_step, frames, n_steps))
    s = el.load(root / "edgelstm" / "data" / "tagger_lstm_int8.elstm").stream()
    ours, ours_p99 = median_p99_us(time_calls(s.step, list(X), n_steps))
    return {"litert_converter_step_us": lr_med, "litert_converter_step_p99_us": lr_p99,
            "our_tagger_step_us": ours, "our_tagger_step_p99_us": ours_p99, "ratio": lr_med / ours}


def peak_fraction(H: int, reps: int, peak: dict) -> dict:
    q, walk = _model(H)
    s = q.stream()
    s.step_many(walk)
    per_step = best_of(lambda: s.step_many(walk), reps) / len(walk)
    macs = macs_per_step(q.spec)                  # 4H(I+H) + 8H
    gmacs = macs / per_step / 1e9
    out = {"H": H, "step_many_us": per_step * 1e6, "macs_per_step": macs, "gmacs": gmacs,
           "fraction_of_peak": gmacs / peak["gmacs"]}
    if H >= 64:   # the pairwise kernel alone on the (4H, H) recurrent matrix, as the model stores it
        from numba import njit

        from edgelstm.kernels import cells_int8 as C
        from edgelstm.program.layout import IX_STATE, L_HDR, LS_WH

        @njit(nogil=True)
        def loop(n, wq, w_off, rows, cols, v, ix, acc):
            for _ in range(n):
                C._dot_rows(wq, w_off, 0, rows, cols, rows, v, ix, IX_STATE, 0, 1, acc, rows)

        prep = q._prep
        w_off = int(prep.prog[int(prep.prog[16]) + L_HDR + LS_WH])
        v = np.ones(int(C.padded(H)) + 64, np.int16)
        ix = np.zeros(4, np.int32)
        acc = np.zeros(4 * H, np.int32)
        loop(1, prep.kernel_weights, w_off, 4 * H, H, v, ix, acc)
        n = 200
        t = best_of(lambda: loop(n, prep.kernel_weights, w_off, 4 * H, H, v, ix, acc), reps * 20) / n
        out["dot_recurrent_ns"] = t * 1e9
        out["dot_recurrent_gmacs"] = 4 * H * H / t / 1e9
        out["dot_fraction_of_peak"] = out["dot_recurrent_gmacs"] / peak["gmacs"]
    return out


def batched_run(reps: int) -> list:
    q, walk = _model(64)
    rows = []
    base = None
    for B in (1, 4, 16):
        X = np.ascontiguousarray(np.stack([np.roll(walk, 37 * b, axis=0) for b in range(B)]))
        q.run(X[:, :10])
        t = best_of(lambda: q.run(X), reps) / B  # noqa: B023 - called right here
        base = base or t
        rows.append({"B": B, "per_sequence_ms": t * 1e3, "speedup_per_sequence_vs_B1": base / t})
    return rows


def threads(n_steps: int, trials: int) -> dict:
    q, walk = _model(64)
    frames = np.ascontiguousarray(np.tile(walk, (max(1, n_steps // len(walk)), 1)))

    def work_step(s, out):
        for k, x in enumerate(frames):
            out[k] = s.step(x)

    def work_many(s, out):
        for k in range(0, len(frames), 100):
            out[k:k + 100] = s.step_many(frames[k:k + 100])

    def work_streams(ss, out, X16):
        for k in range(len(X16)):
            out[k] = ss.step(X16[k])

    X16 = np.ascontiguousarray(frames[: (len(frames) // 16) * 16].reshape(-1, 16, I))
    kinds = {"step": (work_step, lambda: q.stream(), lambda: np.empty((len(frames), O), np.float32), ()),
             "step_many": (work_many, lambda: q.stream(), lambda: np.empty((len(frames), O), np.float32), ()),
             "streams16": (work_streams, lambda: q.streams(16), lambda: np.empty((len(X16), 16, O), np.float32),
                           (X16,))}
    out = {}
    for name, (fn, make, buf, extra) in kinds.items():
        ref = buf()
        s = make()
        fn(s, ref, *extra)                                  # sequential reference (and warm-up)
        res = {1: 0.0, 2: 0.0}
        for _ in range(trials):                              # best of: the machine is shared
            for n_threads in (1, 2):
                streams = [make() for _ in range(n_threads)]
                outs = [buf() for _ in range(n_threads)]
                ts = [threading.Thread(target=fn, args=(streams[i], outs[i]) + extra) for i in range(n_threads)]
                a = time.perf_counter()
                [t.start() for t in ts]
                [t.join() for t in ts]
                wall = time.perf_counter() - a
                assert all(np.array_equal(o, ref) for o in outs), f"{name}: threads differ from the sequential run"
                res[n_threads] = max(res[n_threads], n_threads * ref.size / O / wall)  # frames/s, all threads
        out[name] = {"fps_1_thread": res[1], "fps_2_threads": res[2], "scaling": res[2] / res[1]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (CI)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n_steps, reps = (2000, 3) if args.quick else (20000, 9)
    info = cpu_info()
    peak = int8_peak(info)
    load0 = os.getloadavg()
    print(f"{info['model']} {info['mhz']} MHz; int8 peak {peak['gmacs']:.1f} GMAC/s ({peak['derivation']}); "
          f"load average {load0[0]:.2f}", flush=True)
    result = {"cpu": info["model"], "mhz": info["mhz"], "int8_peak": peak, "load_average_start": load0}

    lr = [bench_litert.measure(64, True, n_steps, reps), bench_litert.measure(64, False, n_steps, reps)]
    for r in lr:
        nat = f"  C step {r['native_step_us']:.2f}" if r.get("native_step_us") else ""
        print(f"LSTM I=40 H=64 {r['dtype']:<7}: step {r['step_us']:.2f} us (p99 {r['step_p99_us']:.2f}){nat}  "
              f"step_many {r['step_many_us']:.2f}  16 streams {r['streams16_per_stream_us']:.2f}/stream "
              f"({r['streams16_per_stream_over_step']:.2f} of a step) | LiteRT step {r['litert_step_us']:.2f}  "
              f"sequence {r['litert_sequence_us']:.2f} | LiteRT step / our step "
              f"{r['litert_step_over_step']:.2f}x, / step_many {r['litert_step_over_step_many']:.2f}x; LiteRT "
              f"sequence / step_many {r['litert_sequence_over_step_many']:.2f}x", flush=True)
    result["litert"] = lr
    conv = converter_step(n_steps)
    if conv:
        result["litert_converter_step"] = conv
        print(f"converter-made LiteRT int8 step model (40-64-4, builtin ops, state fed back): "
              f"{conv['litert_converter_step_us']:.2f} us vs our tagger step {conv['our_tagger_step_us']:.2f} us"
              f" = {conv['ratio']:.2f}x", flush=True)

    result["peak"] = [peak_fraction(H, reps, peak) for H in (64, 256)]
    for r in result["peak"]:
        print(f"int8 step_many H={r['H']}: {r['step_many_us']:.2f} us/step = {r['gmacs']:.1f} GMAC/s = "
              f"{100 * r['fraction_of_peak']:.0f}% of peak; recurrent dot alone {r['dot_recurrent_gmacs']:.1f} "
              f"GMAC/s ({100 * r['dot_fraction_of_peak']:.0f}%)", flush=True)

    result["batched_run"] = batched_run(max(reps, 15))
    for r in result["batched_run"]:
        print(f"run (B, 1000, 40) B={r['B']:<2}: {r['per_sequence_ms']:.2f} ms per sequence "
              f"({r['speedup_per_sequence_vs_B1']:.2f}x B=1)", flush=True)

    result["threads"] = threads(n_steps, 2 if args.quick else 5)
    for k, r in result["threads"].items():
        print(f"threads {k:<10}: 1 thread {r['fps_1_thread']:.0f} frames/s, 2 threads {r['fps_2_threads']:.0f} "
              f"frames/s = {r['scaling']:.2f}x (results equal to sequential)", flush=True)
    result["load_average_end"] = os.getloadavg()
    print(f"load average at the end {result['load_average_end'][0]:.2f}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

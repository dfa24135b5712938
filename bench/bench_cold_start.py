"""Cold start and per-step latency of the deployment paths, measured side by side in one run.

    python bench/bench_cold_start.py [--runs 7]      # writes bench/results/cold_start.json

Cold start = a fresh process from spawn to its first output line (wall, median of --runs, the candidates
interleaved) and its peak RSS (ru_maxrss). Candidates: edgelstm's no-JIT path (C runtime via ctypes) and its
JIT path (warm Numba disk cache) on the bundled int8 GRU tagger and the int8 LSTM tagger; the numpy-free
``edgelstm.deploy`` path on the LSTM tagger compiled into a shared library (frame read from a raw file); LiteRT running
bench/fixtures/lstm_tagger_step_int8.tflite (same shapes, converter-made int8 step model) once; the C
example streamer of the LSTM tagger bundle as a native process; `python -c "import numpy"` as the floor.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgelstm.benchmark import best_of, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "edgelstm" / "data"
TFLITE = ROOT / "bench" / "fixtures" / "lstm_tagger_step_int8.tflite"

EDGELSTM = """import numpy as np, edgelstm as el
s = el.load({path!r}).stream()
print(s.step(np.load({frames!r})[0]))
"""
DEPLOY = """import array
from edgelstm.deploy import CompiledModel
s = CompiledModel({path!r}).stream()
x = array.array("f")
with open({frames!r}, "rb") as f:
    x.fromfile(f, {F})
print(list(s.step(x)))
"""
LITERT = """import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter({path!r}); it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], np.float32))
it.set_tensor(it.get_input_details()[1]["index"], np.load({frames!r})[:1])
it.invoke()
print(it.get_tensor(it.get_output_details()[0]["index"]))
"""


LAUNCHER = None


def _best_step_us(stream, X, reps: int = 5) -> float:
    """Best of ``reps`` passes over X, in microseconds per step."""
    def one_pass():
        for x in X:
            stream.step(x)
    return best_of(one_pass, reps) / len(X) * 1e6


def spawn(cmd, env, stdin_text=None):
    """(seconds from spawn to exit, peak RSS MiB) of one fresh process; every candidate prints its first
    output and exits. A small C launcher (bench/spawn_rss.c) starts it: Linux carries the spawning process's
    peak RSS into a child's ru_maxrss, so spawning from this (large) Python process would inflate them all."""
    res = subprocess.run([LAUNCHER, *cmd], env=env, input=stdin_text or "", capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {res.stderr}")
    wall_ms, rss_kib = res.stderr.strip().splitlines()[-1].split()
    return float(wall_ms) / 1000.0, float(rss_kib) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import edgelstm as el
    from edgelstm.backends import native
    from edgelstm.export.to_c import to_c
    from edgelstm.firmware_host import build, build_native, frames_text

    global LAUNCHER
    tmp = Path(tempfile.mkdtemp(prefix="edgelstm-cold-"))
    LAUNCHER = str(tmp / "spawn_rss")
    subprocess.run(["cc", "-O2", "-o", LAUNCHER, str(ROOT / "bench" / "spawn_rss.c")], check=True)
    lib = build_native(out=tmp / native.LIB_NAME)
    lstm = el.quantize(el.load(DATA / "tagger_lstm.elstm"), calibration=np.load(DATA / "calibration.npy"),
                       progress=False)
    lstm_path = tmp / "tagger_lstm_int8.elstm"
    el.save(lstm, lstm_path)
    frames = tmp / "frames.npy"
    X = np.load(DATA / "demo_features.npy")[:1000]
    np.save(frames, X)
    bundle = to_c(lstm, tmp / "bundle")
    exe = build(bundle)
    subprocess.run(["make", "-s", "-C", str(bundle), "libmodel.so"], check=True)
    raw = tmp / "frame.f32"
    raw.write_bytes(X[0].tobytes())
    py = sys.executable
    env_native = dict(os.environ, EDGELSTM_NATIVE_LIB=str(lib), EDGELSTM_BACKEND="native")
    env_jit = dict(os.environ, EDGELSTM_BACKEND="jit")
    gru_path = DATA / "tagger_gru_int8.elstm"
    cands = {
        "edgelstm no-JIT (C via ctypes), GRU tagger": ([py, "-c", EDGELSTM.format(path=str(gru_path), frames=str(frames))], env_native, None),
        "edgelstm no-JIT (C via ctypes), LSTM tagger": ([py, "-c", EDGELSTM.format(path=str(lstm_path), frames=str(frames))], env_native, None),
        "edgelstm.deploy (compiled bundle, numpy-free), LSTM tagger": ([py, "-c", DEPLOY.format(path=str(bundle / "libmodel.so"), frames=str(raw), F=X.shape[1])], dict(os.environ), None),
        "edgelstm JIT (warm Numba cache), LSTM tagger": ([py, "-c", EDGELSTM.format(path=str(lstm_path), frames=str(frames))], env_jit, None),
        "LiteRT int8 LSTM step .tflite": ([py, "-c", LITERT.format(path=str(TFLITE), frames=str(frames))], dict(os.environ), None),
        "C example streamer (native process), LSTM tagger": ([str(exe)], dict(os.environ), frames_text(X[:1])),
        "python -c 'import numpy'": ([py, "-c", "import numpy; print(1)"], dict(os.environ), None),
    }
    for cmd, env, stdin in cands.values():    # warm-up: page cache, Numba disk cache
        spawn(cmd, env, stdin)
    res = {k: [] for k in cands}
    for _ in range(args.runs):
        for k, (cmd, env, stdin) in cands.items():
            res[k].append(spawn(cmd, env, stdin))
    cold = {k: {"wall_ms": 1000 * statistics.median(w for w, _ in v), "peak_rss_mib": max(r for _, r in v)}
            for k, v in res.items()}
    lite = cold["LiteRT int8 LSTM step .tflite"]
    print(f"cold start, median of {args.runs} (wall to first output, peak RSS):")
    for k, v in cold.items():
        print(f"  {k:52s} {v['wall_ms']:8.1f} ms ({v['wall_ms'] / lite['wall_ms']:.2f}x LiteRT)  "
              f"{v['peak_rss_mib']:7.1f} MiB ({v['peak_rss_mib'] / lite['peak_rss_mib']:.2f}x)")

    # per-step latency, one process: no-JIT Stream.step (the -march=native library, SIMD dot loop, and a
    # portable-C one), JIT Stream.step, edgelstm.deploy, the C step in a C loop
    lat = {}
    portable_lib = build_native(out=tmp / "portable" / native.LIB_NAME, portable=True, cflags=["-DELSTM_NO_SIMD"])
    for name, path in (("gru", gru_path), ("lstm", lstm_path)):
        m = el.load(path)
        for backend, lib_path in (("native", lib), ("native portable-C", portable_lib), ("jit", lib)):
            native._searched = False
            os.environ["EDGELSTM_NATIVE_LIB"] = str(lib_path)
            os.environ["EDGELSTM_BACKEND"] = backend.split()[0]
            s = m.stream()
            for x in X[:200]:
                s.step(x)
            lat[f"{name} Stream.step {backend}"] = _best_step_us(s, X)
        from edgelstm.deploy import CompiledModel
        bd = to_c(m, tmp / f"deploy-{name}")
        subprocess.run(["make", "-s", "-C", str(bd), "ARCH_FLAGS=-march=native", "libmodel.so"], check=True)
        s = CompiledModel(bd / "libmodel.so").stream()
        lat[f"{name} edgelstm.deploy step"] = _best_step_us(s, X)
        b = to_c(m, tmp / f"bench-{name}")
        sb = tmp / f"step_bench_{name}"
        subprocess.run([shutil.which("cc"), "-std=c99", "-O3", "-march=native", "-I", str(b), "-o", str(sb),
                        str(ROOT / "bench" / "step_bench.c"), str(b / "model_data.c"), str(b / "edgelstm.c"),
                        str(b / "elstm_io.c"), "-lm"], check=True)
        lat[f"{name} C elstm_step (C loop)"] = float(subprocess.run([str(sb)], capture_output=True, text=True,
                                                                    check=True).stdout.split()[0])
    print("per-step latency (us, best of 5 passes over 1000 frames):")
    for k, v in lat.items():
        print(f"  {k:40s} {v:7.2f}")
    out = ROOT / "bench" / "results" / "cold_start.json"
    write_json(out, {"cold_start": cold, "step_us": lat, "runs": args.runs})
    print(f"wrote {out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Per-step latency of the C runtime's dot-loop paths on the bundled taggers (C loop, bench/step_bench.c).

    python bench/bench_c_step.py [--reps 5]     # writes bench/results/c_step.json

Builds each tagger's bundle and times ``elstm_step`` in a C loop (200,000 steps, best of --reps runs,
variants interleaved) with: the portable C dot loop (-O3 -DELSTM_NO_SIMD), the AVX2 one (-O3 -mavx2),
-O3 -march=native (what ``build-native`` uses), and -march=native on a bundle exported without activation
tables (computed gemmlowp logistic/tanh, the microcontroller layout). x86 only for the SIMD rows.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgelstm.benchmark import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "edgelstm" / "data"
VARIANTS = {   # name: (cflags, activation tables)
    "portable C (-O3 -DELSTM_NO_SIMD)": (["-O3", "-DELSTM_NO_SIMD"], True),
    "AVX2 (-O3 -mavx2)": (["-O3", "-mavx2"], True),
    "-O3 -march=native": (["-O3", "-march=native"], True),
    "-O3 -march=native, no tables (computed activations)": (["-O3", "-march=native"], False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import edgelstm as el
    from edgelstm.export.to_c import to_c
    if shutil.which("cc") is None:
        print("SKIPPED: no C compiler", file=sys.stderr)
        return 0
    models = {"GRU tagger 40-64-4": el.load(DATA / "tagger_gru_int8.elstm"),
              "LSTM tagger 40-64-4": el.quantize(el.load(DATA / "tagger_lstm.elstm"),
                                                 calibration=np.load(DATA / "calibration.npy"), progress=False)}
    tmp = Path(tempfile.mkdtemp(prefix="edgelstm-cstep-"))
    exes = {}
    for mname, m in models.items():
        for vname, (flags, tables) in VARIANTS.items():
            b = to_c(m, tmp / f"{len(exes)}", tables=tables)
            exe = b / "step_bench"
            srcs = [ROOT / "bench" / "step_bench.c", b / "model_data.c", b / "edgelstm.c", b / "elstm_io.c"]
            subprocess.run(["cc", "-std=c99", *flags, "-I", str(b), "-o", str(exe), *map(str, srcs), "-lm"],
                           check=True)
            exes[(mname, vname)] = exe
    best = {k: float("inf") for k in exes}
    for _ in range(args.reps):
        for k, exe in exes.items():
            out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
            best[k] = min(best[k], float(out.split()[0]))
    print("| model | " + " | ".join(VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    for mname in models:
        print(f"| {mname} | " + " | ".join(f"{best[(mname, v)]:.2f}" for v in VARIANTS) + " |")
    res = {f"{m} / {v}": us for (m, v), us in best.items()}
    out = ROOT / "bench" / "results" / "c_step.json"
    write_json(out, {"step_us_best_of": args.reps, "step_us": res})
    print(f"wrote {out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

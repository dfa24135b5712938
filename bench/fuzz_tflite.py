#!/usr/bin/env python
"""Long mutation-fuzzing run of the .tflite importer (engine: tests/fuzzing.py run_file_cases; CI runs 2,100).

    python bench/fuzz_tflite.py --cases 100000 [--jobs 2]

Mutates the converter-made fixtures in tests/fixtures/tflite/ (bytes set or bit-flipped, 5% truncated) in
subprocess batches; a batch that dies is a crash. Prints counts by outcome: refused (ImportModelError or
another edgelstm error), ran (imported and ran to finite outputs), crash, failure (any other exception).
"""
import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
FIXTURES = ["lstm_sigmoid", "lstm_softmax_loud", "lstm_tanh_loud", "lstm_none", "lstm_sigmoid_f32"]


def batch(args):
    name, seed, n = args
    p = subprocess.run([sys.executable, "-X", "faulthandler", str(TESTS / "fuzzing.py"), "--file",
                        str(TESTS / "fixtures" / "tflite" / f"{name}.tflite"), str(seed), str(n)],
                       capture_output=True, text=True, timeout=3600)
    if p.returncode:
        return {"counts": {"crash": 1}, "failures": [{"seed": seed, "fixture": name, "stderr": p.stderr[-1500:]}]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    jobs = [(FIXTURES[i % len(FIXTURES)], 1000 + i, min(args.batch, args.cases - i * args.batch))
            for i in range(-(-args.cases // args.batch))]
    t0 = time.perf_counter()
    counts = {"refused": 0, "ran": 0, "crash": 0}
    failures = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for k, res in enumerate(pool.map(batch, jobs), 1):
            for key, v in res["counts"].items():
                counts[key] = counts.get(key, 0) + v
            failures += res["failures"]
            sys.stderr.write(f"\r{k}/{len(jobs)} batches {json.dumps(counts)}")
    sys.stderr.write("\n")
    print(json.dumps({"cases": args.cases, "counts": counts, "failures": len(failures),
                      "seconds": round(time.perf_counter() - t0, 1)}))
    for f in failures[:10]:
        print(json.dumps(f)[:1500])
    return 1 if failures or counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())

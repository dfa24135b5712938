#!/usr/bin/env python
"""Long mutation-fuzzing run of the .elstm loader (the engine is tests/fuzzing.py; CI runs 10k cases).

    python bench/fuzz_elstm.py --cases 1000000 [--seed 7] [--jobs 2] [--json bench/results/fuzz_elstm.json]

Prints the counts by outcome: error (clean edgelstm error), equal (loaded, ran, equal to tests/naive.py),
crash, hang, and any failure (foreign exception or mismatch) with its case number and seed, so it can be
replayed with ``python tests/fuzzing.py CASE 1 SEED /tmp/progress``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fuzzing import run_batches  # noqa: E402
from edgelstm.benchmark import write_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    done = [0]

    def report(n):
        done[0] += n
        rate = done[0] / (time.perf_counter() - t0)
        sys.stderr.write(f"\r{done[0]:,}/{args.cases:,} cases ({rate:,.0f}/s)")
        sys.stderr.flush()

    res = run_batches(args.cases, seed=args.seed, batch=10_000, jobs=args.jobs, report=report)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    sys.stderr.write("\n")
    print(json.dumps({k: res[k] for k in ("cases", "seed", "counts", "seconds")}))
    for f in res["failures"][:20]:
        print(json.dumps(f)[:2000])
    if args.json:
        write_json(args.json, res)
    bad = res["counts"]["crash"] + res["counts"]["hang"] + len(res["failures"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

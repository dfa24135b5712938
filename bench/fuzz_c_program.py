#!/usr/bin/env python
"""Long mutation-fuzzing run of the C runtime's program data under ASan + UBSan (engine: tests/c_fuzzing.py;
CI runs a short one, tests/test_c_fuzz.py).

    python bench/fuzz_c_program.py --cases 15000 [--seed 16] [--json bench/results/fuzz_c_program.json]

Prints the outcome counts (rejected by elstm_init, accepted and stepped clean) and the sanitizer reports by
signature with the first case of each; replay one with ``python tests/c_fuzzing.py --seed SEED --case N``.
Exit status 1 if there was any report.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import c_fuzzing  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=15_000)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--runtime", default=None, help="a firmware_host directory to fuzz instead of this one's (an "
                                                    "older runtime: git archive COMMIT firmware_host | tar -x)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgelstm-cfuzz-build-") as d:
        exe = c_fuzzing.build_fuzz_runner(d, args.cc, src=args.runtime)
        res = c_fuzzing.run(args.cases, seed=args.seed, exe=exe, first=args.first)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["cc"] = args.cc
    res["runtime"] = args.runtime or "this checkout"
    res["bases"] = [b["name"] for b in c_fuzzing.base_programs()]
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 1 if res["reports"] else 0


if __name__ == "__main__":
    sys.exit(main())

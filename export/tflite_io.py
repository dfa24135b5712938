""".tflite files in and out, with no TensorFlow: a validating reader and a generic builder.

``read_tflite(path_or_bytes)`` walks the whole flatbuffer itself (numpy only; the ``tflite`` schema package
is used for enum names and builtin-options tables, and only on tables already checked) and returns plain
Python/numpy structures.  Every offset, vtable, vector length, string, buffer size (vs shape and dtype),
tensor / opcode / subgraph index and quantization parameter is checked first, so a malformed file raises
``ImportModelError`` and nothing else (no crash, no foreign exception, no hang: every loop is bounded by
the file size).

``TFLiteBuilder`` writes a file with the ``flatbuffers`` + ``tflite`` packages, following the schema's
rules (buffer 0 is the empty sentinel, 16-byte aligned weight buffers, one SignatureDef per graph, the
``TFL3`` identifier)::

    b = TFLiteBuilder()
    x = b.add_tensor("x", (1, 4), "int8", scale=0.05, zero_point=-3)
    w = b.add_tensor("w", (2, 4), "int8", data=w_q, scale=[0.01, 0.02], zero_point=[0, 0],
                     quantized_dimension=0)
    bias = b.add_tensor("b", (2,), "int32", data=b_q, scale=[5e-4, 1e-3], zero_point=[0, 0])
    y = b.add_tensor("y", (1, 2), "int8", scale=0.1, zero_point=0)
    b.add_operator("FULLY_CONNECTED", [x, w, bias], [y], version=4,
                   options={"fused_activation_function": "NONE"})
    b.set_io(inputs=[x], outputs=[y])            # also writes the signature "serving_default"
    data = b.finish()                            # bytes; LiteRT's Interpreter(model_content=data) runs it

Operator names are the schema's ``BuiltinOperator`` names; ``options`` keys are the snake_case field names
of the op's options table (``fused_activation_function`` accepts an ``ActivationFunctionType`` name).
The op ``version`` is the caller's choice: it must be one LiteRT registers for the tensor types used
(e.g. FULLY_CONNECTED int8 per-channel: 4+, UNIDIRECTIONAL_SEQUENCE_LSTM int8: 1 with 5 intermediates).
"""
from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from edgelstm.errors import ImportModelError

# TensorType code -> (name, numpy dtype or None when the element has no fixed numpy form)
TENSOR_TYPES = {
    0: ("FLOAT32", np.float32), 1: ("FLOAT16", np.float16), 2: ("INT32", np.int32), 3: ("UINT8", np.uint8),
    4: ("INT64", np.int64), 5: ("STRING", None), 6: ("BOOL", np.bool_), 7: ("INT16", np.int16),
    8: ("COMPLEX64", np.complex64), 9: ("INT8", np.int8), 10: ("FLOAT64", np.float64),
    11: ("COMPLEX128", np.complex128), 12: ("UINT64", np.uint64), 13: ("RESOURCE", None),
    14: ("VARIANT", None), 15: ("UINT32", np.uint32), 16: ("UINT16", np.uint16), 17: ("INT4", None),
}
_TYPE_BY_NAME = {name.lower(): code for code, (name, _) in TENSOR_TYPES.items()}
_ZP_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "INT4": (-8, 7)}


@dataclass
class Quantization:
    """Affine quantization of one tensor: real = scale * (q - zero_point), per channel along
    ``quantized_dimension`` when ``scales`` has more than one entry."""

    scales: np.ndarray         # (C,) float32, C = 1 or shape[quantized_dimension]
    zero_points: np.ndarray    # (C,) int64
    quantized_dimension: int = 0


@dataclass
class Tensor:
    name: str
    shape: tuple               # concrete shape (converter files use 1 for a dynamic batch)
    type: str                  # TensorType name, e.g. "INT8", "FLOAT32"
    buffer: int                # index into TFLiteModel.buffers (0 = no data)
    data: np.ndarray | None    # constant data reshaped to `shape` in `dtype`, or None
    quantization: Quantization | None
    is_variable: bool = False
    shape_signature: tuple | None = None  # -1 marks a dynamic dimension

    @property
    def dtype(self):
        return TENSOR_TYPES[_TYPE_BY_NAME[self.type.lower()]][1]


@dataclass
class Operator:
    op: str                    # BuiltinOperator name, e.g. "FULLY_CONNECTED", or "CUSTOM"
    version: int
    inputs: tuple              # tensor indices, -1 = optional input left out
    outputs: tuple
    options: dict              # builtin options, snake_case field names
    intermediates: tuple = ()
    custom_code: str | None = None


@dataclass
class Subgraph:
    name: str
    tensors: list              # [Tensor]
    operators: list            # [Operator] in execution order
    inputs: tuple
    outputs: tuple


@dataclass
class Signature:
    key: str
    subgraph: int
    inputs: dict               # name -> tensor index in that subgraph
    outputs: dict


@dataclass
class TFLiteModel:
    version: int
    description: str
    buffers: list              # [np.ndarray uint8]; buffers[0] is the empty sentinel
    subgraphs: list            # [Subgraph]
    signatures: list = field(default_factory=list)   # [Signature]


def _enum_names(cls) -> dict:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _schema():
    try:
        import tflite
    except ModuleNotFoundError:
        raise ImportModelError("reading/writing .tflite files needs the optional package 'tflite' "
                               "(pip install 'edgelstm[tflite]')") from None
    return tflite


# ----------------------------------------------------------------------------------------------- reader

class _Buf:
    """Bounds-checked flatbuffer access. Tables are (pos, vtable_pos, vtable_size, object_size)."""

    def __init__(self, data: bytes):
        self.b = data
        self.n = len(data)

    def fail(self, what: str):
        raise ImportModelError(f"malformed .tflite file: {what}")

    def u8(self, p):
        if p < 0 or p + 1 > self.n:
            self.fail(f"read past the end at {p}")
        return self.b[p]

    def unpack(self, fmt, p):
        size = struct.calcsize(fmt)
        if p < 0 or p + size > self.n:
            self.fail(f"read past the end at {p}")
        return struct.unpack_from(fmt, self.b, p)[0]

    def table(self, pos, what):
        if pos < 0 or pos + 4 > self.n:
            self.fail(f"{what}: table offset {pos} out of range")
        vt = pos - self.unpack("<i", pos)
        if vt < 0 or vt + 4 > self.n:
            self.fail(f"{what}: vtable offset out of range")
        vt_size, obj_size = self.unpack("<H", vt), self.unpack("<H", vt + 2)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n or obj_size < 4 or pos + obj_size > self.n:
            self.fail(f"{what}: bad vtable")
        for slot in range(4, vt_size, 2):
            off = self.unpack("<H", vt + slot)
            if off and off >= obj_size:
                self.fail(f"{what}: field offset outside its table")
        return (pos, vt, vt_size, obj_size, what)

    def _field(self, t, idx):
        slot = 4 + 2 * idx
        return self.unpack("<H", t[1] + slot) if slot < t[2] else 0

    def scalar(self, t, idx, fmt, default=0):
        off = self._field(t, idx)
        if not off:
            return default
        if off + struct.calcsize(fmt) > t[3]:
            self.fail(f"{t[4]}: field {idx} overruns its table")
        return self.unpack(fmt, t[0] + off)

    def _indirect(self, t, idx):
        off = self._field(t, idx)
        if not off:
            return None
        if off + 4 > t[3]:
            self.fail(f"{t[4]}: field {idx} overruns its table")
        p = t[0] + off
        return p + self.unpack("<I", p)

    def vector(self, t, idx, elem_size):
        """(start, length) of a vector field, or (0, 0) when absent."""
        p = self._indirect(t, idx)
        if p is None:
            return 0, 0
        length = self.unpack("<I", p)
        if p + 4 + length * elem_size > self.n:
            self.fail(f"{t[4]}: vector field {idx} runs past the end of the file")
        return p + 4, length

    def array(self, t, idx, dtype):
        dt = np.dtype(dtype)
        start, length = self.vector(t, idx, dt.itemsize)
        if not length:
            return np.zeros(0, dt)
        return np.frombuffer(self.b, dtype=dt.newbyteorder("<"), count=length, offset=start).astype(dt)

    def string(self, t, idx, default=""):
        start, length = self.vector(t, idx, 1)
        if self._indirect(t, idx) is None:
            return default
        try:
            return bytes(self.b[start:start + length]).decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{t[4]}: string field {idx} is not UTF-8")

    def sub_table(self, t, idx, what):
        p = self._indirect(t, idx)
        return None if p is None else self.table(p, what)

    def tables(self, t, idx, what):
        start, length = self.vector(t, idx, 4)
        out = []
        for k in range(length):
            p = start + 4 * k
            out.append(self.table(p + self.unpack("<I", p), f"{what}[{k}]"))
        return out


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _read_options(buf: _Buf, tflite, op_table, options_names: dict, where: str) -> dict:
    kind = buf.scalar(op_table, 3, "<B")
    if not kind:
        return {}
    name = options_names.get(kind)
    cls = getattr(tflite, name, None) if name else None
    if cls is None:
        buf.fail(f"{where}: unknown builtin options type {kind}")
    t = buf.sub_table(op_table, 4, f"{where} {name}")
    if t is None:
        return {}
    obj = cls()
    obj.Init(buf.b, t[0])
    activations = _enum_names(tflite.ActivationFunctionType)
    out = {}
    for attr in dir(cls):
        if not attr[:1].isupper() or attr.startswith("GetRootAs") or attr in ("Init",) or \
                attr.endswith(("Length", "IsNone", "AsNumpy", "BufferHasIdentifier")):
            continue
        fn = getattr(obj, attr)
        try:
            if hasattr(obj, attr + "AsNumpy"):   # vector field: its length was not checked yet
                idx = None
                val = getattr(obj, attr + "AsNumpy")()
                val = [] if isinstance(val, int) else np.array(val).tolist()
                if len(val) > buf.n:
                    buf.fail(f"{where}: options vector {attr} too long")
            else:
                val = fn()
        except ImportModelError:
            raise
        except Exception:
            buf.fail(f"{where}: options field {attr} unreadable")
        if attr == "FusedActivationFunction":
            val = activations.get(val, f"UNKNOWN_{val}")
        if isinstance(val, bytes):
            val = val.decode("utf-8", "replace")
        out[_snake(attr)] = val
    return out


def read_tflite(path_or_bytes) -> TFLiteModel:
    """Read and validate a .tflite file (path, bytes or bytearray) into plain Python/numpy structures.
    Raises ``ImportModelError`` for anything malformed or unreadable."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, where = bytes(path_or_bytes), "<bytes>"
    else:
        where = os.fspath(path_or_bytes)
        try:
            with open(where, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ImportModelError(f"{where}: cannot read ({e.strerror})") from None
    try:
        return _read(data)
    except ImportModelError as e:
        raise ImportModelError(f"{where}: {e}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as e:  # belt and braces
        raise ImportModelError(f"{where}: malformed .tflite file ({type(e).__name__}: {e})") from None


def _read(data: bytes) -> TFLiteModel:
    tflite = _schema()
    buf = _Buf(data)
    if buf.n < 8 or data[4:8] != b"TFL3":
        buf.fail("missing the TFL3 identifier (not a TensorFlow Lite flatbuffer)")
    root = buf.table(buf.unpack("<I", 0), "Model")
    version = buf.scalar(root, 0, "<I")
    if version != 3:
        buf.fail(f"schema version {version}, expected 3")
    op_names = _enum_names(tflite.BuiltinOperator)
    options_names = _enum_names(tflite.BuiltinOptions)

    opcodes = []
    for k, t in enumerate(buf.tables(root, 1, "operator_codes")):
        code = max(buf.scalar(t, 0, "<b"), buf.scalar(t, 3, "<i"))
        name = op_names.get(code)
        if name is None:
            buf.fail(f"operator_codes[{k}]: unknown builtin operator code {code}")
        opcodes.append((name, buf.scalar(t, 2, "<i", 1), buf.string(t, 1, None) if name == "CUSTOM" else None))

    buffers = []
    for k, t in enumerate(buf.tables(root, 4, "buffers")):
        arr = buf.array(t, 0, np.uint8)
        offset, size = buf.scalar(t, 1, "<Q"), buf.scalar(t, 2, "<Q")
        if offset > 1:   # large-model layout: data after the flatbuffer
            if offset + size > buf.n:
                buf.fail(f"buffers[{k}]: external data range past the end of the file")
            arr = np.frombuffer(data, np.uint8, count=size, offset=offset).copy()
        buffers.append(arr)
    if not buffers:
        buf.fail("no buffers (buffer 0 must exist as the empty sentinel)")
    if buffers[0].size:
        buf.fail("buffer 0 must be empty")

    subgraphs = []
    for s, st in enumerate(buf.tables(root, 2, "subgraphs")):
        tensors = [_read_tensor(buf, t, f"subgraph {s} tensor {k}", buffers)
                   for k, t in enumerate(buf.tables(st, 0, f"subgraph {s} tensors"))]
        n_t = len(tensors)

        def indices(arr, what, optional=False):
            lo = -1 if optional else 0
            bad = [int(i) for i in arr if not lo <= i < n_t]
            if bad:
                buf.fail(f"{what}: tensor index {bad[0]} out of range (subgraph has {n_t} tensors)")
            return tuple(int(i) for i in arr)

        ops = []
        for k, ot in enumerate(buf.tables(st, 3, f"subgraph {s} operators")):
            w = f"subgraph {s} operator {k}"
            oi = buf.scalar(ot, 0, "<I")
            if oi >= len(opcodes):
                buf.fail(f"{w}: opcode index {oi} out of range")
            name, ver, custom = opcodes[oi]
            ops.append(Operator(
                op=name, version=ver, custom_code=custom,
                inputs=indices(buf.array(ot, 1, np.int32), f"{w} inputs", optional=True),
                outputs=indices(buf.array(ot, 2, np.int32), f"{w} outputs"),
                intermediates=indices(buf.array(ot, 8, np.int32), f"{w} intermediates"),
                options=_read_options(buf, tflite, ot, options_names, f"{w} ({name})")))
        subgraphs.append(Subgraph(
            name=buf.string(st, 4), tensors=tensors, operators=ops,
            inputs=indices(buf.array(st, 1, np.int32), f"subgraph {s} inputs"),
            outputs=indices(buf.array(st, 2, np.int32), f"subgraph {s} outputs")))
    if not subgraphs:
        buf.fail("no subgraphs")

    signatures = []
    for k, t in enumerate(buf.tables(root, 7, "signature_defs")):
        sg = buf.scalar(t, 4, "<I")
        if sg >= len(subgraphs):
            buf.fail(f"signature_defs[{k}]: subgraph index {sg} out of range")
        maps = []
        for side in (0, 1):
            m = {}
            for j, mt in enumerate(buf.tables(t, side, f"signature_defs[{k}] tensor maps")):
                ti = buf.scalar(mt, 1, "<I")
                if ti >= len(subgraphs[sg].tensors):
                    buf.fail(f"signature_defs[{k}]: tensor index {ti} out of range")
                m[buf.string(mt, 0)] = ti
            maps.append(m)
        signatures.append(Signature(key=buf.string(t, 2), subgraph=sg, inputs=maps[0], outputs=maps[1]))
    return TFLiteModel(version=version, description=buf.string(root, 3), buffers=buffers,
                       subgraphs=subgraphs, signatures=signatures)


def _read_tensor(buf: _Buf, t, where: str, buffers: list) -> Tensor:
    shape = tuple(int(d) for d in buf.array(t, 0, np.int32))
    if any(d < 0 for d in shape):
        buf.fail(f"{where}: negative dimension in shape {shape}")
    code = buf.scalar(t, 1, "<b")
    if code not in TENSOR_TYPES:
        buf.fail(f"{where}: unknown tensor type {code}")
    type_name, dtype = TENSOR_TYPES[code]
    bi = buf.scalar(t, 2, "<I")
    if bi >= len(buffers):
        buf.fail(f"{where}: buffer index {bi} out of range")
    name = buf.string(t, 3)
    where = f"{where} {name!r}"
    count = math.prod(shape)
    raw = buffers[bi]
    tensor_data = None
    if raw.size:
        if dtype is None and type_name != "INT4":
            buf.fail(f"{where}: constant data of type {type_name} is not supported")
        expected = (count + 1) // 2 if type_name == "INT4" else count * np.dtype(dtype).itemsize
        if raw.size != expected:
            buf.fail(f"{where}: buffer {bi} holds {raw.size} bytes, shape {shape} of {type_name} needs {expected}")
        if type_name != "INT4":
            tensor_data = raw.view(np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
            if tensor_data.dtype.kind == "f" and not np.all(np.isfinite(tensor_data)):
                buf.fail(f"{where}: constant data contains NaN or inf")
    quant = None
    qt = buf.sub_table(t, 4, f"{where} quantization")
    if qt is not None:
        scales = buf.array(qt, 2, np.float32)
        zps = buf.array(qt, 3, np.int64)
        qdim = buf.scalar(qt, 6, "<i")
        if scales.size or zps.size:
            if scales.size != zps.size:
                buf.fail(f"{where}: {scales.size} scales but {zps.size} zero points")
            if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
                buf.fail(f"{where}: quantization scales must be finite and > 0")
            if scales.size > 1:
                if not 0 <= qdim < len(shape) or shape[qdim] != scales.size:
                    buf.fail(f"{where}: {scales.size} per-channel scales do not match dimension {qdim} "
                             f"of shape {shape}")
            elif qdim < 0 or (shape and qdim >= len(shape)):
                buf.fail(f"{where}: quantized_dimension {qdim} out of range")
            lo, hi = _ZP_RANGE.get(type_name, (-(2 ** 31), 2 ** 31 - 1))
            if np.any(zps < lo) or np.any(zps > hi):
                buf.fail(f"{where}: zero point out of the {type_name} range")
            quant = Quantization(scales=scales, zero_points=zps, quantized_dimension=int(qdim))
    sig = buf.array(t, 7, np.int32)
    return Tensor(name=name, shape=shape, type=type_name, buffer=bi, data=tensor_data, quantization=quant,
                  is_variable=bool(buf.scalar(t, 5, "<B")),
                  shape_signature=tuple(int(d) for d in sig) if sig.size else None)


# ----------------------------------------------------------------------------------------------- writer

# op -> its BuiltinOptions table (ops not listed take none or need options_type=...)
OPTIONS_OF = {
    "FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions", "SUB": "SubOptions",
    "MUL": "MulOptions", "SPLIT": "SplitOptions", "CONCATENATION": "ConcatenationOptions",
    "RESHAPE": "ReshapeOptions", "SOFTMAX": "SoftmaxOptions", "UNIDIRECTIONAL_SEQUENCE_LSTM":
    "UnidirectionalSequenceLSTMOptions", "BIDIRECTIONAL_SEQUENCE_LSTM": "BidirectionalSequenceLSTMOptions",
    "LSTM": "LSTMOptions", "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions", "RNN": "RNNOptions",
    "QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions", "STRIDED_SLICE": "StridedSliceOptions",
    "SQUEEZE": "SqueezeOptions", "GATHER": "GatherOptions", "PACK": "PackOptions", "UNPACK": "UnpackOptions",
    "SLICE": "SliceOptions", "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions",
    "SPLIT_V": "SplitVOptions", "BATCH_MATMUL": "BatchMatMulOptions",
}


@dataclass
class _TensorSpec:
    name: str
    shape: tuple
    type: int
    buffer: int
    scales: list | None
    zero_points: list | None
    quantized_dimension: int
    is_variable: bool
    shape_signature: tuple | None


class TFLiteBuilder:
    """Assemble one-subgraph .tflite files; see the module docstring for an example."""

    def __init__(self, *, description: str = "edgelstm"):
        self.description = description
        self.buffers = [b""]                # buffer 0: the empty sentinel the schema requires
        self.tensors: list[_TensorSpec] = []
        self.operators: list[tuple] = []
        self.opcodes: list[tuple] = []      # (op name, version)
        self.inputs: tuple = ()
        self.outputs: tuple = ()
        self.signatures: list[tuple] = []   # (key, {name: tensor}, {name: tensor})

    def add_buffer(self, data=None) -> int:
        """Add a constant buffer (numpy array or bytes, stored little-endian) and return its index."""
        if data is None:
            return 0
        raw = np.ascontiguousarray(data).astype(np.asarray(data).dtype.newbyteorder("<")).tobytes() \
            if isinstance(data, np.ndarray) else bytes(data)
        self.buffers.append(raw)
        return len(self.buffers) - 1

    def add_tensor(self, name: str, shape, dtype, *, data=None, scale=None, zero_point=None,
                   quantized_dimension: int = 0, is_variable: bool = False, shape_signature=None) -> int:
        """Add a tensor and return its index. ``dtype``: numpy dtype or TensorType name ("int8", ...).
        ``data`` (constant) is cast to ``dtype`` and must match ``shape``. ``scale``/``zero_point``: scalars
        (per tensor) or sequences (per channel along ``quantized_dimension``)."""
        key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype.lower()
        if key not in _TYPE_BY_NAME:
            raise ImportModelError(f"tensor {name!r}: unsupported dtype {dtype!r}")
        code = _TYPE_BY_NAME[key]
        shape = tuple(int(d) for d in shape)
        bi = 0
        if data is not None:
            np_dtype = TENSOR_TYPES[code][1]
            arr = np.asarray(data)
            if arr.shape != shape:
                raise ImportModelError(f"tensor {name!r}: data shape {arr.shape} != {shape}")
            bi = self.add_buffer(arr.astype(np_dtype))
        scales = zps = None
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(scale)]
            zps = [int(z) for z in np.atleast_1d(0 if zero_point is None else zero_point)]
            if len(zps) == 1 and len(scales) > 1:
                zps = zps * len(scales)
            if len(zps) != len(scales):
                raise ImportModelError(f"tensor {name!r}: {len(scales)} scales but {len(zps)} zero points")
        self.tensors.append(_TensorSpec(name, shape, code, bi, scales, zps, int(quantized_dimension),
                                        bool(is_variable), None if shape_signature is None
                                        else tuple(int(d) for d in shape_signature)))
        return len(self.tensors) - 1

    def add_operator(self, op: str, inputs, outputs, *, options: dict | None = None, version: int = 1,
                     intermediates=(), options_type: str | None = None) -> int:
        """Add a builtin operator (BuiltinOperator name) reading ``inputs`` (-1 = optional input left out)
        and writing ``outputs``; returns its index. Operators run in the order they are added."""
        tflite = _schema()
        if not hasattr(tflite.BuiltinOperator, op):
            raise ImportModelError(f"unknown builtin operator {op!r}")
        key = (op, int(version))
        if key not in self.opcodes:
            self.opcodes.append(key)
        n = len(self.tensors)
        for i in list(inputs) + list(outputs) + list(intermediates):
            if not -1 <= int(i) < n:
                raise ImportModelError(f"{op}: tensor index {i} out of range")
        opt_type = options_type or (OPTIONS_OF.get(op) if options is not None else None)
        self.operators.append((self.opcodes.index(key), tuple(map(int, inputs)), tuple(map(int, outputs)),
                               tuple(map(int, intermediates)), opt_type, dict(options or {})))
        return len(self.operators) - 1

    def set_io(self, *, inputs, outputs, signature: str | None = "serving_default") -> None:
        """Declare the graph's inputs and outputs (tensor indices) and, unless ``signature`` is None,
        a SignatureDef naming each by its tensor name."""
        self.inputs, self.outputs = tuple(map(int, inputs)), tuple(map(int, outputs))
        if signature:
            self.signatures = [(signature, {self.tensors[i].name: i for i in self.inputs},
                                {self.tensors[i].name: i for i in self.outputs})]

    # -- serialization
    def finish(self) -> bytes:
        import flatbuffers
        tflite = _schema()
        b = flatbuffers.Builder(1024 + sum(len(x) for x in self.buffers))

        def ivec(start_fn, values, kind="int32"):
            start_fn(b, len(values))
            for v in reversed(values):
                {"int32": b.PrependInt32, "float32": b.PrependFloat32, "int64": b.PrependInt64,
                 "uoffset": b.PrependUOffsetTRelative}[kind](v)
            return b.EndVector()

        buffer_offs = []
        for raw in self.buffers:
            data_off = None
            if raw:
                b.StartVector(1, len(raw), 16)
                b.head = b.head - len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
                data_off = b.EndVector()
            tflite.BufferStart(b)
            if data_off is not None:
                tflite.BufferAddData(b, data_off)
            buffer_offs.append(tflite.BufferEnd(b))

        tensor_offs = []
        for t in self.tensors:
            name = b.CreateString(t.name)
            shape = ivec(tflite.TensorStartShapeVector, list(t.shape))
            sig = ivec(tflite.TensorStartShapeSignatureVector, list(t.shape_signature)) \
                if t.shape_signature is not None else None
            q = None
            if t.scales is not None:
                sc = ivec(tflite.QuantizationParametersStartScaleVector, t.scales, "float32")
                zp = ivec(tflite.QuantizationParametersStartZeroPointVector, t.zero_points, "int64")
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, sc)
                tflite.QuantizationParametersAddZeroPoint(b, zp)
                tflite.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
                q = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            if sig is not None:
                tflite.TensorAddShapeSignature(b, sig)
            tflite.TensorAddType(b, t.type)
            tflite.TensorAddBuffer(b, t.buffer)
            tflite.TensorAddName(b, name)
            if q is not None:
                tflite.TensorAddQuantization(b, q)
            if t.is_variable:
                tflite.TensorAddIsVariable(b, True)
            tensor_offs.append(tflite.TensorEnd(b))

        op_offs = []
        for opcode, ins, outs, inter, opt_type, options in self.operators:
            opt_off = self._options(b, tflite, opt_type, options) if opt_type else None
            ins_v = ivec(tflite.OperatorStartInputsVector, list(ins))
            outs_v = ivec(tflite.OperatorStartOutputsVector, list(outs))
            inter_v = ivec(tflite.OperatorStartIntermediatesVector, list(inter)) if inter else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, opcode)
            tflite.OperatorAddInputs(b, ins_v)
            tflite.OperatorAddOutputs(b, outs_v)
            if opt_off is not None:
                tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, opt_type))
                tflite.OperatorAddBuiltinOptions(b, opt_off)
            if inter_v is not None:
                tflite.OperatorAddIntermediates(b, inter_v)
            op_offs.append(tflite.OperatorEnd(b))

        tensors_v = ivec(tflite.SubGraphStartTensorsVector, tensor_offs, "uoffset")
        ops_v = ivec(tflite.SubGraphStartOperatorsVector, op_offs, "uoffset")
        in_v = ivec(tflite.SubGraphStartInputsVector, list(self.inputs))
        out_v = ivec(tflite.SubGraphStartOutputsVector, list(self.outputs))
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_v)
        tflite.SubGraphAddInputs(b, in_v)
        tflite.SubGraphAddOutputs(b, out_v)
        tflite.SubGraphAddOperators(b, ops_v)
        tflite.SubGraphAddName(b, sg_name)
        subgraphs_v = ivec(tflite.ModelStartSubgraphsVector, [tflite.SubGraphEnd(b)], "uoffset")

        code_offs = []
        for op, version in self.opcodes:
            code = getattr(tflite.BuiltinOperator, op)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            code_offs.append(tflite.OperatorCodeEnd(b))
        codes_v = ivec(tflite.ModelStartOperatorCodesVector, code_offs, "uoffset")
        buffers_v = ivec(tflite.ModelStartBuffersVector, buffer_offs, "uoffset")

        sig_offs = []
        for key, ins, outs in self.signatures:
            maps = []
            for side in (ins, outs):
                entries = []
                for nm, ti in side.items():
                    s = b.CreateString(nm)
                    tflite.TensorMapStart(b)
                    tflite.TensorMapAddName(b, s)
                    tflite.TensorMapAddTensorIndex(b, ti)
                    entries.append(tflite.TensorMapEnd(b))
                maps.append(ivec(tflite.SignatureDefStartInputsVector, entries, "uoffset"))
            k = b.CreateString(key)
            tflite.SignatureDefStart(b)
            tflite.SignatureDefAddInputs(b, maps[0])
            tflite.SignatureDefAddOutputs(b, maps[1])
            tflite.SignatureDefAddSignatureKey(b, k)
            tflite.SignatureDefAddSubgraphIndex(b, 0)
            sig_offs.append(tflite.SignatureDefEnd(b))
        sigs_v = ivec(tflite.ModelStartSignatureDefsVector, sig_offs, "uoffset")
        desc = b.CreateString(self.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_v)
        tflite.ModelAddSubgraphs(b, subgraphs_v)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_v)
        tflite.ModelAddSignatureDefs(b, sigs_v)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _options(b, tflite, opt_type: str, options: dict):
        mod = getattr(tflite, opt_type, None)
        if mod is None or not hasattr(tflite, opt_type + "Start"):
            raise ImportModelError(f"unknown builtin options table {opt_type!r}")
        activations = vars(tflite.ActivationFunctionType)
        vectors = {}
        for k, v in options.items():   # vectors are built before the table starts
            if isinstance(v, (list, tuple, np.ndarray)):
                camel = "".join(p.capitalize() for p in k.split("_"))
                start = getattr(tflite, f"{opt_type}Start{camel}Vector", None)
                if start is None:
                    raise ImportModelError(f"{opt_type} has no vector field {k!r}")
                start(b, len(v))
                for x in reversed(list(v)):
                    b.PrependInt32(int(x))
                vectors[k] = b.EndVector()
        getattr(tflite, opt_type + "Start")(b)
        for k, v in options.items():
            camel = "".join(p.capitalize() for p in k.split("_"))
            add = getattr(tflite, f"{opt_type}Add{camel}", None)
            if add is None:
                raise ImportModelError(f"{opt_type} has no field {k!r}")
            if k in vectors:
                v = vectors[k]
            elif k == "fused_activation_function" and isinstance(v, str):
                if v not in activations:
                    raise ImportModelError(f"unknown fused activation {v!r}")
                v = activations[v]
            add(b, v)
        return getattr(tflite, opt_type + "End")(b)


def write_tflite(builder: TFLiteBuilder, path) -> None:
    """Write ``builder.finish()`` to ``path``."""
    with open(path, "wb") as f:
        f.write(builder.finish())

"""The op-graph layer kind ("ops"): a small graph of TFLite builtin ops with recurrent state tensors, run as one
layer of the program (edgelstm/kernels/program.py dispatches KIND_OPS to kernels/ops_int8.py / ops_f32.py).

It is how edgelstm executes what the TF converter makes of a Keras ``LSTMCell`` / ``GRUCell`` /
``SimpleRNNCell`` with explicit state: plain int8 ops (FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH, ...),
each intermediate with its own calibrated scale, bit for bit as LiteRT computes them.

It is also how edgelstm runs its own int8 GRU and RNN layers: prepare() lowers them to int16 graphs of builtin
ops (edgelstm/program/cellgraph.py), the form ``to_tflite`` writes for them, so one mechanism runs both.

The IR is plain JSON-able structure plus constant blobs:
  tensors  [[size, scale, zero_point, const, bits], ...]   every operand tensor (batch 1, flattened); ``const``
           is None for computed tensors, else the offset of its ``size`` values in the constant blob ``c`` (a
           one-element constant broadcast over its operand, e.g. the ``1`` of 1 - z, is stored expanded);
           ``bits`` is 8 (int8) or 16 (int16, zero point 0: TFLite's 16x8 ops) in an int8 graph, 32 in a float
           graph (a 4-entry tensor means 8 / 32)
  ops      [[name, a, b, out, act, p0, p1, p2], ...] in execution order (a, b, out: tensor indices, b = -1 for
           unary ops; act: TFLite fused activation 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6)
             FULLY_CONNECTED  p0 weight offset in ``w`` (N x K row-major), p1 bias offset in ``b`` (-1: none),
                              p2 offset of N per-channel weight scales in ``w_scale`` (int8 graphs); int8 in/out
             CONV_2D          the same fields: a 1x1 CONV_2D over a [1, 1, 1, K] int16 tensor, int16 out (LiteRT
                              16x8 conv: int64 accumulator, integer requantization; its int16 FULLY_CONNECTED
                              rounds in double, so edgelstm uses the conv)
             ADD, SUB, MUL    p0 = p1 = p2 = 0 (equal sizes; a broadcast constant is stored expanded)
             unary ops        element range: input[p0:p0+n] -> out[p1:p1+n], n = p2 or the output size
               QUANTIZE (int8 -> int8, int16 -> int8 / int16), LOGISTIC, TANH (int8, or int16 with output
               scale 2^-15), RELU (int8), COPY (reshape / split / concat; int8 -> int16 is TFLite's CAST),
               REQUANTIZE_FLOAT (int8 DEQUANTIZE -> float32 -> QUANTIZE int8: a 256-entry table)
  x, y     graph input and output tensors (the layer's input and output)
  state    [[state input, state output], ...]: read at step start, written back at step end (int8: through
           LiteRT's DEQUANTIZE -> QUANTIZE arithmetic when the two quantizations differ)
Constants: float graphs hold ``w``, ``b``, ``c`` float32 in ``directions[0]``; int8 graphs hold ``w`` int8,
``w_scale`` float32, ``b`` int32, ``c`` int8 in the model's QuantParams (layers[k][0]).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..limits import MAX_ARENA, MAX_OPS, MAX_SIZE, MAX_TENSORS

UNARY = ("QUANTIZE", "LOGISTIC", "TANH", "RELU", "COPY", "REQUANTIZE_FLOAT")
BINARY = ("ADD", "SUB", "MUL")
OPS = ("FULLY_CONNECTED", "CONV_2D") + BINARY + UNARY
INT8_ONLY = ("QUANTIZE", "REQUANTIZE_FLOAT", "CONV_2D")   # ops a float graph does not have
INT16_SCALE_2_15 = 2.0 ** -15   # LiteRT requires it for int16 LOGISTIC / TANH outputs
ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(kw_only=True)
class OpGraph:
    """One op-graph layer (see the module docstring)."""

    input_size: int
    output_size: int
    quantized: bool
    tensors: list
    ops: list
    x: int
    y: int
    state: list = field(default_factory=list)
    n_w: int = 0
    n_b: int = 0
    n_ws: int = 0
    n_c: int = 0
    directions: list = field(default_factory=list)
    kind: str = field(default="ops", init=False)
    bidirectional: bool = field(default=False, init=False)
    reverse: bool = field(default=False, init=False)

    def param_shapes(self) -> dict:
        return {} if self.quantized else {"w": (self.n_w,), "b": (self.n_b,), "c": (self.n_c,)}

    def quant_shapes(self) -> dict:
        if not self.quantized:
            raise ModelError("a float op graph has no quantized parameters (it runs as float32)")
        return {"w": ((self.n_w,), np.int8), "w_scale": ((self.n_ws,), np.float32), "b": ((self.n_b,), np.int32),
                "c": ((self.n_c,), np.int8)}

    def state_shapes(self) -> dict:
        return {f"s{i}": (self.tensors[si][0],) for i, (si, _) in enumerate(self.state)}

    def state_quant(self, i: int) -> tuple[float, int]:
        """(scale, zero point) of state i (its state input tensor)."""
        t = self.tensors[self.state[i][0]]
        return t[1], t[2]

    def state_bits(self, i: int) -> int:
        """8 or 16 (int8 graphs; 32 in a float graph): the integer width of state i."""
        t = self.tensors[self.state[i][0]]
        return t[4] if len(t) > 4 else (8 if self.quantized else 32)

    def describe(self) -> dict:
        return {"kind": "ops", "input_size": self.input_size, "output_size": self.output_size,
                "quantized": bool(self.quantized), "tensors": [list(t) for t in self.tensors],
                "ops": [list(o) for o in self.ops], "x": self.x, "y": self.y,
                "state": [list(p) for p in self.state], "n_w": self.n_w, "n_b": self.n_b, "n_ws": self.n_ws,
                "n_c": self.n_c}

    @classmethod
    def from_description(cls, d: dict, directions: list) -> "OpGraph":
        keys = {"kind", "input_size", "output_size", "quantized", "tensors", "ops", "x", "y", "state", "n_w",
                "n_b", "n_ws", "n_c"}
        if set(d) != keys:
            raise ModelError(f"op graph description: keys {sorted(set(d) ^ keys)} missing or unexpected")
        return cls(directions=directions, **{k: v for k, v in d.items() if k != "kind"})


def validate_opgraph(g: OpGraph, where: str) -> None:
    """Check the whole structure (sizes, indices, element ranges, blob ranges) so that every offset the
    kernels use lies inside its array; normalizes values in place (python ints, float32 scales)."""
    def fail(msg):
        raise ModelError(f"{where}: {msg}")

    for name in ("input_size", "output_size"):
        v = getattr(g, name)
        if not _int(v) or not 0 < v <= MAX_SIZE:
            fail(f"{name} must be a positive int, got {v!r}")
    if not isinstance(g.quantized, (bool, np.bool_)):
        fail("quantized must be true or false")
    q = bool(g.quantized)
    for name in ("n_w", "n_b", "n_ws", "n_c"):
        v = getattr(g, name)
        if not _int(v) or not 0 <= v < 1 << 30:
            fail(f"{name} must be an int >= 0, got {v!r}")
    if not q and g.n_ws:
        fail("a float graph has no weight scales (n_ws must be 0)")
    if not isinstance(g.tensors, (list, tuple)) or not 0 < len(g.tensors) <= MAX_TENSORS:
        fail(f"tensors must be a list of 1..{MAX_TENSORS} entries")
    tensors, arena = [], 0
    for i, t in enumerate(g.tensors):
        if not isinstance(t, (list, tuple)) or len(t) not in (4, 5):
            fail(f"tensor {i} must be [size, scale, zero_point, const, bits]")
        size, scale, zp, const = t[:4]
        bits = t[4] if len(t) == 5 else (8 if q else 32)
        if not _int(bits) or bits not in ((8, 16) if q else (32,)):
            fail(f"tensor {i}: bits must be {'8 or 16' if q else '32'}, got {bits!r}")
        if not _int(size) or not 0 < size <= MAX_SIZE:
            fail(f"tensor {i}: size must be an int in [1, {MAX_SIZE}], got {size!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) or \
                not np.isfinite(scale):
            fail(f"tensor {i}: scale must be a finite number")
        scale = float(np.float32(scale))
        if q and not 1e-12 <= scale <= 1e6:
            fail(f"tensor {i}: scale {scale} outside [1e-12, 1e6]")
        if not _int(zp) or not (-128 <= zp <= 127 if bits == 8 else zp == 0):
            fail(f"tensor {i}: zero point {zp!r} must be an int8 value (0 in an int16 tensor or a float graph)")
        if const is not None and (not _int(const) or not 0 <= const <= g.n_c - size or bits == 16):
            fail(f"tensor {i}: constant values [{const}, {const}+{size}) outside c ({g.n_c}), or an int16 "
                 f"constant")
        tensors.append([int(size), scale, int(zp), None if const is None else int(const), int(bits)])
        arena += int(size)
    if arena > MAX_ARENA:
        fail(f"tensors need {arena} elements, over the limit of {MAX_ARENA}")
    g.tensors = tensors
    n = len(tensors)

    def idx(v, what, *, optional=False):
        if not _int(v) or not (-1 if optional else 0) <= v < n:
            fail(f"{what}: tensor index {v!r} out of range [0, {n})")
        return int(v)

    g.x, g.y = idx(g.x, "x"), idx(g.y, "y")
    if tensors[g.x][0] != g.input_size or tensors[g.y][0] != g.output_size:
        fail(f"x / y sizes {tensors[g.x][0]} / {tensors[g.y][0]} differ from input_size {g.input_size} / "
             f"output_size {g.output_size}")
    if not isinstance(g.state, (list, tuple)) or len(g.state) > 64:
        fail("state must be a list of at most 64 [input, output] pairs")
    state = []
    for i, p in enumerate(g.state):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            fail(f"state {i} must be [state input, state output]")
        si, so = idx(p[0], f"state {i} input"), idx(p[1], f"state {i} output")
        if tensors[si][0] != tensors[so][0] or tensors[si][4] != tensors[so][4]:
            fail(f"state {i}: input and output sizes or widths differ")
        if tensors[si][4] == 16 and tensors[si][1] != tensors[so][1]:
            fail(f"state {i}: an int16 state's input and output scales must be equal")
        state.append([si, so])
    g.state = state
    inputs = [g.x] + [si for si, _ in state]
    consts = {i for i, t in enumerate(tensors) if t[3] is not None}
    if len(set(inputs)) != len(inputs) or consts & (set(inputs) | {g.y} | {so for _, so in state}):
        fail("the input, the state inputs and the constant tensors must be distinct tensors, and y / state "
             "outputs must not be constants")
    if not isinstance(g.ops, (list, tuple)) or len(g.ops) > MAX_OPS:
        fail(f"ops must be a list of at most {MAX_OPS} entries")
    ops, written = [], set()
    for k, op in enumerate(g.ops):
        w = f"op {k}"
        if not isinstance(op, (list, tuple)) or len(op) != 8 or op[0] not in OPS:
            fail(f"{w}: must be [name, a, b, out, act, p0, p1, p2] with name one of {OPS}")
        name = op[0]
        if not q and name in INT8_ONLY:
            fail(f"{w}: {name} exists in int8 graphs only")
        if not all(_int(v) for v in op[1:]):
            fail(f"{w}: fields must be ints")
        a, out = idx(op[1], f"{w} input"), idx(op[3], f"{w} output")
        b = idx(op[2], f"{w} second input", optional=True)
        act, p0, p1, p2 = (int(v) for v in op[4:])
        if out in inputs or out in consts:
            fail(f"{w}: writes a graph input, state input or constant tensor")
        if act not in ACT_NAMES or (act and name not in ("FULLY_CONNECTED", "CONV_2D") + BINARY):
            fail(f"{w}: fused activation {act} not allowed")
        na, no = tensors[a][0], tensors[out][0]
        bits_a, bits_o = tensors[a][4], tensors[out][4]
        want = {"FULLY_CONNECTED": ((8, 8), (32, 32)), "CONV_2D": ((16, 16),), "COPY": ((8, 8), (16, 16), (8, 16),
                (32, 32)), "QUANTIZE": ((8, 8), (16, 8), (16, 16)), "RELU": ((8, 8), (32, 32)),
                "REQUANTIZE_FLOAT": ((8, 8),)}.get(name, ((8, 8), (16, 16), (32, 32)))
        if (bits_a, bits_o) not in want or b >= 0 and tensors[b][4] != bits_a:
            fail(f"{w}: {name} does not take {bits_a}-bit input to {bits_o}-bit output")
        if name in ("LOGISTIC", "TANH") and bits_o == 16 and tensors[out][1] != INT16_SCALE_2_15:
            fail(f"{w}: an int16 {name} output must have scale 2^-15")
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            if b != -1:
                fail(f"{w}: {name} takes one tensor input")
            if not (0 <= p0 and p0 + na * no <= g.n_w):
                fail(f"{w}: weights [{p0}, {p0 + na * no}) outside w ({g.n_w})")
            if not (p1 == -1 or 0 <= p1 and p1 + no <= g.n_b):
                fail(f"{w}: bias [{p1}, {p1 + no}) outside b ({g.n_b})")
            if q and not (0 <= p2 and p2 + no <= g.n_ws) or not q and p2:
                fail(f"{w}: weight scales [{p2}, {p2 + no}) outside w_scale ({g.n_ws})")
        elif name in BINARY:
            if b < 0 or not na == tensors[b][0] == no or p0 or p1 or p2:
                fail(f"{w}: {name} needs two inputs of the output's size (broadcast constants are expanded)")
        else:
            if b != -1:
                fail(f"{w}: {name} takes one input")
            size = p2 or no
            if not (p2 >= 0 and 0 <= p0 and p0 + size <= na and 0 <= p1 and p1 + size <= no):
                fail(f"{w}: element range ({p0}, {p1}, {size}) outside its tensors ({na}, {no})")
        ops.append([name, a, b, out, act, p0, p1, p2])
        written.add(out)
    g.ops = ops
    for t in [g.y] + [so for _, so in state]:
        if t not in written and t not in inputs:
            fail(f"tensor {t} is an output but no op writes it")


def validate_constants(g: OpGraph, params: dict, where: str) -> None:
    """The int8 constants next to the structure: finite positive weight scales."""
    ws = np.asarray(params["w_scale"], np.float64)
    if not np.all(np.isfinite(ws)) or np.any(ws < 1e-12) or np.any(ws > 1e6):
        raise ModelError(f"{where}: w_scale outside [1e-12, 1e6]")


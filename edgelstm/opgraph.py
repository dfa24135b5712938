"""The op-graph layer kind ("ops"): a small graph of TFLite builtin ops with recurrent state tensors, run as one
layer of the program (edgelstm/kernels/program.py dispatches KIND_OPS to kernels/ops_int8.py / ops_f32.py).

It is how edgelstm executes what the TF converter makes of a Keras ``LSTMCell`` / ``GRUCell`` /
``SimpleRNNCell`` with explicit state: plain int8 ops (FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH, ...),
each intermediate with its own calibrated scale, bit for bit as LiteRT computes them.

It is also how edgelstm runs its own int8 GRU and RNN layers: prepare() lowers them to int16 graphs of builtin
ops (edgelstm/cellgraph.py), the form ``to_tflite`` writes for them, so one mechanism runs both.

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

import functools
from dataclasses import dataclass, field

import numpy as np

from .errors import ModelError
from .limits import MAX_ARENA, MAX_OPS, MAX_SIZE, MAX_TENSORS

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


# ---------------------------------------------------------------------------------------------- prepare()

def _arena_offsets(g: OpGraph) -> tuple[list[int], int]:
    """Arena offsets of the graph's tensors by lifetime (prepare_record's layout), and the arena size.

    Time runs -1 (step start: graph_io_in copies the constants, x and the state inputs in), 0 .. n_ops - 1 (the
    ops, in order), n_ops (step end: graph_io_out reads y and the state outputs). A tensor is live over the
    closed interval [first time it is written (-1 for the copied-in tensors), last time it is read or written]
    and for the whole rest of the step if y or a state output reads it at the end; constants, x and the state
    inputs are live the whole step. Two tensors share arena elements only if their intervals are disjoint, so an
    op's output never overlaps its inputs (both are live at the op) nor any tensor still to be read. Each tensor
    is one whole block, including those ops write in element ranges (COPY parts of a concatenation): the block
    is live from the first partial write on. A tensor read before anything writes it (not possible in a
    converter graph) is live from the step start. Placement: greedy first fit (each tensor at the lowest
    offset clear of every placed tensor whose interval meets its own) in three orders, longest lifetime first,
    largest first (TFLite's arena planner), largest lifetime x size first; the smallest arena wins (the first
    of equals: deterministic). On edgelstm's GRU / RNN cell graphs it reaches the peak of live elements."""
    T, n_ops = g.tensors, len(g.ops)
    first_w, last = {}, {}
    read_early = set()
    for k, (_, a, b, out, *_rest) in enumerate(g.ops):
        for t in (a, b):
            if t >= 0:
                if t not in first_w:
                    read_early.add(t)
                last[t] = k
        first_w.setdefault(out, k)
        last[out] = k
    whole = {g.x} | {si for si, _ in g.state} | {i for i, t in enumerate(T) if t[3] is not None}
    at_end = {g.y} | {so for _, so in g.state}
    span = []
    for i in range(len(T)):
        if i in whole or i in read_early or i not in first_w:
            lo = -1
        else:
            lo = first_w[i]
        hi = n_ops if i in whole or i in at_end else last.get(i, lo)
        span.append((lo, hi))

    size = np.array([t[0] for t in T], np.int64)
    los, his = np.array([s[0] for s in span], np.int64), np.array([s[1] for s in span], np.int64)

    def first_fit(order):
        offs = np.zeros(len(T), np.int64)
        for p, i in enumerate(order):
            done = order[:p]
            meet = done[(los[done] <= his[i]) & (los[i] <= his[done])]
            at = 0
            for j in meet[np.argsort(offs[meet], kind="stable")]:
                if at + size[i] <= offs[j]:
                    break
                at = max(at, int(offs[j] + size[j]))
            offs[i] = at
        return int((offs + size).max()), [int(v) for v in offs]

    length = [hi - lo + 1 for lo, hi in span]
    keys = (lambda i: (-length[i], -T[i][0], i), lambda i: (-T[i][0], span[i][0], i),
            lambda i: (-length[i] * T[i][0], i))
    best = min((first_fit(np.array(sorted(range(len(T)), key=key), np.int64)) for key in keys),
               key=lambda r: r[0])
    return best[1], best[0]


def prepare_record(b, g: OpGraph, params: dict, state_off: int) -> tuple[list[int], int]:
    """Lay out one op-graph layer for the program: op records and constants into ``b`` (runtime._Builder),
    all float math done here (LiteRT's Prepare). Returns (direction record, arena elements)."""
    from .kernels import layout as C
    from .quant import ops_prepare as P
    from .runtime import fc_multipliers

    T = g.tensors
    offs, arena = _arena_offsets(g)      # by tensor lifetime: tensors that are never live together share elements
    q = g.quantized
    recs = []
    act16_table = None
    for name, a, bi, out, act, p0, p1, p2 in g.ops:
        r = [0] * C.OPK_REC
        (na, sa, za), (no, so, zo, _, bits) = T[a][:3], T[out]
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            w = params["w"][p0:p0 + no * na].reshape(no, na)
            if q:
                bias = b.add_ints(params["b"][p1:p1 + no]) if p1 >= 0 else -1
                lo, hi = P.activation_range(act, so, zo, bits=bits)
                if name == "FULLY_CONNECTED":
                    code, mults = C.OPK_FC, fc_multipliers(params["w_scale"][p2:p2 + no], sa, so)
                else:
                    code, mults = C.OPK_CONV16, P.conv16_multipliers(params["w_scale"][p2:p2 + no], sa, so)
                if name == "FULLY_CONNECTED":
                    w_off = b.add_weights(w)
                else:   # a dot-loop matrix (columns padded; the C copy holds it as int8 rows): the pairwise
                    # block layout when its rows make whole blocks and K <= 512 keeps the int32 sums exact
                    fast = C.uses_blocks(no) and na <= 512
                    w_off = b.add_weights(w, pad_columns=True, unit=no if fast else 1)
                    r[13] = int(fast)
                r[:13] = [code, offs[a], na, za, w_off, no, bias, b.add_ints(mults), 0, zo, lo, hi, offs[out]]
            else:
                bias = b.add_weights(params["b"][p1:p1 + no]) if p1 >= 0 else -1
                r[:13] = [C.OPK_FC, offs[a], na, b.add_weights(w), no, bias, act, 0, 0, 0, 0, 0, offs[out]]
        elif name in BINARY:
            code = {"ADD": C.OPK_ADD, "SUB": C.OPK_SUB, "MUL": C.OPK_MUL}[name]
            if not q:
                r[:6] = [code, no, offs[a], offs[bi], offs[out], act]
            else:
                sb, zb = T[bi][1], T[bi][2]
                lo, hi = P.activation_range(act, so, zo, bits=bits)
                if name == "MUL":
                    m, s = P.prepare_mul(s_a=sa, s_b=sb, s_out=so)
                    r[:12] = [code, no, offs[a], offs[bi], offs[out], za, zb, m, s, zo, lo, hi]
                else:
                    p = P.prepare_add(s_a=sa, s_b=sb, s_out=so, bits=bits)
                    r[:17] = [code, no, offs[a], offs[bi], offs[out], za, p["mult_a"], p["shift_a"], zb,
                              p["mult_b"], p["shift_b"], p["left_shift"], p["mult_out"], p["shift_out"], zo, lo, hi]
        else:
            n, src, dst = p2 or no, offs[a] + p0, offs[out] + p1
            if name == "COPY":
                r[:5] = [C.OPK_COPY, n, src, 0, dst]
            elif not q:
                code = {"LOGISTIC": C.OPK_LOGISTIC, "TANH": C.OPK_TANH, "RELU": C.OPK_CLAMP}[name]
                r[:6] = [code, n, src, 0, dst, 1 if name == "RELU" else 0]
            elif name in ("QUANTIZE", "RELU"):
                m, s = P.prepare_requantize(s_in=sa, s_out=so)
                lo, hi = P.activation_range(1 if name == "RELU" else 0, so, zo, bits=bits)
                r[:11] = [C.OPK_REQUANT, n, src, 0, dst, za, m, s, zo, lo, hi]
            elif bits == 16:                  # int16 LOGISTIC / TANH: LiteRT's reference interpolation
                if act16_table is None:
                    from .quant.tables import SIGMOID_TABLE_U16
                    act16_table = b.add_ints(SIGMOID_TABLE_U16)
                tanh = name == "TANH"
                mult, shift = P.prepare_act16(sa, tanh=tanh)
                table = b.kernel_table(("act16", tanh, mult, shift),     # built later: bind the values now
                                       functools.partial(P.act16_table, mult, shift, tanh=tanh))
                # [9]: the JIT's exhaustive table of this op (its kernel-blob offset, patched by _Builder.finish);
                # [8]: the 256-entry interpolation table the C runtime uses
                r[:10] = [C.OPK_ACT16, n, src, 0, dst, int(tanh), mult, shift, act16_table, table]
            else:
                if name == "REQUANTIZE_FLOAT":
                    table = P.float_requantize_table(s_in=sa, zp_in=za, s_out=so, zp_out=zo)
                else:
                    table = P.lookup_table(name.lower(), s_in=sa, zp_in=za, s_out=so, zp_out=zo)
                r[:6] = [C.OPK_LUT, n, src, 0, dst, b.add_weights(table)]
        recs.append(r)
    states = []
    for si, so_ in g.state:
        size, s_in, z_in = T[si][:3]
        s_out, z_out = T[so_][1:3]
        lut = -1
        if q and (s_in, z_in) != (s_out, z_out):
            lut = b.add_weights(P.float_requantize_table(s_in=s_out, zp_in=z_out, s_out=s_in, zp_out=z_in))
        states.append([offs[si], offs[so_], size, 0, lut])
    rel = 0
    for st in states:                     # state i sits at state_off + sum of the sizes before it
        st[3] = rel
        rel += st[2]
    consts = [[offs[i], t[0], b.add_weights(params["c"][t[3]:t[3] + t[0]])] for i, t in enumerate(T)
              if t[3] is not None]
    rec = [0] * C.OG_LEN
    rec[C.OG_NOPS] = len(recs)
    rec[C.OG_OPS] = b.add_ints(np.asarray(recs, np.int64).ravel()) if recs else 0
    for i, r in enumerate(recs):
        if q and r[0] == C.OPK_ACT16:
            b.refer_kernel_table(rec[C.OG_OPS] + i * C.OPK_REC + 9, r[9])
    rec[C.OG_X], rec[C.OG_NX], rec[C.OG_Y], rec[C.OG_NY] = offs[g.x], T[g.x][0], offs[g.y], T[g.y][0]
    rec[C.OG_NSTATE] = len(states)
    rec[C.OG_STATES] = b.add_ints(np.asarray(states, np.int64).ravel()) if states else 0
    rec[C.OG_STATE] = state_off
    rec[C.OG_NCONST] = len(consts)
    rec[C.OG_CONSTS] = b.add_ints(np.asarray(consts, np.int64).ravel()) if consts else 0
    return rec, arena


# ------------------------------------------------------------------------ GRU / RNN as float op graphs

def float_cell_graph(layer, direction: int = 0) -> tuple[OpGraph, dict]:
    """A float32 GRU (both variants) or RNN (tanh / relu) layer as an op graph of builtin ops (one step, state h),
    the form ``to_tflite(mode="step")`` writes for them (TFLite has no fused GRU/RNN op):
      GRU  r = LOGISTIC(FC_x,r(x) + FC_h,r(h)), z likewise, n = TANH(FC_x,n(x) + r * FC_h,n(h)) (reset after) or
           TANH(FC_x,n(x) + FC_h,n(r * h)) (reset before), h' = z * h + (1 - z) * n
      RNN  h' = TANH|RELU(FC_x(x) + FC_h(h))   (biases inside the FCs; one FC per gate block)"""
    if layer.kind not in ("gru", "rnn"):
        raise ModelError(f"no op graph for a {layer.kind} layer")
    w = layer.directions[direction]
    I, H = layer.input_size, layer.hidden_size
    tensors, ops, wblob, bblob = [], [], [], []

    def tensor(size, const=None):
        tensors.append([size, 1.0, 0, const])
        return len(tensors) - 1

    def fc(src, W, b):
        out = tensor(W.shape[0])
        ops.append(["FULLY_CONNECTED", src, -1, out, 0, sum(a.size for a in wblob), sum(a.size for a in bblob), 0])
        wblob.append(np.ascontiguousarray(W, np.float32).ravel())
        bblob.append(np.asarray(b, np.float32))
        return out

    def op(name, a, b=-1):
        out = tensor(H)
        ops.append([name, a, b, out, 0, 0, 0, 0])
        return out

    x, h = tensor(I), tensor(H)
    if layer.kind == "rnn":
        pre = op("ADD", fc(x, w["w_x"], w["b"]), fc(h, w["w_h"], np.zeros(H, np.float32)))
        y = op("TANH" if layer.nonlinearity == "tanh" else "RELU", pre)
        consts = np.zeros(0, np.float32)
    else:
        wx, wh, bx, bh = (np.split(w[n], 3) for n in ("w_x", "w_h", "b_x", "b_h"))
        r = op("LOGISTIC", op("ADD", fc(x, wx[0], bx[0]), fc(h, wh[0], bh[0])))
        z = op("LOGISTIC", op("ADD", fc(x, wx[1], bx[1]), fc(h, wh[1], bh[1])))
        if layer.reset_after:
            hn = op("MUL", r, fc(h, wh[2], bh[2]))
        else:
            hn = fc(op("MUL", r, h), wh[2], bh[2])
        n = op("TANH", op("ADD", fc(x, wx[2], bx[2]), hn))
        one = tensor(H, const=0)
        y = op("ADD", op("MUL", z, h), op("MUL", op("SUB", one, z), n))
        consts = np.ones(H, np.float32)
    wb, bb = np.concatenate(wblob), np.concatenate(bblob)
    g = OpGraph(input_size=I, output_size=H, quantized=False, tensors=tensors, ops=ops, x=x, y=y, state=[[h, y]],
                n_w=wb.size, n_b=bb.size, n_c=consts.size)
    validate_opgraph(g, f"{layer.kind} op graph")
    return g, {"w": wb, "b": bb, "c": consts}

"""from_tflite for step graphs: a .tflite subgraph of builtin ops (what the TF converter makes of a Keras
``LSTMCell`` / ``GRUCell`` / ``SimpleRNNCell`` with explicit state, int8 or float32) -> an ``edgelstm.Model``
with one op-graph layer (edgelstm/ir/opgraph.py) whose ``stream()`` keeps the state the graph takes as inputs.

Inputs and outputs, in the order of the file's SignatureDef when it has one (the converter names inputs after
the Keras inputs, sorted by name, and outputs in the model's output order), else the subgraph's: x is the
input named "x", else the first; y is the first output; the other inputs are state inputs, paired in order
with the other outputs (a Keras cell model ``[x, s0, s1...] -> [y, s0', s1'...]``). ``state=`` overrides the
pairing with (input position, output position) pairs in those orders. Every tensor is checked before the graph is built (types, per-tensor int8
quantization, constant shapes and dtypes, element-wise operands of equal size or one broadcast constant,
SPLIT / CONCATENATION along the last axis of a batch-1 tensor); the layer then validates its own structure.
Anything else raises ``ImportModelError`` naming the operator.
"""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError, ModelError
from edgelstm.ir.model import ModelSpec
from edgelstm.ir.opgraph import OpGraph
from edgelstm.quant.params import QuantParams
from edgelstm.runtime import Model

SUPPORTED = ("FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH", "RELU", "QUANTIZE", "DEQUANTIZE",
             "RESHAPE", "SPLIT", "SPLIT_V", "CONCATENATION")
_F32, _I32, _I8 = 0, 2, 9


def _size(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


class _Importer:
    def __init__(self, g, state):
        self.g = g
        self.inputs, self.outputs = _io_order(g)
        if not self.inputs or not self.outputs:
            raise ImportModelError(f"{g.where}: the step graph needs inputs and outputs")
        for t in self.inputs + self.outputs:
            if not 0 <= t < g.n_tensors:
                raise ImportModelError(f"{g.where}: subgraph input/output tensor {t} out of range")
        first = g.tensor(self.inputs[0], "graph input")
        if first["type"] not in (_F32, _I8):
            raise ImportModelError(f"{g.where}: graph input type {first['type']}: only float32 and int8 graphs")
        self.q = first["type"] == _I8
        self.state = self._pairs(state)
        self.tensors, self.ours, self.island = [], {}, {}
        self.ops, self.w, self.b, self.ws, self.c = [], [], [], [], []
        self.n_w = self.n_b = self.n_ws = self.n_c = 0

    def _pairs(self, state):
        n_in, n_out = len(self.inputs) - 1, len(self.outputs) - 1
        if state is None:
            if n_in != n_out:
                raise ImportModelError(f"{self.g.where}: {n_in} state input(s) but {n_out} extra output(s); "
                                       f"pass state=[(input position, output position), ...]")
            state = [(1 + k, 1 + k) for k in range(n_in)]
        pairs = []
        for p in state:
            i, o = (int(v) for v in p)
            if not (1 <= i < len(self.inputs) and 1 <= o < len(self.outputs)):
                raise ImportModelError(f"{self.g.where}: state pair {p} out of range")
            pairs.append((self.inputs[i], self.outputs[o]))
        if len(pairs) != len(self.inputs) - 1:
            raise ImportModelError(f"{self.g.where}: every input after the first must be a state input")
        return pairs

    # ------------------------------------------------------------------ tensors
    def act(self, i: int, what: str) -> int:
        """Our index of graph tensor i, a non-constant activation of the graph's type."""
        if i in self.ours:
            return self.ours[i]
        if i in self.island:
            raise ImportModelError(f"{self.g.where}: {what}: float tensor {i} is only supported between "
                                   f"DEQUANTIZE, SPLIT and QUANTIZE")
        t = self.g.tensor(i, what)
        if t["data"] is not None:
            raise ImportModelError(f"{self.g.where}: {what}: expected a computed tensor, got a constant")
        want = _I8 if self.q else _F32
        if t["type"] != want:
            raise ImportModelError(f"{self.g.where}: {what}: tensor type {t['type']}, expected "
                                   f"{'int8' if self.q else 'float32'} (mixed-type graphs are not supported)")
        if len(t["shape"]) > 1 and _size(t["shape"][:-1]) != 1:
            raise ImportModelError(f"{self.g.where}: {what}: shape {t['shape']}: only batch-1 step graphs")
        scale, zp = 1.0, 0
        if self.q:
            if t["scale"] is None or len(t["scale"]) != 1:
                raise ImportModelError(f"{self.g.where}: {what}: needs one per-tensor int8 quantization")
            scale, zp = float(t["scale"][0]), int(t["zp"][0])
        self.tensors.append([_size(t["shape"]), scale, zp, None])
        self.ours[i] = len(self.tensors) - 1
        return self.ours[i]

    def operand(self, i: int, size: int, what: str) -> int:
        """An element-wise operand: a computed tensor, or a constant of ``size`` values or one value broadcast
        to ``size`` (stored expanded in the constant blob)."""
        t = self.g.tensor(i, what)
        if t["data"] is None:
            return self.act(i, what)
        if t["data"].size not in (1, size) or t["type"] != (_I8 if self.q else _F32):
            raise ImportModelError(f"{self.g.where}: {what}: a constant operand must hold one or {size} "
                                   f"{'int8' if self.q else 'float32'} values (other broadcasts are not supported)")
        scale, zp = 1.0, 0
        if self.q:
            if t["scale"] is None or len(t["scale"]) != 1:
                raise ImportModelError(f"{self.g.where}: {what}: needs one per-tensor int8 quantization")
            scale, zp = float(t["scale"][0]), int(t["zp"][0])
        self.tensors.append([size, scale, zp, self.n_c])
        self.c.append(np.broadcast_to(np.ravel(t["data"]), (size,)))
        self.n_c += size
        return len(self.tensors) - 1

    def fused(self, op, cls) -> int:
        table = op["op"].BuiltinOptions()
        if table is None:
            return 0
        o = cls()
        o.Init(table.Bytes, table.Pos)
        f = int(o.FusedActivationFunction())
        if f not in (0, 1, 2, 3):
            raise ImportModelError(f"{self.g.where}: {op['name']}: fused activation {f} is not supported")
        return f

    def axis_is_last(self, axis, shape) -> bool:
        return axis is not None and np.size(axis) == 1 and \
            int(np.ravel(axis)[0]) % max(len(shape), 1) == max(len(shape), 1) - 1 and _size(shape[:-1]) == 1

    # ------------------------------------------------------------------ ops
    def run(self) -> Model:
        g, T = self.g, self.g.tflite
        x = self.act(self.inputs[0], "graph input")
        states = [(self.act(si, "state input"), si, so) for si, so in self.state]
        for k, op in enumerate(g.ops):
            name, ins, outs = op["name"], op["inputs"], op["outputs"]
            where = f"operator {k} ({name})"
            if name not in SUPPORTED:
                raise ImportModelError(f"{g.where}: unsupported operator {name} (operator {k}) in a step graph; "
                                       f"supported: {', '.join(SUPPORTED)}")
            if not outs or (name not in ("SPLIT", "SPLIT_V") and len(outs) != 1) or not ins:
                raise ImportModelError(f"{g.where}: {where}: unexpected number of inputs/outputs")
            if name == "FULLY_CONNECTED":
                self.fully_connected(op, where)
            elif name in ("ADD", "SUB", "MUL"):
                if len(ins) != 2:
                    raise ImportModelError(f"{g.where}: {where}: expected 2 inputs")
                o = self.act(outs[0], f"{where} output")
                n = self.tensors[o][0]
                a, b = self.operand(ins[0], n, f"{where} input 0"), self.operand(ins[1], n, f"{where} input 1")
                if not self.tensors[a][0] == self.tensors[b][0] == n:
                    raise ImportModelError(f"{g.where}: {where}: operands of different sizes (broadcasting is not "
                                           f"supported)")
                cls = {"ADD": T.AddOptions, "SUB": T.SubOptions, "MUL": T.MulOptions}[name]
                self.ops.append([name, a, b, o, self.fused(op, cls), 0, 0, 0])
            elif name == "DEQUANTIZE":
                if not self.q:
                    raise ImportModelError(f"{g.where}: {where}: DEQUANTIZE in a float graph")
                self.float_out(outs[0], where)
                self.island[outs[0]] = (self.act(ins[0], f"{where} input"), 0)
            elif name in ("SPLIT", "SPLIT_V"):
                self.split(op, where)
            elif name == "QUANTIZE" and ins[0] in self.island:
                src, off = self.island[ins[0]]
                o = self.act(outs[0], f"{where} output")
                self.ops.append(["REQUANTIZE_FLOAT", src, -1, o, 0, off, 0, self.tensors[o][0]])
            elif name in ("LOGISTIC", "TANH", "RELU", "QUANTIZE", "RESHAPE"):
                if name == "QUANTIZE" and not self.q:
                    raise ImportModelError(f"{g.where}: {where}: QUANTIZE in a float graph")
                a, o = self.act(ins[0], f"{where} input"), self.act(outs[0], f"{where} output")
                if self.tensors[a][0] != self.tensors[o][0]:
                    raise ImportModelError(f"{g.where}: {where}: input and output sizes differ")
                if name == "RESHAPE":
                    if self.tensors[a][1:3] != self.tensors[o][1:3]:
                        raise ImportModelError(f"{g.where}: {where}: input and output quantizations differ")
                    name = "COPY"
                self.ops.append([name, a, -1, o, 0, 0, 0, 0])
            else:
                self.concatenation(op, where)
        y = self.act(self.outputs[0], "graph output")
        pairs = [[si, self.act(so, "state output")] for si, _, so in states]
        layer = OpGraph(input_size=self.tensors[x][0], output_size=self.tensors[y][0], quantized=self.q,
                        tensors=self.tensors, ops=self.ops, x=x, y=y, state=pairs, n_w=self.n_w, n_b=self.n_b,
                        n_ws=self.n_ws, n_c=self.n_c)
        dt = np.int8 if self.q else np.float32
        w = np.concatenate(self.w) if self.w else np.zeros(0, dt)
        b = np.concatenate(self.b) if self.b else np.zeros(0, np.int32 if self.q else np.float32)
        c = np.concatenate(self.c).astype(dt) if self.c else np.zeros(0, dt)
        try:
            if not self.q:
                layer.directions = [{"w": w, "b": b, "c": c}]
                return Model(ModelSpec(layers=[layer]))
            ws = np.concatenate(self.ws).astype(np.float32) if self.ws else np.zeros(0, np.float32)
            spec = ModelSpec(layers=[layer], has_weights=False)
            act = [tuple(self.tensors[x][1:3]), tuple(self.tensors[y][1:3])]
            return Model(spec, QuantParams(act=act, layers=[[{"w": w, "w_scale": ws, "b": b, "c": c}]]))
        except ModelError as e:
            raise ImportModelError(f"{g.where}: {e}") from None

    def float_out(self, i, where):
        t = self.g.tensor(i, f"{where} output")
        if t["type"] != _F32 or t["data"] is not None or i in self.outputs:
            raise ImportModelError(f"{self.g.where}: {where}: expected an internal float32 tensor")

    def fully_connected(self, op, where):
        g, ins, outs = self.g, op["inputs"] + [-1, -1], op["outputs"]
        a = self.act(ins[0], f"{where} input")
        o = self.act(outs[0], f"{where} output")
        K, N = self.tensors[a][0], self.tensors[o][0]
        w = g.tensor(ins[1], f"{where} weights")
        wdt = np.int8 if self.q else np.float32
        if w["data"] is None or w["data"].dtype != wdt or w["shape"] != (N, K):
            raise ImportModelError(f"{g.where}: {where}: weights must be a constant {np.dtype(wdt)} ({N}, {K}) "
                                   f"tensor, got {w['shape']}")
        b_off = -1
        if ins[2] >= 0:
            bt = g.tensor(ins[2], f"{where} bias")
            bdt = np.int32 if self.q else np.float32
            if bt["data"] is None or bt["data"].dtype != bdt or bt["data"].size != N:
                raise ImportModelError(f"{g.where}: {where}: bias must be a constant {np.dtype(bdt)} ({N},) tensor")
            b_off = self.n_b
            self.b.append(bt["data"].ravel())
            self.n_b += N
        ws_off = 0
        if self.q:
            sc = w["scale"]
            if sc is None or np.any(w["zp"] != 0) or len(sc) not in (1, N):
                raise ImportModelError(f"{g.where}: {where}: int8 weights need symmetric per-tensor or "
                                       f"per-channel scales")
            ws_off = self.n_ws
            self.ws.append(np.broadcast_to(np.asarray(sc, np.float32), (N,)))
            self.n_ws += N
        self.ops.append(["FULLY_CONNECTED", a, -1, o, self.fused(op, g.tflite.FullyConnectedOptions),
                         self.n_w, b_off, ws_off])
        self.w.append(w["data"].ravel())
        self.n_w += N * K

    def split(self, op, where):
        g, ins, outs = self.g, op["inputs"], op["outputs"]
        if op["name"] == "SPLIT_V":
            if len(ins) != 3:
                raise ImportModelError(f"{g.where}: {where}: expected 3 inputs")
            src_i, axis_i = ins[0], ins[2]
        else:
            if len(ins) != 2:
                raise ImportModelError(f"{g.where}: {where}: expected 2 inputs")
            src_i, axis_i = ins[1], ins[0]
        src_t = g.tensor(src_i, f"{where} input")
        axis = g.tensor(axis_i, f"{where} axis")["data"]
        if not self.axis_is_last(axis, src_t["shape"]):
            raise ImportModelError(f"{g.where}: {where}: only a split along the last axis of a batch-1 tensor")
        if src_i in self.island:                                   # float island: DEQUANTIZE -> SPLIT -> QUANTIZE
            src, off = self.island[src_i]
            for oi in outs:
                self.float_out(oi, where)
                self.island[oi] = (src, off)
                off += _size(g.tensor(oi, f"{where} output")["shape"])
            if off - self.island[src_i][1] != _size(src_t["shape"]):
                raise ImportModelError(f"{g.where}: {where}: split sizes do not add up")
            return
        src = self.act(src_i, f"{where} input")
        off = 0
        for oi in outs:
            if _size(g.tensor(oi, f"{where} output")["shape"]) == 0:
                continue                                          # an empty part (SPLIT_V size 0): unused
            o = self.act(oi, f"{where} output")
            if self.tensors[o][1:3] != self.tensors[src][1:3]:
                raise ImportModelError(f"{g.where}: {where}: outputs must keep the input's quantization")
            self.ops.append(["COPY", src, -1, o, 0, off, 0, self.tensors[o][0]])
            off += self.tensors[o][0]
        if off != self.tensors[src][0]:
            raise ImportModelError(f"{g.where}: {where}: split sizes do not add up")

    def concatenation(self, op, where):
        g, ins, outs = self.g, op["inputs"], op["outputs"]
        o = self.act(outs[0], f"{where} output")
        shape = g.tensor(outs[0], f"{where} output")["shape"]
        table = op["op"].BuiltinOptions()
        axis = -1
        if table is not None:
            opts = g.tflite.ConcatenationOptions()
            opts.Init(table.Bytes, table.Pos)
            axis = opts.Axis()
            if opts.FusedActivationFunction():
                raise ImportModelError(f"{g.where}: {where}: a fused activation is not supported")
        if not self.axis_is_last(np.array([axis]), shape):
            raise ImportModelError(f"{g.where}: {where}: only a concatenation along the last axis of a batch-1 "
                                   f"tensor")
        off = 0
        for ii in ins:
            a = self.act(ii, f"{where} input")
            same = self.tensors[a][1:3] == self.tensors[o][1:3]
            n = self.tensors[a][0]
            if off + n > self.tensors[o][0]:
                raise ImportModelError(f"{g.where}: {where}: input sizes exceed the output")
            self.ops.append(["COPY" if same or not self.q else "QUANTIZE", a, -1, o, 0, 0, off, n])
            off += n
        if off != self.tensors[o][0]:
            raise ImportModelError(f"{g.where}: {where}: input sizes do not add up to the output")


def _io_order(g) -> tuple[list[int], list[int]]:
    """(inputs with x first, outputs) as tensor indices; see the module docstring."""
    sg, m = g.g, g.model
    ins = [int(v) for v in sg.InputsAsNumpy()] if sg.InputsLength() else []
    outs = [int(v) for v in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    if m.SignatureDefsLength() == 1:
        s = m.SignatureDefs(0)
        s_ins = [(s.Inputs(i).Name() or b"", s.Inputs(i).TensorIndex()) for i in range(s.InputsLength())]
        s_outs = [s.Outputs(i).TensorIndex() for i in range(s.OutputsLength())]
        if sorted(t for _, t in s_ins) == sorted(ins) and sorted(s_outs) == sorted(outs):
            x = [t for name, t in s_ins if name == b"x"]
            rest = [t for name, t in s_ins if name != b"x"]
            ins, outs = (x + rest if len(x) == 1 else [t for _, t in s_ins]), s_outs
    return ins, outs


def import_step_graph(g, *, state=None) -> Model:
    """``g``: a validated from_tflite._Graph. Returns an int8 or float32 Model with one op-graph layer."""
    return _Importer(g, state).run()

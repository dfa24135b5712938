"""Converter-made .tflite files to a runnable ``edgelstm.Model``.

Supported graphs (what the TF converter writes for a Keras LSTM stack with a Dense head), float32 or full-integer
int8 (8x8_16 LSTM):
    UNIDIRECTIONAL_SEQUENCE_LSTM [-> UNIDIRECTIONAL_SEQUENCE_LSTM ...] [-> FULLY_CONNECTED [-> LOGISTIC | TANH
    | SOFTMAX]]
Files with WHILE loops (the converter's float32 sequence files of Keras GRU / SimpleRNN layers) are read by
export/from_tflite_while.py into GRU / RNN layers; other control flow is refused by name.
Any other graph is read as a step graph of plain builtin ops (export/from_tflite_graph.py: Keras cells with
explicit state, int8 or float32) and becomes one op-graph layer; an unsupported op raises ``ImportModelError``
naming it.  The file is parsed with the ``tflite`` schema package
(pure Python: a malformed file raises, it cannot crash) and every value this importer takes from it is checked
(identifier, tensor indices, dtypes, shapes, buffer sizes, quantization) before a Model is built; the Model
then runs its own validation (``validate_quant`` and prepare()'s multiplier checks) before any kernel runs.
"""
from __future__ import annotations


import numpy as np

from edgelstm.errors import EdgeLSTMError, ImportModelError, ModelError
from edgelstm.ir.model import LSTM, Dense, ModelSpec
from edgelstm.quant.params import QuantParams
from edgelstm.runtime import Model

from ._files import read_model_file
from .gate_order import TFLITE_LSTM, TFLITE_PEEPHOLE, stack_gates

# TFLite TensorType -> numpy dtype (only what these graphs use)
_DTYPES = {0: np.float32, 2: np.int32, 7: np.int16, 9: np.int8}
_ACT_OPS = {"LOGISTIC": "sigmoid", "TANH": "tanh", "SOFTMAX": "softmax"}
# fused LSTM input slots (tflite schema, UNIDIRECTIONAL_SEQUENCE_LSTM)
_W_X = dict(zip(TFLITE_LSTM, (1, 2, 3, 4)))
_W_H = dict(zip(TFLITE_LSTM, (5, 6, 7, 8)))
_PEEP = dict(zip(TFLITE_PEEPHOLE, (9, 10, 11)))
_BIAS = dict(zip(TFLITE_LSTM, (12, 13, 14, 15)))
_PROJ_W, _PROJ_B, _H_STATE, _C_STATE = 16, 17, 18, 19
_LAYER_NORM = (20, 21, 22, 23)
_TANH = 4  # ActivationFunctionType.TANH
_RELU = 1


class _Graph:
    """The parts of one subgraph the importer reads, validated on access."""

    def __init__(self, data: bytes, where: str, subgraph: int = 0):
        import tflite

        self.tflite = tflite
        self.where = where
        self.data = data
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ImportModelError(f"{where}: not a TFLite flatbuffer (identifier {bytes(data[4:8])!r}, expected "
                                   f"b'TFL3')")
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if not 0 <= subgraph < self.model.SubgraphsLength():
            raise ImportModelError(f"{where}: subgraph {subgraph} does not exist ({self.model.SubgraphsLength()} "
                                   f"subgraphs)")
        self.g = self.model.Subgraphs(subgraph)
        self.n_tensors = self.g.TensorsLength()
        self.n_buffers = self.model.BuffersLength()
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.ops = []
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            idx = op.OpcodeIndex()
            if not 0 <= idx < self.model.OperatorCodesLength():
                raise ImportModelError(f"{where}: operator {i}: opcode index {idx} out of range")
            code = self.model.OperatorCodes(idx)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"builtin {builtin}")
            if builtin == tflite.BuiltinOperator.CUSTOM:
                name = f"CUSTOM ({(code.CustomCode() or b'').decode(errors='replace')})"
            ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
            inter = [int(v) for v in op.IntermediatesAsNumpy()] if op.IntermediatesLength() else []
            for t in ins + outs + inter:
                if not -1 <= t < self.n_tensors:
                    raise ImportModelError(f"{where}: operator {i} ({name}): tensor index {t} out of range")
            self.ops.append({"name": name, "op": op, "inputs": ins, "outputs": outs, "intermediates": inter})

    def subgraph(self, k: int) -> "_Graph":
        """Subgraph k of the same file (a WHILE loop's cond or body), read and checked like subgraph 0."""
        return _Graph(self.data, self.where, k)

    def options(self, op, cls):
        o = cls()
        table = op["op"].BuiltinOptions()
        if table is None:
            raise ImportModelError(f"{self.where}: {op['name']} has no options")
        o.Init(table.Bytes, table.Pos)
        return o

    def tensor(self, i: int, what: str) -> dict:
        if not 0 <= i < self.n_tensors:
            raise ImportModelError(f"{self.where}: {what}: missing tensor (index {i})")
        t = self.g.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(s < 0 for s in shape):
            raise ImportModelError(f"{self.where}: {what}: dynamic shape {shape} is not supported")
        ttype = t.Type()
        q = t.Quantization()
        scale = q.ScaleAsNumpy().astype(np.float64) if q is not None and q.ScaleLength() else None
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q is not None and q.ZeroPointLength() else None
        if scale is not None and (zp is None or len(zp) != len(scale) or not np.all(np.isfinite(scale))
                                  or np.any(scale <= 0)):
            raise ImportModelError(f"{self.where}: {what}: invalid quantization parameters")
        b = t.Buffer()
        data = None
        if 0 < b < self.n_buffers and self.model.Buffers(b).DataLength():
            if ttype not in _DTYPES:
                raise ImportModelError(f"{self.where}: {what}: unsupported tensor type {ttype}")
            raw = self.model.Buffers(b).DataAsNumpy()
            dt = np.dtype(_DTYPES[ttype])
            n = int(np.prod(shape)) if shape else 1
            if raw.size != n * dt.itemsize:
                raise ImportModelError(f"{self.where}: {what}: buffer holds {raw.size} bytes, shape {shape} of "
                                       f"{dt} needs {n * dt.itemsize}")
            data = np.frombuffer(raw.tobytes(), dtype=dt).reshape(shape).copy()
        elif not 0 <= b < self.n_buffers:
            raise ImportModelError(f"{self.where}: {what}: buffer index {b} out of range")
        return {"shape": shape, "type": ttype, "scale": scale, "zp": zp, "data": data,
                "is_variable": bool(t.IsVariable())}


def _const(g: _Graph, i: int, what: str, shape: tuple, dtype) -> dict:
    t = g.tensor(i, what)
    if t["data"] is None:
        raise ImportModelError(f"{g.where}: {what}: expected a constant tensor")
    if t["shape"] != shape:
        raise ImportModelError(f"{g.where}: {what}: shape {t['shape']}, expected {shape}")
    if t["data"].dtype != np.dtype(dtype):
        raise ImportModelError(f"{g.where}: {what}: dtype {t['data'].dtype}, expected {np.dtype(dtype)}")
    return t


def _per_tensor(g: _Graph, t: dict, what: str) -> tuple[float, int]:
    if t["scale"] is None or len(t["scale"]) != 1:
        raise ImportModelError(f"{g.where}: {what}: expected one (per-tensor) scale")
    return float(t["scale"][0]), int(t["zp"][0])


def _lstm(g: _Graph, op: dict, k: int, quantized: bool):
    where = f"operator {k} (UNIDIRECTIONAL_SEQUENCE_LSTM)"
    ins = op["inputs"] + [-1] * (24 - len(op["inputs"]))
    opts = g.options(op, g.tflite.UnidirectionalSequenceLSTMOptions)
    if opts.FusedActivationFunction() != _TANH:
        raise ImportModelError(f"{g.where}: {where}: only the tanh cell activation is supported")
    if any(ins[i] >= 0 for i in _LAYER_NORM):
        raise ImportModelError(f"{g.where}: {where}: layer-normalized LSTMs are not supported")
    if ins[_W_X["i"]] < 0:
        raise ImportModelError(f"{g.where}: {where}: CIFG (coupled input and forget gates) is not supported")
    x = g.tensor(ins[0], f"{where} input")
    if len(x["shape"]) != 3:
        raise ImportModelError(f"{g.where}: {where}: input shape {x['shape']}, expected 3-D")
    I = x["shape"][2]
    wdt = np.int8 if quantized else np.float32
    w_ff = g.tensor(ins[_W_X["f"]], f"{where} input_to_forget_weights")
    if len(w_ff["shape"]) != 2:
        raise ImportModelError(f"{g.where}: {where}: weights must be 2-D")
    H = w_ff["shape"][0]
    w_rec = g.tensor(ins[_W_H["f"]], f"{where} recurrent_to_forget_weights")
    R = w_rec["shape"][1] if len(w_rec["shape"]) == 2 else -1
    P = R if ins[_PROJ_W] >= 0 else 0
    if P == 0 and R != H:
        raise ImportModelError(f"{g.where}: {where}: recurrent weights {w_rec['shape']} do not match H={H}")
    wx = {gate: _const(g, ins[i], f"{where} input_to_{gate} weights", (H, I), wdt) for gate, i in _W_X.items()}
    wh = {gate: _const(g, ins[i], f"{where} recurrent_to_{gate} weights", (H, R), wdt) for gate, i in _W_H.items()}
    bias = {gate: _const(g, ins[i], f"{where} {gate} gate bias", (H,), np.int32 if quantized else np.float32)
            for gate, i in _BIAS.items()}
    peephole = ins[_PEEP["i"]] >= 0
    if peephole != (ins[_PEEP["f"]] >= 0) or peephole != (ins[_PEEP["o"]] >= 0):
        raise ImportModelError(f"{g.where}: {where}: partial peepholes are not supported")
    peep = {gate: _const(g, ins[i], f"{where} cell_to_{gate} weights", (H,), np.int16 if quantized else np.float32)
            for gate, i in _PEEP.items()} if peephole else {}
    proj_w = _const(g, ins[_PROJ_W], f"{where} projection weights", (P, H), wdt) if P else None
    proj_b = _const(g, ins[_PROJ_B], f"{where} projection bias", (P,), np.int32 if quantized else np.float32) \
        if P and ins[_PROJ_B] >= 0 else None
    out = g.tensor(op["outputs"][0], f"{where} output")
    layer = LSTM(input_size=I, hidden_size=H, proj_size=P, peephole=peephole, cell_clip=max(opts.CellClip(), 0.0),
                 proj_clip=max(opts.ProjClip(), 0.0) if P else 0.0)
    if not quantized:
        d = {"w_x": stack_gates({k2: t["data"] for k2, t in wx.items()}, "lstm"),
             "w_h": stack_gates({k2: t["data"] for k2, t in wh.items()}, "lstm"),
             "b": stack_gates({k2: t["data"] for k2, t in bias.items()}, "lstm")}
        if peephole:
            d["w_peep"] = stack_gates({k2: t["data"][None] for k2, t in peep.items()}, "peephole")
        if P:
            d["w_proj"] = proj_w["data"]
            d["b_proj"] = proj_b["data"] if proj_b is not None else np.zeros(P, np.float32)
        layer.directions = [d]
        return layer, None, x, out
    q = {"w_x": stack_gates({k2: t["data"] for k2, t in wx.items()}, "lstm"),
         "w_x_scale": np.array([_per_tensor(g, wx[k2], f"{where} input weights")[0] for k2 in TFLITE_LSTM],
                               np.float32),
         "w_h": stack_gates({k2: t["data"] for k2, t in wh.items()}, "lstm"),
         "w_h_scale": np.array([_per_tensor(g, wh[k2], f"{where} recurrent weights")[0] for k2 in TFLITE_LSTM],
                               np.float32),
         "b": stack_gates({k2: t["data"] for k2, t in bias.items()}, "lstm")}
    c = g.tensor(ins[_C_STATE], f"{where} cell state")
    c_scale = _per_tensor(g, c, f"{where} cell state")[0]
    e = int(np.round(np.log2(c_scale)))
    if c["type"] != 7 or 2.0 ** e != np.float32(c_scale):
        raise ImportModelError(f"{g.where}: {where}: the cell state must be int16 with a power-of-two scale")
    q["cell_exp"] = np.array([e], np.int32)
    if peephole:
        q["w_peep"] = stack_gates({k2: t["data"][None] for k2, t in peep.items()}, "peephole")
        q["w_peep_scale"] = np.array([_per_tensor(g, peep[k2], f"{where} peephole")[0] for k2 in TFLITE_PEEPHOLE],
                                     np.float32)
    s_out, zp_out = _per_tensor(g, out, f"{where} output")
    inter = op["intermediates"]
    if len(inter) != 5:
        raise ImportModelError(f"{g.where}: {where}: an int8 LSTM needs its 5 intermediates, got {len(inter)}")
    s_hid, zp_hid = _per_tensor(g, g.tensor(inter[4], f"{where} hidden intermediate"), f"{where} hidden")
    if P:
        q["w_proj"] = proj_w["data"]
        q["w_proj_scale"] = np.array([_per_tensor(g, proj_w, f"{where} projection")[0]], np.float32)
        q["b_proj"] = proj_b["data"] if proj_b is not None else np.zeros(P, np.int32)
        q["hidden_scale"] = np.array([s_hid], np.float32)
        q["hidden_zp"] = np.array([zp_hid], np.int32)
    elif (np.float32(s_hid), zp_hid) != (np.float32(s_out), zp_out):
        raise ImportModelError(f"{g.where}: {where}: hidden quantization {(s_hid, zp_hid)} differs from the output's "
                               f"{(s_out, zp_out)} without a projection")
    s_h, zp_h = _per_tensor(g, g.tensor(ins[_H_STATE], f"{where} output state"), f"{where} output state")
    if (np.float32(s_h), zp_h) != (np.float32(s_out), zp_out):
        raise ImportModelError(f"{g.where}: {where}: output state and output quantizations differ")
    return layer, q, x, out


def _dense(g: _Graph, op: dict, k: int, quantized: bool, act_op: dict | None):
    where = f"operator {k} (FULLY_CONNECTED)"
    ins = op["inputs"] + [-1] * (3 - len(op["inputs"]))
    opts = g.options(op, g.tflite.FullyConnectedOptions)
    fused = opts.FusedActivationFunction()
    if fused not in (0, _RELU):
        raise ImportModelError(f"{g.where}: {where}: fused activation {fused} is not supported (none or RELU)")
    w = g.tensor(ins[1], f"{where} weights")
    if len(w["shape"]) != 2:
        raise ImportModelError(f"{g.where}: {where}: weights shape {w['shape']}, expected (O, I)")
    O, I = w["shape"]
    w = _const(g, ins[1], f"{where} weights", (O, I), np.int8 if quantized else np.float32)
    b = _const(g, ins[2], f"{where} bias", (O,), np.int32 if quantized else np.float32) if ins[2] >= 0 else None
    activation = "relu" if fused == _RELU else "none"
    if act_op is not None:
        if fused:
            raise ImportModelError(f"{g.where}: {where}: a fused RELU followed by {act_op['name']} is not supported")
        activation = _ACT_OPS[act_op["name"]]
        if act_op["name"] == "SOFTMAX":
            beta = g.options(act_op, g.tflite.SoftmaxOptions).Beta()
            if beta != 1.0:
                raise ImportModelError(f"{g.where}: SOFTMAX with beta={beta} is not supported (beta 1 only)")
    layer = Dense(input_size=I, output_size=O, activation=activation)
    fc_out = g.tensor(op["outputs"][0], f"{where} output")
    final = g.tensor(act_op["outputs"][0], f"{act_op['name']} output") if act_op else fc_out
    if not quantized:
        layer.directions = [{"w": w["data"], "b": b["data"] if b is not None else np.zeros(O, np.float32)}]
        return layer, None, final
    if w["zp"] is None or np.any(w["zp"] != 0):
        raise ImportModelError(f"{g.where}: {where}: int8 weights must be symmetric (zero point 0)")
    scales = w["scale"]
    if len(scales) == 1:
        scales = np.repeat(scales, O)
    elif len(scales) != O:
        raise ImportModelError(f"{g.where}: {where}: {len(scales)} weight scales for {O} output channels")
    s_pre, zp_pre = _per_tensor(g, fc_out, f"{where} output")
    q = {"w": w["data"], "w_scale": scales.astype(np.float32),
         "b": b["data"] if b is not None else np.zeros(O, np.int32),
         "pre_scale": np.array([s_pre], np.float32), "pre_zp": np.array([zp_pre], np.int32)}
    return layer, q, final


def from_tflite(path, *, state=None) -> Model:
    """Import a converter-made .tflite file (see the module docstring for the supported graphs).

    ``state``: for a step graph, the (input position, output position) pairs of its state tensors; default:
    inputs 1.. paired in order with outputs 1.. (a Keras cell model ``[x, s...] -> [y, s'...]``)."""
    data, where = read_model_file(path)
    try:
        import tflite  # noqa: F401
    except ImportError:
        raise ImportModelError("from_tflite needs the 'tflite' schema package: pip install 'edgelstm[tflite]'") \
            from None
    try:
        return _import(data, where, state)
    except EdgeLSTMError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed flatbuffer raises anything from the generated accessors
        raise ImportModelError(f"{where}: malformed TFLite file ({type(e).__name__}: {e})") from None


def _import(data: bytes, where: str, state) -> Model:
    g = _Graph(data, where)
    if g.model.SubgraphsLength() != 1:    # control flow: converter-made Keras GRU / SimpleRNN WHILE loops
        from .from_tflite_while import import_while_graph
        return import_while_graph(g, state=state, dense=_dense, activations=tuple(_ACT_OPS))
    names = [op["name"] for op in g.ops]
    if not names:
        raise ImportModelError(f"{where}: the graph has no operators")
    if "UNIDIRECTIONAL_SEQUENCE_LSTM" not in names:     # a step graph of plain ops (e.g. a Keras cell)
        from .from_tflite_graph import import_step_graph
        return import_step_graph(g, state=state)
    if state is not None:
        raise ImportModelError(f"{where}: state= applies to step graphs; this file is a fused sequence LSTM")
    known = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", *_ACT_OPS}
    for i, n in enumerate(names):
        if n not in known:
            raise ImportModelError(f"{where}: unsupported operator {n} (operator {i}); edgelstm imports "
                                   f"UNIDIRECTIONAL_SEQUENCE_LSTM stacks with a FULLY_CONNECTED head and "
                                   f"LOGISTIC / TANH / SOFTMAX")
    n_lstm = 0
    while n_lstm < len(names) and names[n_lstm] == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        n_lstm += 1
    rest = names[n_lstm:]
    if n_lstm == 0 or rest not in ([], ["FULLY_CONNECTED"]) + tuple(["FULLY_CONNECTED", a] for a in _ACT_OPS):
        raise ImportModelError(f"{where}: unsupported graph {' -> '.join(names)}; edgelstm imports "
                               f"UNIDIRECTIONAL_SEQUENCE_LSTM [-> ...] [-> FULLY_CONNECTED [-> LOGISTIC|TANH|SOFTMAX]]")
    first_in = g.tensor(g.ops[0]["inputs"][0], "model input")
    quantized = first_in["type"] == 9
    if not quantized and first_in["type"] != 0:
        raise ImportModelError(f"{where}: model input type {first_in['type']}: only float32 and int8 are supported")
    layers, qlayers, act = [], [], []
    prev_out = g.ops[0]["inputs"][0]
    for k in range(n_lstm):
        op = g.ops[k]
        if op["inputs"][0] != prev_out:
            raise ImportModelError(f"{where}: operator {k} does not consume the previous operator's output")
        layer, q, x, out = _lstm(g, op, k, quantized)
        if quantized:
            if k == 0:
                act.append(_per_tensor(g, x, "model input"))
            act.append(_per_tensor(g, out, f"operator {k} output"))
        layers.append(layer)
        qlayers.append([q])
        prev_out = op["outputs"][0]
    if rest:
        fc = g.ops[n_lstm]
        if fc["inputs"][0] != prev_out:
            raise ImportModelError(f"{where}: FULLY_CONNECTED does not consume the LSTM output")
        act_op = g.ops[n_lstm + 1] if len(rest) == 2 else None
        if act_op is not None and act_op["inputs"][0] != fc["outputs"][0]:
            raise ImportModelError(f"{where}: {act_op['name']} does not consume the FULLY_CONNECTED output")
        layer, q, final = _dense(g, fc, n_lstm, quantized, act_op)
        if quantized:
            act.append(_per_tensor(g, final, "model output"))
        layers.append(layer)
        qlayers.append([q])
    try:
        if not quantized:
            return Model(ModelSpec(layers=layers))
        spec = ModelSpec(layers=layers, has_weights=False)
        return Model(spec, QuantParams(act=act, layers=qlayers))
    except ModelError as e:
        raise ImportModelError(f"{where}: {e}") from None

"""ONNX graphs to a runnable float32 ``edgelstm.Model``.

Supported today: one ONNX ``LSTM``, ``GRU`` or ``RNN`` node (any opset >= 7) reading the graph input, with its
weights as constant initializers (or Constant nodes), and optionally a head on its ``Y`` output made of layout
glue (``Squeeze``/``Reshape``/``Transpose``/``Identity``), ``Gemm`` or ``MatMul`` + ``Add``, and one of ``Sigmoid``,
``Tanh``, ``Relu``, ``Softmax``.  Attributes: ``hidden_size``, ``direction`` (forward, reverse, bidirectional),
``layout`` 0 and 1, ``linear_before_reset`` (GRU), peepholes ``P``, zero ``initial_h``/``initial_c``
initializers, and the default activations (an RNN's ``Relu`` too).  ``clip``, ``input_forget``, non-default
activations, non-zero initial states and other ops raise ``ImportModelError`` naming them.

Whatever the file's layout, the model follows edgelstm's conventions: batch-first float input ``(B, T, F)``,
output ``(B, T, directions * H)`` (or the head's width), ``lengths=`` for ``sequence_lens``.
"""
from __future__ import annotations


import numpy as np

from edgelstm.errors import EdgeLSTMError, ImportModelError, ModelError
from edgelstm.model import GRU, LSTM, RNN, Dense, ModelSpec
from edgelstm.runtime import Model

from ._files import read_model_file
from .gate_order import ONNX_GRU, ONNX_LSTM, ONNX_PEEPHOLE, reorder_gates

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_HEAD_ACTS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softmax": "softmax"}
_GLUE = {"Squeeze", "Reshape", "Transpose", "Identity", "Unsqueeze", "Flatten"}


def _load(src):
    import onnx
    if isinstance(src, onnx.ModelProto):
        return src, "<ModelProto>"
    data, where = read_model_file(src)
    try:
        return onnx.load_from_string(data), where
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ImportModelError(f"{where}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def from_onnx(src) -> Model:
    """Import an ONNX model (path or ``onnx.ModelProto``); see the module docstring for what is supported."""
    try:
        import onnx
    except ImportError:
        raise ImportModelError("from_onnx needs the 'onnx' package: pip install 'edgelstm[onnx]'") from None
    model, where = _load(src)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001
        raise ImportModelError(f"{where}: onnx.checker rejects the model: {e}") from None
    try:
        return _import(model, where)
    except EdgeLSTMError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed tensors or attributes surface as anything
        raise ImportModelError(f"{where}: malformed ONNX model ({type(e).__name__}: {e})") from None


def _constants(graph) -> dict:
    from onnx import numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    return consts


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _import(model, where: str) -> Model:
    g = model.graph
    consts = _constants(g)
    nodes = [n for n in g.node if n.op_type != "Constant"]
    rec = [n for n in nodes if n.op_type in _GATES]
    if len(rec) != 1:
        raise ImportModelError(f"{where}: expected exactly one LSTM, GRU or RNN node, found {len(rec)} "
                               f"(stacked graphs are not supported yet)")
    node = rec[0]
    inputs = [i.name for i in g.input if i.name not in consts]
    if len(inputs) < 1 or node.input[0] != inputs[0]:
        raise ImportModelError(f"{where}: the {node.op_type} node must read the graph's first input directly")
    extra = [i for i in inputs[1:] if i not in (node.input[4] if len(node.input) > 4 else "",)]
    if extra:
        raise ImportModelError(f"{where}: graph inputs {extra} must be constant initializers (weights, initial "
                               f"states); only X and sequence_lens may be runtime inputs")
    layer = _recurrent(node, consts, where)
    layers = [layer]
    head = [n for n in nodes if n is not node]
    if head:
        layers += _head(head, node, layer, consts, where, [o.name for o in g.output])
    try:
        return Model(ModelSpec(layers=layers))
    except ModelError as e:
        raise ImportModelError(f"{where}: {e}") from None


def _recurrent(node, consts: dict, where: str):
    op = node.op_type
    a = _attrs(node)
    what = f"{where}: {op} node {node.name or node.output[0]!r}"
    for name in ("clip",):
        if name in a:
            raise ImportModelError(f"{what}: attribute {name!r} is not supported yet")
    if a.get("input_forget", 0):
        raise ImportModelError(f"{what}: input_forget=1 (coupled input/forget gates) is not supported")
    for name in ("activation_alpha", "activation_beta"):
        if name in a:
            raise ImportModelError(f"{what}: attribute {name!r} is not supported (default activations only)")
    acts = a.get("activations")
    nonlinearity = "tanh"
    direction = a.get("direction", "forward")
    n_dir = 2 if direction == "bidirectional" else 1
    if acts is not None:
        per_dir = len(acts) // n_dir if n_dir and len(acts) % n_dir == 0 else -1
        groups = [acts[d * per_dir:(d + 1) * per_dir] for d in range(n_dir)] if per_dir > 0 else [acts]
        if op == "RNN" and all(gr == ["Relu"] for gr in groups):
            nonlinearity = "relu"
        elif any(gr != _DEFAULT_ACTS[op] for gr in groups):
            raise ImportModelError(f"{what}: activations {acts} are not supported (defaults "
                                   f"{_DEFAULT_ACTS[op]}{', or Relu for an RNN' if op == 'RNN' else ''})")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ImportModelError(f"{what}: direction {direction!r} is not supported")
    if a.get("layout", 0) not in (0, 1):
        raise ImportModelError(f"{what}: layout {a.get('layout')} is not supported")

    def const(i: int, name: str, required: bool):
        nm = node.input[i] if len(node.input) > i else ""
        if not nm:
            if required:
                raise ImportModelError(f"{what}: input {name} is missing")
            return None
        if nm not in consts:
            raise ImportModelError(f"{what}: input {name} ({nm!r}) must be a constant initializer")
        return np.asarray(consts[nm], dtype=np.float32)

    G = _GATES[op]
    W, R = const(1, "W", True), const(2, "R", True)
    if W.ndim != 3 or W.shape[0] != n_dir or W.shape[1] % G:
        raise ImportModelError(f"{what}: W shape {W.shape} does not fit {n_dir} direction(s) of {G} gates")
    H = W.shape[1] // G
    I = W.shape[2]
    if "hidden_size" in a and a["hidden_size"] != H:
        raise ImportModelError(f"{what}: hidden_size={a['hidden_size']} but W implies {H}")
    if R.shape != (n_dir, G * H, H):
        raise ImportModelError(f"{what}: R shape {R.shape}, expected {(n_dir, G * H, H)}")
    B = const(3, "B", False)
    if B is None:
        B = np.zeros((n_dir, 2 * G * H), np.float32)
    if B.shape != (n_dir, 2 * G * H):
        raise ImportModelError(f"{what}: B shape {B.shape}, expected {(n_dir, 2 * G * H)}")
    for i, name in ((5, "initial_h"), (6, "initial_c")):
        s = const(i, name, False) if op == "LSTM" or i == 5 else None
        if s is not None and np.any(s != 0):
            raise ImportModelError(f"{what}: a non-zero {name} is not supported yet")
    P = const(7, "P", False) if op == "LSTM" else None
    if P is not None and P.shape != (n_dir, 3 * H):
        raise ImportModelError(f"{what}: P shape {P.shape}, expected {(n_dir, 3 * H)}")
    dirs = []
    for d in range(n_dir):
        wb, rb = B[d, :G * H], B[d, G * H:]
        if op == "LSTM":
            p = {"w_x": reorder_gates(W[d], ONNX_LSTM, "lstm"), "w_h": reorder_gates(R[d], ONNX_LSTM, "lstm"),
                 "b": reorder_gates(wb + rb, ONNX_LSTM, "lstm")}
            if P is not None:
                p["w_peep"] = reorder_gates(P[d].reshape(3, H), ONNX_PEEPHOLE, "peephole")
        elif op == "GRU":
            p = {"w_x": reorder_gates(W[d], ONNX_GRU, "gru"), "w_h": reorder_gates(R[d], ONNX_GRU, "gru"),
                 "b_x": reorder_gates(wb, ONNX_GRU, "gru"), "b_h": reorder_gates(rb, ONNX_GRU, "gru")}
        else:
            p = {"w_x": W[d], "w_h": R[d], "b": wb + rb}
        dirs.append(p)
    common = dict(input_size=I, hidden_size=H, bidirectional=n_dir == 2, reverse=direction == "reverse",
                  directions=dirs)
    if op == "LSTM":
        return LSTM(peephole=P is not None, **common)
    if op == "GRU":
        return GRU(reset_after=bool(a.get("linear_before_reset", 0)), **common)
    return RNN(nonlinearity=nonlinearity, **common)


def _head(nodes, rnn_node, layer, consts: dict, where: str, outputs: list):
    """Layout glue, then Gemm or MatMul (+ Add), then an optional activation, on the recurrent node's Y."""
    cur = rnn_node.output[0]
    if not cur:
        raise ImportModelError(f"{where}: the head must read the recurrent node's Y output")
    width = layer.output_size
    w = b = None
    act = "none"
    for n in nodes:
        if not n.input or n.input[0] != cur:
            raise ImportModelError(f"{where}: node {n.op_type} {n.name!r} is not on the path from Y to the output "
                                   f"(only a linear chain of head ops is supported)")
        if n.op_type in _GLUE:
            if w is not None:
                raise ImportModelError(f"{where}: {n.op_type} after the dense head is not supported")
        elif n.op_type == "Gemm":
            a = _attrs(n)
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
                raise ImportModelError(f"{where}: Gemm with alpha/beta != 1 or transA is not supported")
            w = np.asarray(consts[n.input[1]], np.float32)
            w = w if a.get("transB", 0) else w.T
            b = np.asarray(consts[n.input[2]], np.float32) if len(n.input) > 2 and n.input[2] else None
        elif n.op_type == "MatMul" and w is None:
            if n.input[1] not in consts:
                raise ImportModelError(f"{where}: MatMul weights must be a constant initializer")
            w = np.asarray(consts[n.input[1]], np.float32).T
        elif n.op_type == "Add" and w is not None and b is None:
            if n.input[1] not in consts:
                raise ImportModelError(f"{where}: Add bias must be a constant initializer")
            b = np.asarray(consts[n.input[1]], np.float32).reshape(-1)
        elif n.op_type in _HEAD_ACTS and w is not None and act == "none":
            act = _HEAD_ACTS[n.op_type]
            if n.op_type == "Softmax" and _attrs(n).get("axis", -1) not in (-1, 2):
                raise ImportModelError(f"{where}: Softmax over another axis than the features is not supported")
        else:
            raise ImportModelError(f"{where}: unsupported operator {n.op_type} (after {layer.kind.upper()}); "
                                   f"supported: {sorted(_GLUE)}, Gemm, MatMul, Add, {sorted(_HEAD_ACTS)}")
        cur = n.output[0]
    if cur not in outputs:
        raise ImportModelError(f"{where}: the head does not end at a graph output")
    if w is None:
        if act != "none":
            raise ImportModelError(f"{where}: an activation without a dense layer is not supported")
        return []
    if w.ndim != 2 or w.shape[1] != width:
        raise ImportModelError(f"{where}: head weights {w.shape} do not fit the {width} recurrent features")
    if b is None:
        b = np.zeros(w.shape[0], np.float32)
    return [Dense(input_size=width, output_size=w.shape[0], activation=act, directions=[{"w": w, "b": b}])]

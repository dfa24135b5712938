"""``edgelstm.Model`` to a float ONNX graph that onnxruntime runs (opset 17).

    to_onnx(model, "m.onnx")                  # x (B, T, F) -> y (B, T, O); B and T dynamic
    to_onnx(model, "m.onnx", streaming=True)  # plus h0_k / c0_k state inputs and hN_k / cN_k outputs per layer

A model's own ``initial_state`` becomes each node's ``initial_h`` / ``initial_c`` (a constant expanded over the
batch); with ``streaming=True`` the caller feeds the state (start it from ``model.initial_state``).

Front-end layers run on each frame: a conv / pad as ONNX Conv / Pad on the frame's (N, C, L) view (edgelstm's
frame is (L, C), channels last), the magnitude as Mul / Add / Sqrt, a context as a Gather window over the flattened
stream (its last values a ctx0_k input / ctxN_k output when streaming). Each recurrent layer is a standard ONNX
LSTM / GRU / RNN node (time-major inside, so Transposes at the edges;
gate orders converted in export/gate_order.py), Dense is MatMul + Add + the activation node.  An int8 model is
exported as the float model it was quantized from (its float weights; the integer arithmetic has no standard
ONNX LSTM form), and refused if it carries no float weights.  Not expressible in standard ONNX RNN ops:
LSTM projection and the TFLite cell/projection clip (ImportModelError).
"""
from __future__ import annotations

import os

import numpy as np

from edgelstm.errors import ImportModelError
from edgelstm.runtime import Model

from .gate_order import ONNX_GRU, ONNX_LSTM, ONNX_PEEPHOLE, from_canonical

OPSET = 17
_ACT_NODES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softmax": "Softmax"}


def to_onnx(model: Model, path, *, streaming: bool = False) -> None:
    """Write ``model`` as a float ONNX file (see the module docstring)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportModelError("to_onnx needs the 'onnx' package: pip install 'edgelstm[onnx]'") from None
    if not isinstance(model, Model):
        raise ImportModelError(f"to_onnx expects an edgelstm.Model, got {type(model).__name__}")
    spec = model.spec
    if not spec.has_weights:
        raise ImportModelError("to_onnx: this int8 model carries no float weights; ONNX export writes the float "
                               "model (save the quantized model with its float weights to export it)")
    for k, layer in enumerate(spec.layers):
        if layer.kind == "ops":
            raise ImportModelError(f"to_onnx: layer {k} is an op graph (an imported TFLite step graph); ONNX export "
                                   f"writes standard LSTM/GRU/RNN and Dense nodes only")
    if streaming and spec.needs_whole_sequence:
        raise ImportModelError("to_onnx: streaming=True needs a model without bidirectional or reverse layers")
    nodes, inits, g_in, g_out = [], [], [], []
    F = spec.input_size

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    g_in.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", F]))
    nodes.append(helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]))
    cur = "x_tm"                                  # time-major (T, B, F) from here on
    const("flat_shape", np.array([0, 0, -1], np.int64))
    for k, layer in enumerate(spec.layers):
        if layer.kind in _FRONT_END:
            init = None if model.initial_state is None or streaming else model.initial_state[k][0]
            cur = _front_end(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init)
            continue
        if layer.kind == "dense":
            w, b = layer.directions[0]["w"], layer.directions[0]["b"]
            nodes.append(helper.make_node("MatMul", [cur, const(f"l{k}_w", w.T.astype(np.float32))], [f"l{k}_mm"]))
            nodes.append(helper.make_node("Add", [f"l{k}_mm", const(f"l{k}_b", b)], [f"l{k}_y"]))
            cur = f"l{k}_y"
            if layer.activation != "none":
                opts = {"axis": -1} if layer.activation == "softmax" else {}
                nodes.append(helper.make_node(_ACT_NODES[layer.activation], [cur], [f"l{k}_act"], **opts))
                cur = f"l{k}_act"
            continue
        init = None if model.initial_state is None or streaming else model.initial_state[k]
        cur = _recurrent(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init)
    nodes.append(helper.make_node("Transpose", [cur], ["y"], perm=[1, 0, 2]))
    g_out.insert(0, helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", spec.output_size]))
    graph = helper.make_graph(nodes, "edgelstm", g_in, g_out, initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="edgelstm")
    onnx_model.ir_version = 8  # readable by onnxruntime releases of the last years
    try:
        onnx.checker.check_model(onnx_model)
    except Exception as e:  # noqa: BLE001 - our own bug if this fires
        raise ImportModelError(f"to_onnx: onnx.checker rejects the graph: {e}") from None
    p = os.fspath(path)
    try:
        with open(p, "wb") as f:
            f.write(onnx_model.SerializeToString())
    except OSError as e:
        raise ImportModelError(f"{p}: cannot write: {e.strerror or e}") from None


_FRONT_END = ("conv1d", "pad", "magnitude", "activation", "context")


def _frames_shape(k, cur, nodes, const, helper):
    """(T, B) of the time-major tensor ``cur`` followed by -1: the shape that restores (T, B, F) frames."""
    nodes.append(helper.make_node("Shape", [cur], [f"l{k}_shape"]))
    nodes.append(helper.make_node("Slice", [f"l{k}_shape", const(f"l{k}_s0", np.array([0], np.int64)),
                                            const(f"l{k}_s2", np.array([2], np.int64))], [f"l{k}_tb"]))
    nodes.append(helper.make_node("Concat", [f"l{k}_tb", const(f"l{k}_m1", np.array([-1], np.int64))],
                                  [f"l{k}_tbf"], axis=0))
    return f"l{k}_tbf"


def _activation(k, act, cur, nodes, const, helper):
    if act == "none":
        return cur
    if act == "relu6":
        nodes.append(helper.make_node("Clip", [cur, const(f"l{k}_zero", np.array(0, np.float32)),
                                               const(f"l{k}_six", np.array(6, np.float32))], [f"l{k}_act"]))
    else:
        nodes.append(helper.make_node(_ACT_NODES[act], [cur], [f"l{k}_act"]))
    return f"l{k}_act"


def _front_end(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init):
    """A front-end layer on time-major (T, B, F) frames: a conv / pad runs on each frame as an ONNX (N, C, L) tensor
    (N = T * B; edgelstm's frame is (L, C) channels last), the magnitude on the (L, 2, C) view, a context as a
    window over the flattened stream with its state in / out when streaming."""
    if layer.kind == "activation":
        return _activation(k, layer.activation, cur, nodes, const, helper)
    if layer.kind == "context":
        return _context(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init)
    tbf = _frames_shape(k, cur, nodes, const, helper)
    if layer.kind == "magnitude":
        L, C = layer.length, layer.channels
        nodes.append(helper.make_node("Reshape", [cur, const(f"l{k}_v", np.array([-1, L, 2, C], np.int64))],
                                      [f"l{k}_pairs"]))
        nodes.append(helper.make_node("Split", [f"l{k}_pairs", const(f"l{k}_sp", np.array([1, 1], np.int64))],
                                      [f"l{k}_re", f"l{k}_im"], axis=2))
        for part in ("re", "im"):
            nodes.append(helper.make_node("Mul", [f"l{k}_{part}", f"l{k}_{part}"], [f"l{k}_{part}2"]))
        nodes.append(helper.make_node("Add", [f"l{k}_re2", f"l{k}_im2"], [f"l{k}_sum"]))
        nodes.append(helper.make_node("Sqrt", [f"l{k}_sum"], [f"l{k}_mag"]))
        nodes.append(helper.make_node("Reshape", [f"l{k}_mag", tbf], [f"l{k}_out"]))
        return f"l{k}_out"
    L, C = (layer.length, layer.channels) if layer.kind == "pad" else (layer.length, layer.in_channels)
    nodes.append(helper.make_node("Reshape", [cur, const(f"l{k}_lc_shape", np.array([-1, L, C], np.int64))], [f"l{k}_lc"]))
    nodes.append(helper.make_node("Transpose", [f"l{k}_lc"], [f"l{k}_cl"], perm=[0, 2, 1]))
    x = f"l{k}_cl"
    left, right, mode = ((layer.left, layer.right, layer.mode) if layer.kind == "pad"
                         else (layer.pad_left, layer.pad_right, layer.pad_mode))
    if left or right:
        nodes.append(helper.make_node("Pad", [x, const(f"l{k}_pads", np.array([0, 0, left, 0, 0, right], np.int64))],
                                      [f"l{k}_pad"], mode="reflect" if mode == "reflect" else "constant"))
        x = f"l{k}_pad"
    if layer.kind == "conv1d":
        w = layer.directions[0]["w"].transpose(0, 2, 1)                  # (O, K, Ig) -> ONNX (O, Ig, K)
        nodes.append(helper.make_node("Conv", [x, const(f"l{k}_w", np.ascontiguousarray(w, np.float32)),
                                               const(f"l{k}_b", layer.directions[0]["b"])], [f"l{k}_conv"],
                                      kernel_shape=[layer.kernel_size], strides=[layer.stride],
                                      dilations=[layer.dilation], group=layer.groups, pads=[0, 0]))
        x = _activation(k, layer.activation, f"l{k}_conv", nodes, const, helper)
    nodes.append(helper.make_node("Transpose", [x], [f"l{k}_lo"], perm=[0, 2, 1]))
    nodes.append(helper.make_node("Reshape", [f"l{k}_lo", tbf], [f"l{k}_out"]))
    return f"l{k}_out"


def _context(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init):
    """out[t] = (ctx ++ x[0] ++ x[1] ...)[t*F : t*F + K + F]: Gather of a (T, K + F) index grid over the stream."""
    K, F = layer.context, layer.size
    nodes.append(helper.make_node("Transpose", [cur], [f"l{k}_bt"], perm=[1, 0, 2]))              # (B, T, F)
    nodes.append(helper.make_node("Reshape", [f"l{k}_bt", const(f"l{k}_b_1", np.array([0, -1], np.int64))],
                                  [f"l{k}_flat"]))                                                  # (B, T*F)
    if streaming:
        ctx = f"l{k}_ctx0"
        g_in.append(helper.make_tensor_value_info(ctx, TensorProto.FLOAT, ["B", K]))
        g_out.append(helper.make_tensor_value_info(f"l{k}_ctxN", TensorProto.FLOAT, ["B", K]))
    else:      # the model's initial context (zeros by default), one row per sequence
        nodes.append(helper.make_node("Shape", [f"l{k}_flat"], [f"l{k}_fshape"]))
        nodes.append(helper.make_node("Slice", [f"l{k}_fshape", const(f"l{k}_c0", np.array([0], np.int64)),
                                                const(f"l{k}_c1", np.array([1], np.int64))], [f"l{k}_bdim"]))
        nodes.append(helper.make_node("Concat", [f"l{k}_bdim", const(f"l{k}_kdim", np.array([K], np.int64))],
                                      [f"l{k}_bk"], axis=0))
        value = np.zeros((1, K), np.float32) if init is None else np.asarray(init["ctx"], np.float32)[None]
        nodes.append(helper.make_node("Expand", [const(f"l{k}_ctxv", value), f"l{k}_bk"], [f"l{k}_ctx"]))
        ctx = f"l{k}_ctx"
    nodes.append(helper.make_node("Concat", [ctx, f"l{k}_flat"], [f"l{k}_stream"], axis=1))      # (B, K + T*F)
    if streaming:
        nodes.append(helper.make_node("Slice", [f"l{k}_stream", const(f"l{k}_mk", np.array([-K], np.int64)),
                                                const(f"l{k}_end", np.array([2**62], np.int64)),
                                                const(f"l{k}_ax1", np.array([1], np.int64))], [f"l{k}_ctxN"]))
    nodes.append(helper.make_node("Shape", [cur], [f"l{k}_cshape"]))
    nodes.append(helper.make_node("Gather", [f"l{k}_cshape", const(f"l{k}_i0", np.array(0, np.int64))], [f"l{k}_T"]))
    nodes.append(helper.make_node("Range", [const(f"l{k}_r0", np.array(0, np.int64)), f"l{k}_T",
                                            const(f"l{k}_r1", np.array(1, np.int64))], [f"l{k}_t"]))
    nodes.append(helper.make_node("Unsqueeze", [f"l{k}_t", const(f"l{k}_ax", np.array([1], np.int64))],
                                  [f"l{k}_tcol"]))
    nodes.append(helper.make_node("Mul", [f"l{k}_tcol", const(f"l{k}_F", np.array(F, np.int64))], [f"l{k}_tF"]))
    nodes.append(helper.make_node("Add", [f"l{k}_tF", const(f"l{k}_j", np.arange(K + F, dtype=np.int64)[None])],
                                  [f"l{k}_idx"]))                                                   # (T, K + F)
    nodes.append(helper.make_node("Gather", [f"l{k}_stream", f"l{k}_idx"], [f"l{k}_win"], axis=1))  # (B, T, K+F)
    nodes.append(helper.make_node("Transpose", [f"l{k}_win"], [f"l{k}_out"], perm=[1, 0, 2]))
    return f"l{k}_out"


def _initial(k, name, states, nodes, const, helper):
    """The model's initial state as initial_h / initial_c: a (D, 1, H) constant expanded to (D, B, H)."""
    if "batch_dim" not in {o for n in nodes for o in n.output}:
        nodes.append(helper.make_node("Shape", ["x"], ["x_shape"]))
        nodes.append(helper.make_node("Gather", ["x_shape", const("zero_index", np.array([0], np.int64))],
                                      ["batch_dim"]))
    D, H = len(states), states[0][name].shape[0]
    nodes.append(helper.make_node("Concat", [const(f"l{k}_{name}0_d", np.array([D], np.int64)), "batch_dim",
                                             const(f"l{k}_{name}0_h", np.array([H], np.int64))],
                                  [f"l{k}_{name}0_shape"], axis=0))
    value = np.stack([s[name] for s in states])[:, None, :].astype(np.float32)
    nodes.append(helper.make_node("Expand", [const(f"l{k}_{name}0_value", value), f"l{k}_{name}0_shape"],
                                  [f"l{k}_{name}0"]))
    return f"l{k}_{name}0"


def _recurrent(k, layer, cur, nodes, const, helper, TensorProto, g_in, g_out, streaming, init=None):
    op = layer.kind.upper()
    if layer.kind == "lstm" and layer.proj_size:
        raise ImportModelError(f"to_onnx: layer {k}: ONNX's LSTM has no projection (proj_size)")
    if layer.kind == "lstm" and (layer.cell_clip or layer.proj_clip):
        raise ImportModelError(f"to_onnx: layer {k}: TFLite's cell/projection clip has no ONNX equivalent "
                               f"(ONNX's clip bounds the gate inputs instead)")
    n_dir = 2 if layer.bidirectional else 1
    H = layer.hidden_size
    Ws, Rs, Bs, Ps = [], [], [], []
    for d in layer.directions:
        if layer.kind == "lstm":
            Ws.append(from_canonical(d["w_x"], ONNX_LSTM, "lstm"))
            Rs.append(from_canonical(d["w_h"], ONNX_LSTM, "lstm"))
            Bs.append(np.concatenate([from_canonical(d["b"], ONNX_LSTM, "lstm"), np.zeros(4 * H, np.float32)]))
            if layer.peephole:
                Ps.append(from_canonical(d["w_peep"], ONNX_PEEPHOLE, "peephole").reshape(-1))
        elif layer.kind == "gru":
            Ws.append(from_canonical(d["w_x"], ONNX_GRU, "gru"))
            Rs.append(from_canonical(d["w_h"], ONNX_GRU, "gru"))
            Bs.append(np.concatenate([from_canonical(d["b_x"], ONNX_GRU, "gru"),
                                      from_canonical(d["b_h"], ONNX_GRU, "gru")]))
        else:
            Ws.append(d["w_x"])
            Rs.append(d["w_h"])
            Bs.append(np.concatenate([d["b"], np.zeros(H, np.float32)]))
    ins = [cur, const(f"l{k}_W", np.stack(Ws).astype(np.float32)), const(f"l{k}_R", np.stack(Rs).astype(np.float32)),
           const(f"l{k}_B", np.stack(Bs).astype(np.float32)), ""]
    outs = [f"l{k}_Y", f"l{k}_hN" if streaming else "", ""]
    if streaming:
        ins.append(f"l{k}_h0")
        g_in.append(helper.make_tensor_value_info(f"l{k}_h0", TensorProto.FLOAT, [1, "B", H]))
        g_out.append(helper.make_tensor_value_info(f"l{k}_hN", TensorProto.FLOAT, [1, "B", H]))
    else:
        ins.append(_initial(k, "h", init, nodes, const, helper) if init else "")
    if layer.kind == "lstm":
        if streaming:
            ins.append(f"l{k}_c0")
            g_in.append(helper.make_tensor_value_info(f"l{k}_c0", TensorProto.FLOAT, [1, "B", H]))
            g_out.append(helper.make_tensor_value_info(f"l{k}_cN", TensorProto.FLOAT, [1, "B", H]))
            outs[2] = f"l{k}_cN"
        else:
            ins.append(_initial(k, "c", init, nodes, const, helper) if init else "")
        ins.append(const(f"l{k}_P", np.stack(Ps).astype(np.float32)) if layer.peephole else "")
    while ins and ins[-1] == "":
        ins.pop()
    while outs and outs[-1] == "":
        outs.pop()
    direction = "bidirectional" if n_dir == 2 else ("reverse" if layer.reverse else "forward")
    attrs = {"hidden_size": H, "direction": direction}
    if layer.kind == "gru":
        attrs["linear_before_reset"] = 1 if layer.reset_after else 0
    if layer.kind == "rnn":
        attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * n_dir
    nodes.append(helper.make_node(op, ins, outs, **attrs))
    # Y (T, D, B, H) -> (T, B, D * H): directions concatenated on the features, as edgelstm's layers emit them
    nodes.append(helper.make_node("Transpose", [f"l{k}_Y"], [f"l{k}_Yt"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [f"l{k}_Yt", "flat_shape"], [f"l{k}_out"]))
    return f"l{k}_out"

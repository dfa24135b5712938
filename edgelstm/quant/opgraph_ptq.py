"""A candidate int8 scheme for GRU / RNN layers that TFLite builtin ops express exactly: the layer becomes an int8
op graph (edgelstm/opgraph.py) of the float cell graph ``opgraph.float_cell_graph`` with every intermediate
quantized on its own calibrated int8 scale, the way the TF converter quantizes a Keras cell:

- FULLY_CONNECTED per gate block: int8 weights symmetric per output channel, int32 bias at s_in * w_scale;
- every intermediate tensor asymmetric int8 from its calibrated [min, max] (always containing 0);
- LOGISTIC outputs (1/256, -128) and TANH outputs (1/128, 0): LiteRT's fixed int8 output quantizations;
- the state h and the layer output share one quantization (the model's act[k+1]), so the state needs no
  requantization on write-back; the constant 1 of (1 - z) at (1/255, -128) (1.0 is exactly 127).

It runs in edgelstm as an op-graph layer and exports with ``to_tflite(mode="step")``, identical in LiteRT's
reference resolver by construction (the op kernels are LiteRT's). It is NOT the default scheme
(``el.quantize`` keeps the contract's int16-gate GRU/RNN): ``quantize_opgraph`` is the measured alternative,
see the README's op-graph section for the fidelity it keeps on the trained taggers.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..model import ModelSpec
from ..opgraph import OpGraph, float_cell_graph, validate_opgraph
from .params import QuantParams
from .ptq import choose_act_quant

SIGMOID_Q, TANH_Q, ONE_Q = (1.0 / 256.0, -128), (1.0 / 128.0, 0), (1.0 / 255.0, -128)


def _float_ranges(g: OpGraph, p: dict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the float op graph over X (T, I) with the state fed back (numpy, float32); per-tensor min and max."""
    T = g.tensors
    lo = np.full(len(T), np.inf)
    hi = np.full(len(T), -np.inf)
    h = {si: np.zeros(T[si][0], np.float32) for si, _ in g.state}
    for x in X:
        v = {i: np.asarray(p["c"][t[3]:t[3] + t[0]], np.float32) for i, t in enumerate(T) if t[3] is not None}
        v[g.x] = np.asarray(x, np.float32)
        v.update(h)
        for name, a, b, out, act, p0, p1, p2 in g.ops:
            if name == "FULLY_CONNECTED":
                W = p["w"][p0:p0 + T[out][0] * T[a][0]].reshape(T[out][0], T[a][0])
                r = W @ v[a] + (p["b"][p1:p1 + T[out][0]] if p1 >= 0 else 0)
            elif name in ("ADD", "SUB", "MUL"):
                r = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[name](v[a], v[b])
            elif name == "LOGISTIC":
                r = 1.0 / (1.0 + np.exp(-v[a]))
            elif name == "TANH":
                r = np.tanh(v[a])
            elif name == "RELU":
                r = np.maximum(v[a], 0)
            else:
                raise ModelError(f"opgraph PTQ: no float forward for {name}")
            v[out] = np.asarray(r, np.float32)
        for i, a in v.items():
            lo[i] = min(lo[i], float(a.min()))
            hi[i] = max(hi[i], float(a.max()))
        h = {si: v[so] for si, so in g.state}
    return lo, hi


def quantize_layer(layer, X: np.ndarray, act_in: tuple, act_out: tuple) -> tuple[OpGraph, dict]:
    """The int8 op graph of a float GRU / RNN layer, calibrated on its float inputs X (T, I)."""
    g, p = float_cell_graph(layer)
    lo, hi = _float_ranges(g, p, X)
    q = []
    producer = {o[3]: o[0] for o in g.ops}
    state_t = {si for si, _ in g.state} | {so for _, so in g.state}
    for i, t in enumerate(g.tensors):
        if i == g.x:
            q.append(act_in)
        elif i in state_t:
            q.append(act_out)
        elif t[3] is not None:
            q.append(ONE_Q)
        elif producer.get(i) == "LOGISTIC":
            q.append(SIGMOID_Q)
        elif producer.get(i) == "TANH":
            q.append(TANH_Q)
        else:
            q.append(choose_act_quant(lo[i], hi[i], what=f"{layer.kind} op graph tensor {i}"))
    tensors = [[t[0], float(np.float32(s)), int(z), t[3]] for t, (s, z) in zip(g.tensors, q)]
    w8, ws, b32 = [], [], []
    ops = []
    for name, a, b, out, act, p0, p1, p2 in g.ops:
        if name == "FULLY_CONNECTED":
            N, K = g.tensors[out][0], g.tensors[a][0]
            W = p["w"][p0:p0 + N * K].reshape(N, K).astype(np.float64)
            scale = np.maximum(np.abs(W).max(axis=1), 1e-8) / 127.0
            scale = scale.astype(np.float32)
            wq = np.clip(np.sign(W / scale[:, None]) * np.floor(np.abs(W / scale[:, None]) + 0.5), -127, 127)
            bias = p["b"][p1:p1 + N].astype(np.float64) / (np.float32(tensors[a][1]) * scale).astype(np.float64)
            off_w, off_s, off_b = sum(v.size for v in w8), sum(v.size for v in ws), sum(v.size for v in b32)
            w8.append(wq.astype(np.int8).ravel())
            ws.append(scale)
            b32.append(np.clip(np.sign(bias) * np.floor(np.abs(bias) + 0.5), -2**31, 2**31 - 1).astype(np.int32))
            ops.append([name, a, b, out, act, off_w, off_b, off_s])
        else:
            ops.append([name, a, b, out, act, p0, p1, p2])
    c = np.full(int(p["c"].size), 127, np.int8)          # the constant 1.0 at ONE_Q
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    params = {"w": cat(w8, np.int8), "w_scale": cat(ws, np.float32), "b": cat(b32, np.int32), "c": c}
    qg = OpGraph(input_size=g.input_size, output_size=g.output_size, quantized=True, tensors=tensors, ops=ops,
                 x=g.x, y=g.y, state=g.state, n_w=params["w"].size, n_b=params["b"].size,
                 n_ws=params["w_scale"].size, n_c=c.size)
    validate_opgraph(qg, f"{layer.kind} int8 op graph")
    return qg, params


def quantize_opgraph(model, *, calibration):
    """``el.quantize`` with every GRU / RNN layer replaced by its int8 op graph (the TFLite-expressible scheme
    above); LSTM and Dense layers keep the contract's int8 forms. Returns an int8 Model (float weights dropped)."""
    from ..runtime import Model
    from .ptq import quantize
    q = quantize(model, calibration=calibration, progress=False)
    X = np.asarray(calibration, np.float32)
    X = X.reshape(-1, X.shape[-1])
    layers, qlayers = [], []
    for k, layer in enumerate(model.spec.layers):
        if layer.kind in ("gru", "rnn"):
            Xk = Model(ModelSpec(layers=model.spec.layers[:k])).run(X) if k else X
            g, params = quantize_layer(layer, Xk, q.quant.act[k], q.quant.act[k + 1])
            layers.append(g)
            qlayers.append([params])
        else:
            layers.append(layer)
            qlayers.append(q.quant.layers[k])
    import copy
    layers = [copy.copy(layer) for layer in layers]
    for layer in layers:
        layer.directions = []
    return Model(ModelSpec(layers=layers, has_weights=False), QuantParams(act=list(q.quant.act), layers=qlayers))

"""CNN + RNN hybrids (the conv front-end layer kinds + LSTM / GRU + Dense) exported by to_tflite and run by LiteRT's
three op resolvers, whole and layer by layer: the kit behind tests/test_to_tflite_conv.py and
bench/conv_tflite_resolvers.py.

A stream is driven through the file's signature runner by name, the way an app does: x, then every state output
fed back to its state input (int8 states start at their zero point, float ones at 0). ``layer_by_layer`` runs each
layer as a one-layer step file on the int8 values edgelstm computes for its input, so every disagreement it counts
belongs to that layer's ops alone, and checks each against the per-resolver formulas of tests/naive.py
(docs/litert_conv_measurements.md)."""
import importlib
import os
import tempfile

import numpy as np

import edgelstm as el
from edgelstm.export import to_tflite
from edgelstm.quant.params import QuantParams

import naive

litert = importlib.import_module("ai_edge_litert.interpreter")

RESOLVERS = {"ref": "BUILTIN_REF", "opt": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "xnn": "AUTO"}
# the ops a layer of each kind becomes in a file (for the per-op report)
OPS = {"conv1d": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D", "pad": "PAD / MIRROR_PAD", "context": "CONCATENATION",
       "magnitude": "DEQUANTIZE..SQRT..QUANTIZE", "activation": "RELU / RELU6 / LOGISTIC / TANH",
       "lstm": "UNIDIRECTIONAL_SEQUENCE_LSTM", "gru": "GRU int16 cell graph", "dense": "FULLY_CONNECTED"}


def walk(rng, n, F, *, step=0.7):
    """A random walk clipped to +-6: slow enough for a recurrence to follow, loud enough to saturate."""
    return np.cumsum(rng.standard_normal((n, F)) * step, axis=0).clip(-6, 6).astype(np.float32)


def quantize_input(q, X):
    """(int8 X as the model input quantizes it, the float32 values those int8 stand for)."""
    s, zp = q.quant.act[0]
    Xq = np.clip(np.round(X / np.float32(s)) + zp, -128, 127).astype(np.int8)
    return Xq, ((Xq.astype(np.float32) - np.float32(zp)) * np.float32(s)).astype(np.float32)


def edgelstm_ints(q, Xq):
    """edgelstm's int8 outputs (as int64) of a quantized model streamed over the int8 inputs Xq (N, F)."""
    (s_in, zp_in), (s_out, zp_out) = q.quant.act[0], q.quant.act[-1]
    Xd = ((Xq.astype(np.float32) - np.float32(zp_in)) * np.float32(s_in)).astype(np.float32)
    return np.round(q.stream().step_many(Xd) / np.float32(s_out)).astype(np.int64) + zp_out


def sub_model(q, lo: int, hi: int):
    """Layers lo..hi-1 of a quantized model as a model of their own (same integers)."""
    return el.Model(el.ModelSpec(layers=q.spec.layers[lo:hi]),
                    QuantParams(act=q.quant.act[lo:hi + 1], layers=q.quant.layers[lo:hi]))


def litert_stream(path, X, resolver: str, *, chunk: int = 1):
    """Run a to_tflite file over X (N, F) by its signature: ``chunk`` frames per invoke (1 for a step file),
    every state output fed back. -> (Y (N, O), final state {name: flat array}); int8 as int64."""
    it = litert.Interpreter(model_path=str(path),
                            experimental_op_resolver_type=getattr(litert.OpResolverType, RESOLVERS[resolver]))
    run = it.get_signature_runner()
    ins = run.get_input_details()
    names = [n for n in ins if n != "x"]
    state = {n: np.full(ins[n]["shape"], ins[n]["quantization"][1] if ins[n]["dtype"] == np.int8 else 0,
                        ins[n]["dtype"]) for n in names}
    Y = []
    for start in range(0, len(X), chunk):
        out = run(x=np.asarray(X[start:start + chunk]).reshape(1, -1, X.shape[1]), **state)
        Y.append(out["y"].reshape(-1, out["y"].shape[-1]).copy())
        state = {n: out[n].copy() for n in names}
    Y = np.concatenate(Y)
    return (Y.astype(np.int64) if Y.dtype == np.int8 else Y), {n: a.ravel() for n, a in state.items()}


def _conv_prediction(layer, p, act_in, act_out, X, resolver):
    """LiteRT's int8 conv layer (PAD / MIRROR_PAD, CONV_2D / DEPTHWISE_CONV_2D, LOGISTIC / TANH) on each frame of X,
    by naive's formulas for ``resolver``."""
    (s_in, zp_in), (s_out, zp_out) = act_in, act_out
    lut = {"sigmoid": "logistic", "tanh": "tanh"}.get(layer.activation)
    s_conv, zp_conv = (float(p["pre_scale"][0]), int(p["pre_zp"][0])) if lut else (s_out, zp_out)
    mult = layer.out_channels // layer.in_channels if layer.depthwise else None
    # every padded frame, filled up to a whole number of strides, one after the other along the length: one conv
    # over all of them, of which each frame's own output positions are kept (their windows stay in the frame)
    padded = [naive.ref_pad_int8(x.reshape(layer.length, layer.in_channels), layer.pad_left, layer.pad_right,
                                 zp_out=zp_in, mode=layer.pad_mode) for x in X]
    Lp = padded[0].shape[0] + (-padded[0].shape[0]) % layer.stride
    rows = np.concatenate([np.pad(xp, ((0, Lp - len(xp)), (0, 0)), constant_values=zp_in) for xp in padded])
    y = naive.ref_conv1d_int8(rows, zp_in=zp_in, w=p["w"][:, :, 0] if mult else p["w"], b=p["b"], s_in=s_in,
                              w_scale=p["w_scale"], s_out=s_conv, zp_out=zp_conv,
                              act="none" if lut else layer.activation, stride=layer.stride, dilation=layer.dilation,
                              depth_multiplier=mult, resolver=resolver)
    keep = (np.arange(len(X))[:, None] * (Lp // layer.stride) + np.arange(layer.out_length)[None, :]).ravel()
    y = y[keep].reshape(len(X), -1)
    if not lut:
        return y
    table = np.array(naive.ref_op_lut(lut, range(-128, 128), zp_conv, s_conv, s_out, zp_out), np.int64)
    return table[y + 128]


def _magnitude_prediction(layer, act_in, act_out, X, resolver):
    """The magnitude chain on each frame of X as ``resolver`` computes it: DEQUANTIZE of the whole frame (the
    optimized kernel's blocks of 8 count from the frame's start), SPLIT, float32 MUL / ADD, a correctly rounded
    SQRT (XNNPACK's is not: the caller bounds that one), QUANTIZE."""
    f32 = np.float32
    out = []
    for x in X:
        v = naive.ref_dequantize_int8(x, s=act_in[0], zp=act_in[1], resolver=resolver).reshape(layer.length, 2, -1)
        r = np.sqrt((v[:, 0] * v[:, 0]).astype(f32) + (v[:, 1] * v[:, 1]).astype(f32)).astype(f32)
        out.append(naive.ref_quantize_f32(r.ravel(), s=act_out[0], zp=act_out[1], resolver=resolver))
    return np.array(out, np.int64)


def prediction(q, k: int, X, resolver: str):
    """What LiteRT's ``resolver`` computes for layer k of q on its int8 inputs X (N, F), where a formula tells it
    (conv layers; the magnitude except XNNPACK's approximate SQRT), else None."""
    layer, p = q.spec.layers[k], q.quant.layers[k][0]
    if layer.kind == "conv1d":
        return _conv_prediction(layer, p, q.quant.act[k], q.quant.act[k + 1], X, resolver)
    if layer.kind == "magnitude" and resolver != "xnn":
        return _magnitude_prediction(layer, q.quant.act[k], q.quant.act[k + 1], X, resolver)
    return None


def layer_by_layer(q, Xq, resolvers=("ref", "opt", "xnn")):
    """Each layer of the int8 model q as a one-layer step file, streamed over the int8 values edgelstm computes
    for its input (Xq: the model's int8 input). Per layer: {"kind", "op", "outputs", "input" (its int8 input),
    "edgelstm" (its int8 output), resolver: {"differ", "max_diff", "formula" (LiteRT == the formula's prediction,
    or None where there is none)}}."""
    rows, x_in = [], np.asarray(Xq, np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.tflite")
        for k, layer in enumerate(q.spec.layers):
            one = sub_model(q, k, k + 1)
            want = edgelstm_ints(sub_model(q, 0, k + 1), Xq)
            kind = "depthwise" if getattr(layer, "depthwise", False) else layer.kind
            row = {"kind": kind, "op": OPS.get(kind, kind), "activation": getattr(layer, "activation", None),
                   "outputs": int(want.size), "input": x_in, "edgelstm": want}
            to_tflite(one, path, mode="step")
            for r in resolvers:
                got, _ = litert_stream(path, x_in.astype(np.int8), r)
                pred = prediction(q, k, x_in, r)
                row[r] = {"differ": int(np.sum(got != want)), "max_diff": int(np.abs(got - want).max(initial=0)),
                          "formula": None if pred is None else bool(np.array_equal(got, pred)), "litert": got}
            rows.append(row)
            x_in = want
    return rows

"""The conv front-end layer kinds (edgelstm/ir/frontend.py) as TFLite builtin ops, for export/to_tflite.py.

Every frame tensor is ``[1, T, ...]``: T = 1 in a mode="step" file, the fixed frame count of a frames= file, or a
resizable T (shape signature -1) in a mode="sequence" file. A layer that works along the frame's length views
the frame as ``[1, T, length, channels]`` (NHWC with H = T, W = length): a 1-D conv is a 2-D conv with a kernel of
height 1, so every frame is convolved on its own. ``frame_view`` RESHAPEs only where the view changes.

What each kind becomes (int8: every tensor per-tensor int8 in the layer's quantization, as the runtime computes it;
docs/contract.md, docs/litert_conv_measurements.md):

conv1d      [PAD (zeros: filled with the input zero point) | MIRROR_PAD REFLECT] -> CONV_2D (groups 1; filter
            [O, 1, K, C]) or DEPTHWISE_CONV_2D (filter [1, 1, K, O], depth multiplier O / C), VALID, stride and
            dilation along W, per-channel int8 weights, the bias always written (int32 at s_in * w_scale[o]:
            LiteRT's optimized and XNNPACK depthwise kernels crash without one); relu / relu6 fused; sigmoid / tanh
            as a following LOGISTIC / TANH (the conv to the calibrated pre-activation quantization, the LUT to the
            fixed output quantization)
pad         PAD (zeros) or MIRROR_PAD REFLECT, output quantization = input's
magnitude   [DEQUANTIZE ->] SPLIT (the real and imaginary halves of the channels) -> MUL, MUL -> ADD -> SQRT
            [-> QUANTIZE]: float32 even in an int8 file (LiteRT has no int8 SQRT)
activation  RELU, RELU6 (int8: equal in / out quantization, an exact clamp), LOGISTIC, TANH
context     a state input ctx [1, 1, K] (zeros = the zero point at a stream's start) CONCATENATED before the
            frame; the new state, the last K values, as a STRIDED_SLICE of the output: a state output. Over T
            frames at once (a sequence file) the values before each frame come from the stream [ctx, frames]
            by strided slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgelstm.errors import ImportModelError
from edgelstm.ir.frontend import FRONT_END_FIELDS

from .tflite_builder import (_act_options, _binary_options, _concat_options, _conv_options, _pad_options,
                             _split_options, _strided_slice_options)

FRONT_END_KINDS = tuple(FRONT_END_FIELDS)
_FUSED = {"none": 0, "relu": 1, "relu6": 3}                     # TFLite fused-activation codes
_ACT_OPS = {"relu": "RELU", "relu6": "RELU6", "sigmoid": "LOGISTIC", "tanh": "TANH"}
# XNNPACK refuses a per-channel int8 conv whose requantization scale s_in * w_scale / s_out reaches 256, and
# then LiteRT's default interpreter cannot load the file at all (measured, docs/litert_conv_measurements.md)
XNN_MAX_CONV_SCALE = 256.0
_NONE = _act_options("NONE")


@dataclass(frozen=True)
class Frames:
    """The time axis of the frame tensors ``[1, T, ...]``: T frames, or a resizable T (then T = 1 declared)."""

    T: int
    dynamic: bool

    def shape(self, dims) -> list[int]:
        return [1, self.T, *dims]

    def signature(self, dims):
        return [1, -1, *dims] if self.dynamic else None

    def reshape_to(self, dims) -> np.ndarray:
        return np.array([1, -1 if self.dynamic else self.T, *dims], np.int32)


def _quant_of(t) -> dict:
    return {} if t.scale is None else {"scale": t.scale, "zp": t.zp}


def frame_view(g, fr: Frames, x: int, dims, name: str) -> int:
    """Tensor x ``[1, T, ...]`` viewed as ``[1, T, *dims]``: x itself, or a RESHAPE of it."""
    t = g.tensors[x]
    if t.shape[2:] == list(dims):
        return x
    y = g.tensor(name, fr.shape(dims), t.dtype, signature=fr.signature(dims), **_quant_of(t))
    shape = g.tensor(f"{name}_shape", [2 + len(dims)], np.int32, data=fr.reshape_to(dims))
    g.op("RESHAPE", [x, shape], [y], _NONE)
    return y


class _Layer:
    """Writes one front-end layer: names its tensors l{k}.*, knows its dtype and quantizations."""

    def __init__(self, g, fr: Frames, layer, k: int, q):
        self.g, self.fr, self.layer, self.k, self.q = g, fr, layer, k, q
        self.dtype = np.int8 if q is not None else np.float32

    def act(self, i: int) -> dict:
        """The int8 quantization of the activations entering layer i (empty in a float file)."""
        return {} if self.q is None else {"scale": self.q.act[i][0], "zp": self.q.act[i][1]}

    def frame(self, name: str, dims, quant: dict, dtype=None) -> int:
        dims = list(dims)
        return self.g.tensor(f"l{self.k}.{name}", self.fr.shape(dims), dtype or self.dtype,
                             signature=self.fr.signature(dims), **quant)

    def const(self, name: str, data: np.ndarray, **quant) -> int:
        return self.g.tensor(f"l{self.k}.{name}", list(np.shape(data)), data.dtype, data=data, **quant)

    def view(self, x: int, dims) -> int:
        return frame_view(self.g, self.fr, x, dims, f"l{self.k}.view{len(self.g.tensors)}")

    def pad(self, x: int, length: int, channels: int, left: int, right: int, mode: str) -> int:
        """PAD (zeros: LiteRT fills with the output zero point = the input's) or MIRROR_PAD REFLECT along the
        length of a [1, T, length, channels] view; the quantization is kept (the body is copied raw)."""
        if not (left or right):
            return x
        pads = self.const("pads", np.array([[0, 0], [0, 0], [left, right], [0, 0]], np.int32))
        y = self.frame("padded", [length + left + right, channels], _quant_of(self.g.tensors[x]))
        reflect = mode == "reflect"
        self.g.op("MIRROR_PAD" if reflect else "PAD", [x, pads], [y], _pad_options("reflect" if reflect else None))
        return y


def front_end_layer(g, fr: Frames, layer, k: int, x: int, q) -> tuple[int, list[tuple[int, int]]]:
    """Write front-end layer k on tensor x; returns (output tensor, [(state input, state output)])."""
    w = _Layer(g, fr, layer, k, q)
    if layer.kind == "conv1d":
        return _conv(w, x), []
    if layer.kind == "pad":
        return w.pad(w.view(x, [layer.length, layer.channels]), layer.length, layer.channels, layer.left,
                     layer.right, layer.mode), []
    if layer.kind == "magnitude":
        return _magnitude(w, x), []
    if layer.kind == "activation":
        dims = g.tensors[x].shape[2:]           # element-wise: any view
        y = w.frame("out", dims, w.act(k + 1))
        g.op(_ACT_OPS[layer.activation], [x], [y], _NONE)
        return y, []
    return _context(w, x)


def _conv(w: _Layer, x: int) -> int:
    g, layer, k, q = w.g, w.layer, w.k, w.q
    L, C, O, K = layer.length, layer.in_channels, layer.out_channels, layer.kernel_size
    x = w.pad(w.view(x, [L, C]), L, C, layer.pad_left, layer.pad_right, layer.pad_mode)
    mult = O // C if layer.depthwise else None
    act = layer.activation
    lut = act in ("sigmoid", "tanh")
    if q is None:
        p = layer.directions[0]
        w_quant, b_quant, out_quant = {}, {}, {}
    else:
        p = q.layers[k][0]
        s_in = np.float32(q.act[k][0])
        ws = np.asarray(p["w_scale"], np.float32)
        zeros = np.zeros(O, np.int64)
        w_quant = {"scale": ws, "zp": zeros, "qdim": 3 if mult else 0}
        b_quant = {"scale": (s_in * ws).astype(np.float32), "zp": zeros}
        out_quant = ({"scale": float(p["pre_scale"][0]), "zp": int(p["pre_zp"][0])} if lut else w.act(k + 1))
        _check_xnn_scale(k, s_in, ws, np.float32(out_quant["scale"]))
    wd = np.asarray(p["w"], w.dtype)                                        # (O, K, C // groups)
    if mult:        # TFLite's depthwise filter [1, K_h, K_w, O], quantized along its last axis
        filt = w.const("w", np.ascontiguousarray(wd[:, :, 0].T).reshape(1, 1, K, O), **w_quant)
    else:
        filt = w.const("w", wd.reshape(O, 1, K, C), **w_quant)
    bias = w.const("b", np.asarray(p["b"], np.int32 if q is not None else np.float32), **b_quant)
    y = w.frame("conv", [layer.out_length, O], out_quant)
    # a float depthwise conv with dilation is DEPTHWISE_CONV_2D version 2 (as the converter writes it)
    version = 2 if mult and q is None and layer.dilation > 1 else None
    g.op("DEPTHWISE_CONV_2D" if mult else "CONV_2D", [x, filt, bias], [y],
         _conv_options(_FUSED.get(act, 0), stride=layer.stride, dilation=layer.dilation, depth_multiplier=mult),
         version=version)
    if not lut:
        return y
    out = w.frame("out", [layer.out_length, O], w.act(k + 1))
    g.op(_ACT_OPS[act], [y], [out], _NONE)
    return out


def _check_xnn_scale(k: int, s_in, ws: np.ndarray, s_out) -> None:
    scale = (np.float32(s_in) * ws) / np.float32(s_out)          # XNNPACK's float32 order
    if np.any(scale >= XNN_MAX_CONV_SCALE):
        c = int(np.argmax(scale))
        raise ImportModelError(f"to_tflite: layer {k} (conv1d): channel {c}'s requantization scale s_in * w_scale / "
                               f"s_out = {float(scale[c]):.6g} is >= {XNN_MAX_CONV_SCALE:g}: LiteRT's default "
                               f"(XNNPACK) interpreter cannot load such a conv (measured); recalibrate with a "
                               f"wider output range")


def _magnitude(w: _Layer, x: int) -> int:
    g, layer, k = w.g, w.layer, w.k
    L, C = layer.length, layer.channels
    x = w.view(x, [L, 2 * C])
    f32 = np.float32
    if w.q is not None:         # float32 inside an int8 file: LiteRT has no int8 SQRT
        f = w.frame("float", [L, 2 * C], {}, f32)
        g.op("DEQUANTIZE", [x], [f], _NONE)
        x = f
    a, b = w.frame("re", [L, C], {}, f32), w.frame("im", [L, C], {}, f32)
    g.op("SPLIT", [w.const("channel_axis", np.array(3, np.int32)), x], [a, b], _split_options(2))
    aa, bb, ss, r = (w.frame(n, [L, C], {}, f32) for n in ("re2", "im2", "power", "magnitude"))
    g.op("MUL", [a, a], [aa], _binary_options("Mul"))
    g.op("MUL", [b, b], [bb], _binary_options("Mul"))
    g.op("ADD", [aa, bb], [ss], _binary_options("Add"))
    g.op("SQRT", [ss], [r], _NONE)
    if w.q is None:
        return r
    out = w.frame("out", [L, C], w.act(k + 1))
    g.op("QUANTIZE", [r], [out], _NONE)
    return out


def _context(w: _Layer, x: int) -> tuple[int, list[tuple[int, int]]]:
    """out[t] = [the K stream values before frame t, frame t]; the stream starts with the state ctx (K values)."""
    g, fr, layer, k = w.g, w.fr, w.layer, w.k
    K, F = layer.context, layer.size
    x = w.view(x, [F])
    quant = w.act(k)                         # the runtime requires out = in quantization: CONCATENATION copies
    ctx_in = g.tensor(f"l{k}.ctx", [1, 1, K], w.dtype, **quant)
    if fr.T == 1 and not fr.dynamic:
        before = ctx_in
    else:
        before = _values_before_frames(w, x, ctx_in, K, F, quant)
    out = w.frame("out", [K + F], quant)
    g.op("CONCATENATION", [before, x], [out], _concat_options(2))
    ctx_out = g.tensor(f"l{k}.ctx_next", [1, 1, K], w.dtype, **quant)
    g.op("STRIDED_SLICE", [out, w.const("last_begin", np.array([0, -1, F], np.int32)),
                           w.const("last_end", np.array([1, 0, F + K], np.int32)),
                           w.const("last_strides", np.array([1, 1, 1], np.int32))],
         [ctx_out], _strided_slice_options(end_mask=0b010))           # frame T - 1 to the end
    return out, [(ctx_in, ctx_out)]


def _values_before_frames(w: _Layer, x: int, ctx_in: int, K: int, F: int, quant: dict) -> int:
    """[1, T, K]: for each of T frames the K stream values before it. The stream [ctx, x_0, x_1, ...] as m + T
    frames S (m = ceil(K / F): the context left-padded to whole frames); the values before frame t are the last K
    of S[t], ..., S[t + m - 1] side by side (strided slices S[j : j + T] for j < m, concatenated on channels)."""
    g, fr = w.g, w.fr
    m = -(-K // F)
    head = ctx_in
    if m * F > K:       # filler that no output reads; the zero point keeps it a real 0
        fill = w.const("ctx_fill", np.full((1, 1, m * F - K), quant.get("zp", 0), w.dtype), **quant)
        head = g.tensor(f"l{w.k}.ctx_filled", [1, 1, m * F], w.dtype, **quant)
        g.op("CONCATENATION", [fill, ctx_in], [head], _concat_options(2))
    ctx_frames = g.tensor(f"l{w.k}.ctx_frames", [1, m, F], w.dtype, **quant)
    g.op("RESHAPE", [head, w.const("ctx_frames_shape", np.array([1, m, F], np.int32))], [ctx_frames], _NONE)
    S = g.tensor(f"l{w.k}.stream", [1, m + fr.T, F], w.dtype, signature=[1, -1, F] if fr.dynamic else None,
                 **quant)
    g.op("CONCATENATION", [ctx_frames, x], [S], _concat_options(1))
    parts = []
    for j in range(m):    # S[j : j + T]: the end counted from S's end (m + T frames), so T may be resized
        part = w.frame(f"stream{j}", [F], quant)
        g.op("STRIDED_SLICE", [S, w.const(f"stream{j}_begin", np.array([0, j, 0], np.int32)),
                               w.const(f"stream{j}_end", np.array([1, j - m, F], np.int32)),
                               w.const(f"stream{j}_strides", np.array([1, 1, 1], np.int32))],
             [part], _strided_slice_options())
        parts.append(part)
    before = parts[0]
    if m > 1:
        before = w.frame("before_all", [m * F], quant)
        g.op("CONCATENATION", parts, [before], _concat_options(2))
    if m * F == K:
        return before
    tail = w.frame("before", [K], quant)
    g.op("SLICE", [before, w.const("before_begin", np.array([0, 0, m * F - K], np.int32)),
                   w.const("before_size", np.array([1, -1, K], np.int32))], [tail], _NONE)
    return tail

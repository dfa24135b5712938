"""Single-op .tflite files, written with export/to_tflite.py's builder, run by LiteRT's three op resolvers: the
measuring kit for the int8 ops a conv front end exports to (tests/test_litert_conv_ops.py,
docs/litert_conv_measurements.md). A frame of `length` positions x `channels` is the NHWC tensor
(1, 1, length, channels), as edgelstm/ir/frontend.py lays it out."""
import importlib

import numpy as np

litert = importlib.import_module("ai_edge_litert.interpreter")
tt = importlib.import_module("edgelstm.export.to_tflite")

# short name -> LiteRT's OpResolverType (AUTO and BUILTIN are the same resolver: builtin kernels + XNNPACK)
RESOLVERS = {"ref": "BUILTIN_REF", "opt": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "xnn": "AUTO"}
_FUSED = {"none": 0, "relu": 1, "relu6": 3}


def run(model: bytes, feeds, resolver: str):
    """Invoke `model` once on `feeds` (one array per input) -> (first output as int64 / float64 array,
    whether XNNPACK took the op: a DELEGATE node in the execution plan)."""
    it = litert.Interpreter(model_content=model,
                            experimental_op_resolver_type=getattr(litert.OpResolverType, RESOLVERS[resolver]))
    it.allocate_tensors()
    for d, v in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], np.asarray(v, d["dtype"]).reshape(d["shape"]))
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    delegated = any(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
    return out.astype(np.float64 if out.dtype.kind == "f" else np.int64), delegated


def _q(g, name, shape, s, zp, data=None):
    return g.tensor(name, shape, np.int8, data=data, scale=np.float32(s), zp=int(zp))


def conv_model(*, length, w, b, s_in, zp_in, w_scale, s_out, zp_out, act="none", stride=1, dilation=1,
               depth_multiplier=None):
    """CONV_2D int8 (w (O, K, C)), or DEPTHWISE_CONV_2D int8 when depth_multiplier is given (w (O, K),
    O = C * depth_multiplier, output channel o reads input channel o // depth_multiplier): per-channel weight
    scales w_scale (O,), int32 bias b at s_in * w_scale, VALID padding, over a (1, 1, length, C) input."""
    g = tt._GraphBuilder()
    w = np.asarray(w, np.int8)
    O, K = w.shape[:2]
    w_scale = np.asarray(w_scale, np.float32)
    in_ch = O // depth_multiplier if depth_multiplier else w.shape[2]
    lo = (length - dilation * (K - 1) - 1) // stride + 1
    x = _q(g, "x", [1, 1, length, in_ch], s_in, zp_in)
    zeros = np.zeros(O, np.int64)
    if depth_multiplier:    # TFLite's depthwise filter is (1, H, W, O), quantized along its last axis
        wt = g.tensor("w", [1, 1, K, O], np.int8, data=w.T.reshape(1, 1, K, O), scale=w_scale, zp=zeros, qdim=3)
    else:
        wt = g.tensor("w", [O, 1, K, in_ch], np.int8, data=w.reshape(O, 1, K, in_ch), scale=w_scale, zp=zeros,
                      qdim=0)
    bt = g.tensor("b", [O], np.int32, data=np.asarray(b, np.int32), scale=np.float32(s_in) * w_scale, zp=zeros)
    y = _q(g, "y", [1, 1, lo, O], s_out, zp_out)
    opts = tt._conv_options(_FUSED[act], stride=stride, dilation=dilation, depth_multiplier=depth_multiplier)
    g.op("DEPTHWISE_CONV_2D" if depth_multiplier else "CONV_2D", [x, wt, bt], [y], opts)
    return g.finish([x], [y], True)


def _pad_options(mode):
    def build(b, T):
        if mode is None:
            T.PadOptionsStart(b)
            return T.BuiltinOptions.PadOptions, T.PadOptionsEnd(b)
        T.MirrorPadOptionsStart(b)
        T.MirrorPadOptionsAddMode(b, {"reflect": T.MirrorPadMode.REFLECT, "symmetric": T.MirrorPadMode.SYMMETRIC}[mode])
        return T.BuiltinOptions.MirrorPadOptions, T.MirrorPadOptionsEnd(b)
    return build


def pad_model(*, length, channels, left, right, s_in, zp_in, s_out=None, zp_out=None, mode=None):
    """PAD (mode None: constant, LiteRT's fill) or MIRROR_PAD (mode "reflect" / "symmetric") int8 along the
    length axis of a (1, 1, length, channels) frame; output quantization = input's unless given."""
    g = tt._GraphBuilder()
    x = _q(g, "x", [1, 1, length, channels], s_in, zp_in)
    pads = g.tensor("pads", [4, 2], np.int32, data=np.array([[0, 0], [0, 0], [left, right], [0, 0]], np.int32))
    y = _q(g, "y", [1, 1, length + left + right, channels], s_in if s_out is None else s_out,
           zp_in if zp_out is None else zp_out)
    g.op("PAD" if mode is None else "MIRROR_PAD", [x, pads], [y], _pad_options(mode))
    return g.finish([x], [y], True)


def concat_model(*, sizes, quants, out_quant, axis=3):
    """CONCATENATION int8 of (1, 1, L, sizes[i]) inputs along channels (axis 3), or of (1, 1, sizes[i], C) ones along
    the length (axis 2; C = 1), each input with its own (scale, zp) and the output with out_quant."""
    g = tt._GraphBuilder()
    shape = (lambda n: [1, 1, 4, n]) if axis == 3 else (lambda n: [1, 1, n, 1])
    xs = [_q(g, f"x{i}", shape(n), s, z) for i, (n, (s, z)) in enumerate(zip(sizes, quants))]
    y = _q(g, "y", shape(sum(sizes)), *out_quant)
    g.op("CONCATENATION", xs, [y], tt._concat_options(axis))
    return g.finish(xs, [y], True)


def unary_model(op, *, n, s_in, zp_in, s_out, zp_out):
    """A unary int8 op (RELU, RELU6, LOGISTIC, TANH, QUANTIZE int8 -> int8) over n values."""
    g = tt._GraphBuilder()
    x = _q(g, "x", [1, n], s_in, zp_in)
    y = _q(g, "y", [1, n], s_out, zp_out)
    g.op(op, [x], [y], lambda b, T: (0, 0))
    return g.finish([x], [y], True)


def quantize_model(*, n, s_out, zp_out):
    """QUANTIZE float32 -> int8 over n values."""
    g = tt._GraphBuilder()
    x = g.tensor("x", [1, n], np.float32)
    y = _q(g, "y", [1, n], s_out, zp_out)
    g.op("QUANTIZE", [x], [y], lambda b, T: (0, 0))
    return g.finish([x], [y], True)


def _binary_options(name):
    def build(b, T):
        getattr(T, f"{name}OptionsStart")(b)
        getattr(T, f"{name}OptionsAddFusedActivationFunction")(b, 0)
        return getattr(T.BuiltinOptions, f"{name}Options"), getattr(T, f"{name}OptionsEnd")(b)
    return build


def magnitude_model(*, n, s_in, zp_in, s_out, zp_out):
    """The magnitude layer kept float inside an int8 model: int8 a, b (n values each, one quantization) ->
    DEQUANTIZE -> MUL a*a, MUL b*b -> ADD -> SQRT -> QUANTIZE -> int8."""
    g = tt._GraphBuilder()
    none = lambda b, T: (0, 0)                                          # noqa: E731
    qa, qb = _q(g, "a", [1, n], s_in, zp_in), _q(g, "b", [1, n], s_in, zp_in)
    fa, fb, aa, bb, ss, rt = (g.tensor(nm, [1, n], np.float32) for nm in ("fa", "fb", "aa", "bb", "ss", "rt"))
    y = _q(g, "y", [1, n], s_out, zp_out)
    g.op("DEQUANTIZE", [qa], [fa], none)
    g.op("DEQUANTIZE", [qb], [fb], none)
    g.op("MUL", [fa, fa], [aa], _binary_options("Mul"))
    g.op("MUL", [fb, fb], [bb], _binary_options("Mul"))
    g.op("ADD", [aa, bb], [ss], _binary_options("Add"))
    g.op("SQRT", [ss], [rt], none)
    g.op("QUANTIZE", [rt], [y], none)
    return g.finish([qa, qb], [y], True)


def quantize_multipliers(real):
    """QuantizeMultiplier over an array of positive doubles in [2^-31, 2^31) (naive.ref_quantize_multiplier, which
    the tests compare with, vectorized to search thousands of candidates): q * 2^31 is exact in double, so
    floor(. + 1/2) is round half away. -> (m, shift) int64 arrays."""
    q, shift = np.frexp(np.asarray(real, np.float64))
    m = np.floor(q * 2.0 ** 31 + 0.5).astype(np.int64)
    carry = m == 1 << 31
    return np.where(carry, 1 << 30, m), np.where(carry, shift + 1, shift).astype(np.int64)


def tie_cases(rng, *, s_in, s_out, zp_out, n, differ, ws_range=(1e-3, 2e-2)):
    """n per-channel (weight scale, accumulator) pairs whose outputs differ between two of naive's conv
    requantizations: differ is a pair of resolver names ("ref", "opt", "xnn"; "opt" = ref_mbqm_up on every
    channel), "single" (TFLITE_SINGLE_ROUNDING, ruy's C++ reference) or "fc_ref" (FULLY_CONNECTED's reference:
    rounding in double). Accumulators are searched next to the
    points (k + 1/2) / eff where output k and k + 1 meet."""
    import naive

    def requant(kind, acc, m, s, scale):
        if kind == "ref":
            return naive.vmbqm(acc, m, s)
        if kind == "opt":
            return naive.ref_mbqm_up(acc, m, s)
        if kind == "xnn":
            return naive.ref_requant_xnn(acc, scale)
        if kind == "fc_ref":                    # naive.ref_fc_requant_ref, vectorized over the candidates
            v = acc * eff
            return np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5)).astype(np.int64)
        return (acc * m + (np.int64(1) << (30 - s))) >> (31 - s)      # single rounding, |acc * m| < 2^62

    out_ws, out_acc = [], []
    while len(out_acc) < n:
        ws = rng.uniform(*ws_range, 4000).astype(np.float32)
        m, s = quantize_multipliers(float(np.float32(s_in)) * ws.astype(np.float64) / float(np.float32(s_out)))
        scale = naive.ref_xnn_conv_scale(s_in, ws, s_out)
        eff = float(np.float32(s_in)) * ws.astype(np.float64) / float(np.float32(s_out))
        base = np.floor((rng.integers(-100, 100, ws.size) + 0.5) / eff).astype(np.int64)
        for d in range(-2, 3):
            acc = base + d
            a, b = (np.clip(requant(k, acc, m, s, scale) + zp_out, -128, 127) for k in differ)
            for i in np.nonzero(a != b)[0][:n - len(out_acc)]:
                out_ws.append(ws[i])
                out_acc.append(acc[i])
    return np.array(out_ws, np.float32), np.array(out_acc, np.int64)


def fc_model(*, w, b, s_in, zp_in, w_scale, s_out, zp_out, batch):
    """FULLY_CONNECTED int8 per-channel (w (O, I), int32 bias) over a (batch, I) input."""
    g = tt._GraphBuilder()
    O, I = np.shape(w)
    zeros = np.zeros(O, np.int64)
    w_scale = np.asarray(w_scale, np.float32)
    x = _q(g, "x", [batch, I], s_in, zp_in)
    wt = g.tensor("w", [O, I], np.int8, data=np.asarray(w, np.int8), scale=w_scale, zp=zeros, qdim=0)
    bt = g.tensor("b", [O], np.int32, data=np.asarray(b, np.int32), scale=np.float32(s_in) * w_scale, zp=zeros)
    y = _q(g, "y", [batch, O], s_out, zp_out)
    g.op("FULLY_CONNECTED", [x, wt, bt], [y], tt._fc_act_options(0))
    return g.finish([x], [y], True)

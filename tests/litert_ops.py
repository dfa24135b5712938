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

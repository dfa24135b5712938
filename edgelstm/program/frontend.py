"""prepare() of the front-end layer kinds (edgelstm/ir/frontend.py): Conv1D records (CV_*) and map records (MP_*: pad,
magnitude, activation, context). All float math here, once (LiteRT's Prepare for CONV_2D / DEPTHWISE_CONV_2D,
LOGISTIC / TANH tables, activation clamps); the kernels (kernels/frontend.py) are integer-only for int8 models,
except the magnitude, which LiteRT itself computes in float32 between DEQUANTIZE and QUANTIZE.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import ModelError
from ..quant import ops_prepare as P
from ..quant.multiplier import conv_multipliers, fold_zero_point
from ..quant.params import FIXED_OUTPUT_QUANT
from . import layout as C

# float kernels: activation codes of conv / map records
_F32_ACT = {"none": C.ACT_NONE, "relu": C.ACT_RELU, "relu6": C.ACT_RELU6, "sigmoid": C.ACT_SIGMOID,
            "tanh": C.ACT_TANH}
_CLAMP_ACT = {"none": 0, "relu": 1, "relu6": 3}           # TFLite fused-activation codes (activation_range)
_LUT_FN = {"sigmoid": "logistic", "tanh": "tanh"}


def _f32_bits(v: float) -> int:
    return int(np.array([v], dtype=np.float32).view(np.int32)[0])


def _same_quant(a, b) -> bool:
    return np.float32(a[0]) == np.float32(b[0]) and int(a[1]) == int(b[1])


def _require(k: int, layer, got, want, why: str) -> None:
    if not _same_quant(got, want):
        raise ModelError(f"layer {k} ({layer.kind}): output quantization {tuple(got)} must be {tuple(want)} ({why})")


def frontend_record(b, layer, quant, k: int, state_off: int) -> tuple[list[int], int]:
    """The record of a front-end layer (int8 when ``quant`` is set) and the scratch elements per sequence its
    kernel needs. ``b`` is the program Builder."""
    if layer.kind == "conv1d":
        return _conv_record(b, layer, quant, k)
    rec = [0] * C.MP_LEN
    rec[C.MP_N_IN], rec[C.MP_N_OUT] = layer.input_size, layer.output_size
    act_in = quant.act[k] if quant is not None else None
    act_out = quant.act[k + 1] if quant is not None else None
    if layer.kind == "pad":
        if quant is not None:
            _require(k, layer, act_out, act_in, "padding keeps its input's quantization")
        rec[C.MP_OP] = C.MAP_PAD
        rec[3:9] = [layer.length, layer.channels, layer.left, layer.right, int(layer.mode == "reflect"),
                    act_in[1] if quant is not None else 0]
    elif layer.kind == "context":
        if quant is not None:
            _require(k, layer, act_out, act_in, "the context is a concatenation of its input stream")
        rec[C.MP_OP] = C.MAP_CONTEXT
        rec[3:5] = [layer.context, state_off]
    elif layer.kind == "magnitude":
        rec[C.MP_OP] = C.MAP_MAGNITUDE
        rec[3:5] = [layer.length, layer.channels]
        if quant is not None:
            rec[5:9] = [act_in[1], _f32_bits(act_in[0]), act_out[1], _f32_bits(act_out[0])]
            key = ("magnitude", float(act_in[0]), act_in[1], float(act_out[0]), act_out[1])
            rec[C.MP_TABLE] = b.kernel_table(key, functools.partial(P.magnitude_table, s_in=act_in[0], zp_in=act_in[1],
                                                           s_out=act_out[0], zp_out=act_out[1]))
    else:   # activation
        rec[C.MP_OP] = C.MAP_ACTIVATION
        if quant is None:
            rec[3] = _F32_ACT[layer.activation]
        else:
            rec[3] = b.add_ints(_activation_table(layer, layer.activation, act_in, act_out, k))
    return rec, 1


def _activation_table(layer, act: str, act_in, act_out, k: int) -> np.ndarray:
    """The 256-entry int8 table of an element-wise activation, indexed input + 128: LiteRT's LOGISTIC / TANH
    LUT, or RELU / RELU6 on equal input and output quantization (a clamp at its range)."""
    s_in, zp_in = act_in
    if act in _LUT_FN:
        _require(k, layer, act_out, FIXED_OUTPUT_QUANT[act], f"LiteRT's int8 {act} output")
        return P.lookup_table(_LUT_FN[act], s_in=s_in, zp_in=zp_in, s_out=act_out[0], zp_out=act_out[1])
    _require(k, layer, act_out, act_in, f"{act} keeps its input's quantization")
    lo, hi = P.activation_range(_CLAMP_ACT[act], s_in, zp_in)
    return np.clip(np.arange(-128, 128), lo, hi)


def _conv_record(b, layer, quant, k: int) -> tuple[list[int], int]:
    rec = [0] * C.CV_LEN
    O, K, Ig, Lo = layer.out_channels, layer.kernel_size, layer.in_channels // layer.groups, layer.out_length
    rec[C.CV_LEN_IN:C.CV_REFLECT + 1] = [layer.length, layer.in_channels, O, K, layer.stride, layer.dilation,
                                         layer.pad_left, layer.pad_right, int(layer.pad_mode == "reflect")]
    rec[C.CV_MULT] = O // layer.in_channels if layer.depthwise else 0
    rec[C.CV_LOUT] = Lo
    rec[C.CV_LUT] = -1
    rows = O + (-O) % C.BLOCK_ROWS
    rec[C.CV_ROWS] = rows
    if quant is None:
        w = layer.directions[0]
        w2 = w["w"].reshape(O, K * Ig)
        if layer.depthwise:
            rec[C.CV_W] = b.add_weights(w2)
            rec[C.CV_B] = b.add_weights(w["b"])
        else:    # blocks of 16 output channels, (rows / 16, K * Ig, 16): kernels/fblocks.py; zero rows pad the last
            wp = np.pad(w2, ((0, rows - O), (0, 0)))
            rec[C.CV_W] = b.add_weights(wp.reshape(rows // 16, 16, K * Ig).transpose(0, 2, 1))
            rec[C.CV_B] = b.add_weights(np.pad(w["b"], (0, rows - O)))
        rec[C.CV_ACT] = _F32_ACT[layer.activation]
        return rec, max(Lo * K * Ig, Lo * rows)
    q = quant.layers[k][0]
    (s_in, zp_in), (s_out, zp_out) = quant.act[k], quant.act[k + 1]
    w2 = q["w"].reshape(O, K * Ig)
    if layer.depthwise:
        rec[C.CV_W] = b.add_weights(w2)
    else:     # a dot-loop matrix in whole pairwise blocks: zero rows up to a multiple of BLOCK_ROWS
        rec[C.CV_W] = b.add_weights(np.pad(w2, ((0, rows - O), (0, 0))), pad_columns=True)
    rec[C.CV_B] = b.add_ints(fold_zero_point(q["b"], w2, zp_in))  # zero padding holds zp_in: adds 0 as in LiteRT
    act = layer.activation
    if act in _LUT_FN:                   # CONV_2D to the calibrated pre-activation quantization, then the LUT
        pre = (float(q["pre_scale"][0]), int(q["pre_zp"][0]))
        rec[C.CV_LUT] = b.add_ints(_activation_table(layer, act, pre, (s_out, zp_out), k))
        (s_conv, zp_conv), (lo, hi) = pre, (-128, 127)
    else:
        s_conv, zp_conv = s_out, zp_out
        lo, hi = P.activation_range(_CLAMP_ACT[act], s_out, zp_out)
    rec[C.CV_M] = b.add_ints(conv_multipliers(q["w_scale"], s_in, s_conv))
    rec[C.CV_ZP_IN], rec[C.CV_ZP_OUT], rec[C.CV_LO], rec[C.CV_HI] = zp_in, zp_conv, lo, hi
    rec[C.CV_ACT] = _F32_ACT[act]
    cp = K * Ig + (-K * Ig) % C.PAD
    return rec, max(Lo * cp, Lo * rows)

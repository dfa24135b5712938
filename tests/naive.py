"""Slow, obviously-correct numpy references; never imported by the package."""
import math

import numpy as np


# ---- float64 references ----
# Written from the textbook equations, one sample and one step at a time, so they are easy to check by eye.
# Gate rows are in the IR's canonical orders (LSTM i,f,g,o; GRU r,z,n; peephole i,f,o).


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


def _lstm_step64(p, x, h, c, *, H):
    """PyTorch nn.LSTM (incl. proj_size) plus TFLite peepholes: i, f see c_{t-1}; o sees c_t."""
    pre = p["w_x"] @ x + p["w_h"] @ h + p["b"]
    pi, pf, pg, po = pre[0:H], pre[H:2 * H], pre[2 * H:3 * H], pre[3 * H:4 * H]
    if "w_peep" in p:
        pi = pi + p["w_peep"][0] * c
        pf = pf + p["w_peep"][1] * c
    i, f, g = _sigmoid64(pi), _sigmoid64(pf), np.tanh(pg)
    c_new = f * c + i * g
    if p.get("cell_clip"):                       # TFLite: clip the cell state after every update
        c_new = np.clip(c_new, -p["cell_clip"], p["cell_clip"])
    if "w_peep" in p:
        po = po + p["w_peep"][2] * c_new
    o = _sigmoid64(po)
    h_new = o * np.tanh(c_new)
    if "w_proj" in p:
        h_new = p["w_proj"] @ h_new + p["b_proj"]
        if p.get("proj_clip"):                   # TFLite: clip the projection output
            h_new = np.clip(h_new, -p["proj_clip"], p["proj_clip"])
    return h_new, c_new


def _gru_step64(p, x, h, *, H, reset_after):
    """PyTorch nn.GRU (reset_after=True) or Keras reset_after=False; h' = (1 - z) * n + z * h."""
    gx = p["w_x"] @ x + p["b_x"]
    r = _sigmoid64(gx[0:H] + p["w_h"][0:H] @ h + p["b_h"][0:H])
    z = _sigmoid64(gx[H:2 * H] + p["w_h"][H:2 * H] @ h + p["b_h"][H:2 * H])
    if reset_after:
        n = np.tanh(gx[2 * H:] + r * (p["w_h"][2 * H:] @ h + p["b_h"][2 * H:]))
    else:
        n = np.tanh(gx[2 * H:] + p["w_h"][2 * H:] @ (r * h) + p["b_h"][2 * H:])
    return (1.0 - z) * n + z * h


def _rnn_step64(p, x, h, *, nonlinearity):
    pre = p["w_x"] @ x + p["w_h"] @ h + p["b"]
    return np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0.0)


def _dense64(p, x, *, activation):
    y = p["w"] @ x + p["b"]
    if activation == "sigmoid":
        return _sigmoid64(y)
    if activation == "softmax":
        e = np.exp(y - y.max())
        return e / e.sum()
    if activation == "tanh":
        return np.tanh(y)
    if activation == "relu":
        return np.maximum(y, 0.0)
    return y


def _zero_state64(layer, B):
    if layer.kind == "lstm":
        return {"h": np.zeros((B, layer.recurrent_size)), "c": np.zeros((B, layer.hidden_size))}
    return {"h": np.zeros((B, layer.hidden_size))}


def ref_forward_f64(spec, X, *, lengths=None, initial_state=None):
    """Float64 forward of a whole ``edgelstm.ir.model.ModelSpec`` over ``X`` (B, T, F).

    Returns ``(Y, final_state)``: Y (B, T, output_size) with zeros past each sequence's length;
    ``final_state[layer][direction]`` = {"h", "c"} (LSTM), {"h"} (GRU/RNN), {} (Dense: one empty dict).
    The backward direction runs over each sequence's own valid steps in reverse (PyTorch packed
    sequences); final states are taken at each sequence's own length.  ``initial_state``: same structure.
    """
    X = np.asarray(X, dtype=np.float64)
    B, T, _ = X.shape
    lengths = np.full(B, T, dtype=int) if lengths is None else np.asarray(lengths, dtype=int)
    seq = X
    final_state = []
    for k, layer in enumerate(spec.layers):
        params = [{n: np.asarray(a, dtype=np.float64) for n, a in d.items()} for d in layer.directions]
        if layer.kind == "lstm":
            for p in params:
                p.update(cell_clip=layer.cell_clip, proj_clip=layer.proj_clip)
        if layer.kind == "dense":
            out = np.zeros((B, T, layer.output_size))
            for b in range(B):
                for t in range(lengths[b]):
                    out[b, t] = _dense64(params[0], seq[b, t], activation=layer.activation)
            seq = out
            final_state.append([{}])
            continue
        if layer.kind in FRONT_END_KINDS:
            seq, fin = _front_end_seq(layer, seq, lengths, initial_state[k][0] if initial_state else None,
                                      lambda x, ctx: ref_front_end_f64(layer, params[0], x, ctx), np.float64)
            final_state.append([fin])
            continue
        n_dir = 2 if layer.bidirectional else 1
        width = layer.recurrent_size
        out = np.zeros((B, T, n_dir * width))
        layer_final = []
        for d in range(n_dir):
            if initial_state is None:
                start = _zero_state64(layer, B)
            else:
                start = {n: np.asarray(a, dtype=np.float64) for n, a in initial_state[k][d].items()}
            fin = {n: a.copy() for n, a in start.items()}
            for b in range(B):
                h = start["h"][b].copy()
                c = start["c"][b].copy() if layer.kind == "lstm" else None
                backward = d == 1 or getattr(layer, "reverse", False)
                steps = range(lengths[b] - 1, -1, -1) if backward else range(lengths[b])
                for t in steps:
                    x = seq[b, t]
                    if layer.kind == "lstm":
                        h, c = _lstm_step64(params[d], x, h, c, H=layer.hidden_size)
                    elif layer.kind == "gru":
                        h = _gru_step64(params[d], x, h, H=layer.hidden_size, reset_after=layer.reset_after)
                    else:
                        h = _rnn_step64(params[d], x, h, nonlinearity=layer.nonlinearity)
                    out[b, t, d * width:(d + 1) * width] = h
                fin["h"][b] = h
                if layer.kind == "lstm":
                    fin["c"][b] = c
            layer_final.append(fin)
        seq = out
        final_state.append(layer_final)
    return seq, final_state


# ---- fixed-point references (gemmlowp / TFLite) ----
# Scalar, pure-Python-int references (no numpy), written independently of edgelstm/kernels/fixedpoint.py
# and the vectorized edgelstm/quant/tables.py. The int32 primitives are stated by their mathematical
# definitions; the int16 logistic/tanh are a line-by-line port of gemmlowp fixedpoint/fixedpoint.h in
# which every C-level operation is followed by the int16 (or int32) truncation C would apply.
from fractions import Fraction as _Fraction
from functools import lru_cache as _lru_cache

_FX_I32_MIN, _FX_I32_MAX = -(1 << 31), (1 << 31) - 1
_FX_I16_MIN, _FX_I16_MAX = -(1 << 15), (1 << 15) - 1


def _fx_wrap(v, bits):
    """Two's-complement truncation of a Python int to `bits` bits (static_cast to a narrower int)."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _fx_i16(v):
    return _fx_wrap(v, 16)


def _fx_i32(v):
    return _fx_wrap(v, 32)


def _fx_cdiv(n, d):
    """C/C++ integer division: truncates toward zero."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def _fx_round_half_away(fr):
    """Nearest integer to a Fraction, ties away from zero."""
    mag = abs(fr)
    q = mag.numerator // mag.denominator
    if mag - q >= _Fraction(1, 2):
        q += 1
    return q if fr >= 0 else -q


def ref_srdhm32(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul<int32_t>, literal: (a*b + nudge) / 2^31 in C
    (truncating) with nudge = +2^30 / 1 - 2^30; INT32_MIN * INT32_MIN -> INT32_MAX."""
    a, b = _fx_i32(a), _fx_i32(b)
    if a == b == _FX_I32_MIN:
        return _FX_I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _fx_i32(_fx_cdiv(ab + nudge, 1 << 31))


def ref_rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT, by its definition: x / 2^e rounded to nearest, ties away from zero
    (0 <= e <= 31; x an int32)."""
    assert 0 <= e <= 31
    return _fx_round_half_away(_Fraction(_fx_i32(x), 1 << e))


def ref_mbqm(x, m, s):
    """TFLite MultiplyByQuantizedMultiplier(int32 x, int32 m, int shift), double-rounding build."""
    left = s if s > 0 else 0
    right = 0 if s > 0 else -s
    return ref_rdbpot(ref_srdhm32(_fx_i32(_fx_i32(x) * (1 << left)), m), right)


def ref_quantize_multiplier(real):
    """TFLite QuantizeMultiplier(double) in exact rational arithmetic: real = q * 2^shift with
    q in [1/2, 1), q_fixed = round-half-away(q * 2^31), 2^31 -> (2^30, shift + 1), shift < -31 -> (0, 0)."""
    f = _Fraction(float(real))                       # exact value of the double
    if f < 0:
        raise ValueError("negative multiplier")
    if f == 0:
        return 0, 0
    shift = f.numerator.bit_length() - f.denominator.bit_length()
    while f >= _Fraction(2) ** shift:
        shift += 1
    while f < _Fraction(2) ** shift / 2:
        shift -= 1
    q_fixed = _fx_round_half_away(f / _Fraction(2) ** shift * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


# -- gemmlowp Part 1: raw primitives, tIntegerType = int16_t (int32_t where noted) --
def _g_add(a, b):          # Add: a + b (int promotion), truncated to int16 on return
    return _fx_i16(a + b)


def _g_sub(a, b):
    return _fx_i16(a - b)


def _g_neg(a):             # Neg: -a; -(-32768) truncates back to -32768
    return _fx_i16(-a)


def _g_and(a, b):
    return a & b


def _g_xor(a, b):
    return a ^ b


def _g_not(a):
    return _fx_i16(~a)


def _g_shl(a, offset):     # ShiftLeft: a * (1 << offset), truncated to int16
    return _fx_i16(a * (1 << offset))


def _g_shr(a, offset):     # ShiftRight: arithmetic >>
    return a >> offset


def _g_select(if_mask, then_val, else_val):
    return _g_xor(_g_and(if_mask, then_val), _g_and(_g_not(if_mask), else_val))


def _g_mask_nonzero(a):
    return _g_not(0) if a else 0


def _g_mask_zero(a):
    return _g_mask_nonzero(not a)


def _g_mask_gt(a, b):
    return _g_mask_nonzero(a > b)


def _g_mask_lt(a, b):
    return _g_mask_nonzero(a < b)


def _g_rounding_half_sum(a, b):        # RoundingHalfSum<int16_t>
    s = a + b
    sign = 1 if s >= 0 else -1
    return _fx_i16(_fx_cdiv(s + sign, 2))


def _g_saturating_add(a, b):           # SaturatingAdd<int16_t>
    return min(_FX_I16_MAX, max(_FX_I16_MIN, a + b))


def _g_srdhm(a, b):                    # SaturatingRoundingDoublingHighMul<int16_t>
    overflow = a == b and a == _FX_I16_MIN
    ab_32 = _fx_i32(a * b)
    nudge = (1 << 14) if ab_32 >= 0 else (1 - (1 << 14))
    ab_x2_high16 = _fx_i16(_fx_cdiv(ab_32 + nudge, 1 << 15))
    return _FX_I16_MAX if overflow else ab_x2_high16


def _g_rdbpot(x, exponent, wrap=_fx_i16):   # RoundingDivideByPOT<IntegerType>, literal
    mask = wrap((1 << exponent) - 1)
    zero, one = 0, 1
    remainder = _g_and(x, mask)
    threshold = wrap(_g_shr(mask, 1) + _g_and(_g_mask_nonzero(x < zero), one))
    return wrap(_g_shr(x, exponent) + _g_and(_g_mask_nonzero(remainder > threshold), one))


def _g_srmul_pot(x, exponent):        # SaturatingRoundingMultiplyByPOT<Exponent>(int16_t)
    if exponent == 0:
        return x
    if exponent < 0:
        return _g_rdbpot(x, -exponent)
    threshold = (1 << (16 - 1 - exponent)) - 1
    positive_mask = _g_mask_gt(x, _fx_i16(threshold))
    negative_mask = _g_mask_lt(x, _fx_i16(-threshold))
    result = _g_shl(x, exponent)
    result = _g_select(positive_mask, _FX_I16_MAX, result)
    result = _g_select(negative_mask, _FX_I16_MIN, result)
    return result


# -- gemmlowp Part 2/3: FixedPoint<int16_t, K> helpers (raw values; K tracked by the caller) --
def _g_frac_bits(k):
    return 16 - 1 - k


def _g_constant_pot(k, exponent):     # FixedPoint<int16, K>::ConstantPOT<Exponent>
    return _fx_i16(1 << (_g_frac_bits(k) + exponent))


def _g_one(k):                        # FixedPoint<int16, K>::One()
    return _FX_I16_MAX if k == 0 else _fx_i16(1 << _g_frac_bits(k))


def _g_rescale(x, k_src, k_dst):     # Rescale<K_dst>(FixedPoint<int16, K_src>)
    return _g_srmul_pot(x, k_src - k_dst)


@_lru_cache(maxsize=None)
def _g_const(raw32):                  # GEMMLOWP_CHECKED_FIXEDPOINT_CONSTANT -> RescaleConstantInitializer
    return _fx_i16(_g_rdbpot(raw32, 32 - 16, wrap=_fx_i32))


# -- gemmlowp Part 4: math functions --
@_lru_cache(maxsize=None)
def _g_exp_on_interval_between_negative_one_quarter_and_0_excl(a):   # F0 -> F0
    constant_term = _g_const(1895147668)
    constant_1_over_3 = _g_const(715827883)
    x = _g_add(a, _g_constant_pot(0, -3))
    x2 = _g_srdhm(x, x)
    x3 = _g_srdhm(x2, x)
    x4 = _g_srdhm(x2, x2)
    x4_over_4 = _g_srmul_pot(x4, -2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = _g_srmul_pot(
        _g_add(_g_srdhm(_g_add(x4_over_4, x3), constant_1_over_3), x2), -1)
    return _g_saturating_add(
        constant_term, _g_srdhm(constant_term, _g_add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)))


def _g_exp_on_negative_values(a, k):                                 # FixedPoint<int16, K> -> F0
    k_frac = _g_frac_bits(k)
    k_one_quarter = _g_constant_pot(k, -2)
    mask = _g_sub(k_one_quarter, 1)
    a_mod_quarter_minus_one_quarter = _g_sub(_g_and(a, mask), k_one_quarter)
    result = _g_exp_on_interval_between_negative_one_quarter_and_0_excl(
        _g_rescale(a_mod_quarter_minus_one_quarter, k, 0))
    remainder = _g_sub(a_mod_quarter_minus_one_quarter, a)
    for exponent, fixed_point_multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                                             (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        if k > exponent:
            k_multiplier = _g_const(fixed_point_multiplier)
            k_shift_amount = k_frac + exponent if k > exponent else 0
            result = _g_select(_g_mask_nonzero(_g_and(remainder, _fx_i16(1 << k_shift_amount))),
                               _g_srdhm(result, k_multiplier), result)
    if k > 5:
        clamp_b = 36 - k
        clamp = _g_const(-(1 << clamp_b))
        result = _g_select(_g_mask_lt(a, clamp), 0, result)
    result = _g_select(_g_mask_zero(a), _g_one(0), result)
    return result


def _g_newton_reciprocal_half(half_denominator):   # shared N-R loop body, result in F2
    constant_48_over_17 = _g_const(1515870810)
    constant_neg_32_over_17 = _g_const(-1010580540)
    x = _g_add(constant_48_over_17, _g_srdhm(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = _g_srdhm(half_denominator, x)
        one_minus_half_denominator_times_x = _g_sub(_g_one(2), half_denominator_times_x)
        x = _g_add(x, _g_rescale(_g_srdhm(x, one_minus_half_denominator_times_x), 4, 2))
    return x


@_lru_cache(maxsize=None)
def _g_one_over_one_plus_x_for_x_in_0_1(a):                # F0 -> F0
    x = _g_newton_reciprocal_half(_g_rounding_half_sum(a, _g_one(0)))
    return _g_rescale(x, 1, 0)                               # Rescale<0>(ExactMulByPot<-1>(x: F2))


@_lru_cache(maxsize=None)
def _g_one_minus_x_over_one_plus_x_for_x_in_0_1(a):        # F0 -> F0
    x = _g_newton_reciprocal_half(_g_rounding_half_sum(a, _g_one(0)))
    return _g_rescale(_g_sub(x, _g_one(2)), 2, 0)


def ref_gemmlowp_logistic_int16(raw, integer_bits=3):
    """gemmlowp::logistic(FixedPoint<int16_t, integer_bits>::FromRaw(raw)).raw() (Q0.15)."""
    a = _fx_i16(raw)
    mask_if_positive = _g_mask_gt(a, 0)
    mask_if_zero = _g_mask_zero(a)
    abs_input = _g_select(mask_if_positive, a, _g_neg(a))
    result_if_positive = _g_one_over_one_plus_x_for_x_in_0_1(           # logistic_on_positive_values
        _g_exp_on_negative_values(_g_neg(abs_input), integer_bits))
    result_if_negative = _g_sub(_g_one(0), result_if_positive)
    one_half = _g_const(1 << 30)
    return _g_select(mask_if_zero, one_half,
                     _g_select(mask_if_positive, result_if_positive, result_if_negative))


def ref_gemmlowp_tanh_int16(raw, integer_bits):
    """gemmlowp::tanh(FixedPoint<int16_t, integer_bits>::FromRaw(raw)).raw() (Q0.15)."""
    a = _fx_i16(raw)
    mask_if_negative = _g_mask_lt(a, 0)
    mask_if_zero = _g_mask_zero(a)
    n = _g_select(mask_if_negative, a, _g_neg(a))
    # neg_tanh_on_negative_values(n):
    #   one_minus_x_over_one_plus_x(exp_on_negative_values(ExactMulByPot<1>(n)))
    t = _g_one_minus_x_over_one_plus_x_for_x_in_0_1(_g_exp_on_negative_values(n, integer_bits + 1))
    return _g_select(mask_if_zero, 0, _g_select(mask_if_negative, _g_neg(t), t))


# ---- int8 references (NUMERICS.md) ----
# An independent, slow integer model of the int8 runtime, written line by line from NUMERICS.md (not from
# edgelstm/program/ or edgelstm/kernels/*). All integer arithmetic runs in numpy int64 (no intermediate
# can overflow: the largest product is INT32_MIN * INT32_MIN = 2^62), with every int32 wrap and int8/int16
# saturation written out explicitly. Arrays carry a leading batch axis; recurrences loop over time in
# Python and are vectorized over the batch (and over the rows of a matrix).
#
# The Q0.15 activation tables are taken from edgelstm.quant.tables (sigmoid_table / tanh_table(k), indexed
# raw + 32768): those tables are checked exhaustively, all 65,536 inputs of every table, against the scalar
# gemmlowp port above (ref_gemmlowp_logistic_int16 / ref_gemmlowp_tanh_int16) in tests/test_fixedpoint.py.

_I8_MIN, _I8_MAX = -128, 127


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def vwrap32(x):
    """wrap32: two's-complement wrap of int64 values to the int32 range."""
    v = _i64(x) & 0xFFFFFFFF
    return np.where(v >= (1 << 31), v - (1 << 32), v)


def vsat8(x):
    return np.clip(_i64(x), _I8_MIN, _I8_MAX)


def vsat16(x):
    return np.clip(_i64(x), _FX_I16_MIN, _FX_I16_MAX)


def vtrunc16(x):
    """int16(...) cast: two's-complement truncation (TFLite's CwiseMul stores an int32 into an int16)."""
    return _i64(x).astype(np.int16).astype(np.int64)


def vsrdhm(a, b):
    """SRDHM(a, b) for int32 a, b: INT32_MIN*INT32_MIN -> INT32_MAX, else (a*b + nudge) / 2^31 with C
    truncating division, nudge = 2^30 if a*b >= 0 else 1 - 2^30."""
    a, b = vwrap32(a), vwrap32(b)
    ab = a * b
    v = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(v >= 0, v >> 31, -((-v) >> 31))                 # C division truncates toward zero
    return np.where((a == _FX_I32_MIN) & (b == _FX_I32_MIN), _FX_I32_MAX, q)


def vrdbpot(x, e):
    """RDBPOT(x, e) = (x >> e) + (remainder > threshold), mask = 2^e - 1, remainder = x & mask,
    threshold = (mask >> 1) + (x < 0).  e may be an array (broadcast)."""
    x, e = _i64(x), _i64(e)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def vmbqm(x, m, s):
    """MBQM(x, m, s) = RDBPOT(SRDHM(wrap32(x << max(s, 0)), m), max(-s, 0)) (double rounding)."""
    s = _i64(s)
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    return vrdbpot(vsrdhm(vwrap32(_i64(x) * (np.int64(1) << left)), m), right)


def _round_half_away64(v):
    v = np.asarray(v, dtype=np.float64)
    return np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))


def ref_eff_scale(w_scale, in_scale, out_scale):
    """eff = float32(float32(w_scale) * float32(in_scale)) / float32(out_scale), all in float32."""
    f = np.float32
    return f(f(f(w_scale) * f(in_scale)) / f(out_scale))


def ref_qm(real32):
    """QuantizeMultiplier of a float32 value widened to double -> (m, shift) Python ints."""
    return ref_quantize_multiplier(float(np.float32(real32)))


def ref_fold(bias, w, zp):
    """bias_eff[r] = wrap32(bias[r] - zp * sum_c W[r, c]) (bias None = 0)."""
    w = _i64(w)
    b = np.zeros(w.shape[0], np.int64) if bias is None else _i64(bias)
    return vwrap32(b - int(zp) * w.sum(axis=1))


def _block_rows(pairs, n):
    """Per-gate-block (m, s) pairs -> per-row arrays m (rows,), s (rows,), n rows per block."""
    return (np.repeat(_i64([p[0] for p in pairs]), n), np.repeat(_i64([p[1] for p in pairs]), n))


_Q12 = 2.0 ** -12
_Q15 = 2.0 ** -15


def ref_quantized_clip(clip, scale, limit):
    """static_cast<intN>(std::min(std::max(clip / scale, -limit - 1.0f), (float)limit)) in float32."""
    if clip <= 0:
        return 0
    v = np.float32(np.float32(clip) / np.float32(scale))
    v = min(max(float(v), -limit - 1.0), float(limit))
    return int(np.trunc(v))


def ref_mbqm_single(x, m, shift):
    """TFLite's single-rounding MultiplyByQuantizedMultiplier (TFLITE_SINGLE_ROUNDING), in Python ints:
    (x * m + 2^(30 - shift)) >> (31 - shift), arithmetic shift."""
    total = 31 - int(shift)
    x = np.asarray(x, dtype=object)
    return np.asarray((x * int(m) + (1 << (total - 1))) >> total, dtype=np.int64)


def ref_prepare(spec, quant):
    """Every derived integer of NUMERICS.md's prepare(), per layer and direction (plain numpy int64).

    Returns a list with one dict per layer: kind, the layer, s_in/zp_in (act[k]), s_out/zp_out (act[k+1]),
    and ``dirs`` (one dict per direction; Dense has one)."""
    f32 = np.float32
    act = [(float(f32(s)), int(z)) for s, z in quant.act]
    out = []
    for k, layer in enumerate(spec.layers):
        s_in, zp_in = act[k]
        s_out, zp_out = act[k + 1]
        lp = {"kind": layer.kind, "layer": layer, "s_in": s_in, "zp_in": zp_in, "s_out": s_out,
              "zp_out": zp_out, "dirs": []}
        for q in quant.layers[k]:
            p = {}
            if layer.kind == "lstm":
                H = layer.hidden_size
                e = int(q["cell_exp"][0])
                p.update(H=H, e=e, w_x=_i64(q["w_x"]), w_h=_i64(q["w_h"]))
                p["m_x"], p["s_x"] = _block_rows([ref_qm(ref_eff_scale(q["w_x_scale"][g], s_in, _Q12))
                                                  for g in range(4)], H)
                p["m_h"], p["s_h"] = _block_rows([ref_qm(ref_eff_scale(q["w_h_scale"][g], s_out, _Q12))
                                                  for g in range(4)], H)
                p["bx"] = ref_fold(q["b"], q["w_x"], zp_in)
                p["bh"] = ref_fold(None, q["w_h"], zp_out)
                if layer.peephole:
                    p["w_peep"] = _i64(q["w_peep"])
                    p["m_p"] = [ref_qm(ref_eff_scale(2.0 ** e, q["w_peep_scale"][j], _Q12)) for j in range(3)]
                if layer.proj_size:
                    s_hid, zp_hid = float(f32(q["hidden_scale"][0])), int(q["hidden_zp"][0])
                else:
                    s_hid, zp_hid = s_out, zp_out
                p["zp_hid"] = zp_hid
                p["m_hid"] = ref_qm(f32(f32(f32(_Q15) / f32(s_hid)) * f32(_Q15)))
                if layer.proj_size:
                    p["w_proj"] = _i64(q["w_proj"])
                    p["m_proj"] = ref_qm(ref_eff_scale(q["w_proj_scale"][0], s_hid, s_out))
                    p["bp"] = ref_fold(q["b_proj"], q["w_proj"], zp_hid)
                # LiteRT Prepare: float32 clip / float32 scale, clamped, then truncated by the int cast
                p["cell_clip_q"] = ref_quantized_clip(layer.cell_clip, 2.0 ** e, 32767)
                p["proj_clip_q"] = ref_quantized_clip(layer.proj_clip, s_out, 127) if layer.proj_size else 0
            elif layer.kind in ("gru", "rnn"):
                p.update(ref_cell16_prepare(layer, q, s_in, zp_in, s_out, zp_out))
            elif layer.kind in FRONT_END_KINDS:
                p.update(ref_front_end_prepare(layer, q, s_in, zp_in, s_out, zp_out))
            elif layer.kind == "dense":
                pre_scale, pre_zp = float(f32(q["pre_scale"][0])), int(q["pre_zp"][0])
                p.update(w=_i64(q["w"]), activation=layer.activation, pre_scale=pre_scale, pre_zp=pre_zp)
                # LiteRT FULLY_CONNECTED Prepare: double effective scale per output channel
                p["m_fc"] = [ref_quantize_multiplier(float(f32(s_in)) * float(f32(ws)) / float(f32(pre_scale)))
                             for ws in q["w_scale"]]
                p["bd"] = ref_fold(q["b"], q["w"], zp_in)
                if layer.activation == "sigmoid":
                    p["table"] = ref_dense_table(_sigmoid64, pre_scale, pre_zp, 1.0 / 256.0, -128)
                elif layer.activation == "tanh":
                    p["table"] = ref_dense_table(np.tanh, pre_scale, pre_zp, 1.0 / 128.0, 0)
                elif layer.activation == "softmax":
                    p["E"] = ref_softmax_exp_table(pre_scale)
            else:
                raise ValueError(layer.kind)
            lp["dirs"].append(p)
        out.append(lp)
    return out


# -- stages --

def ref_quantize_input(X, s_in, zp_in):
    """q = sat8(round_half_away(float32(x) / float32(s_in)) + zp_in)."""
    q = np.asarray(X, dtype=np.float32) / np.float32(s_in)            # float32 division
    q = np.clip(q.astype(np.float64), -1e9, 1e9)                       # exact widening; saturates anyway
    return vsat8(_round_half_away64(q).astype(np.int64) + int(zp_in))


def ref_dequantize_output(q, s_out, zp_out):
    """y = float32(q - zp_out) * float32(s_out)."""
    return (_i64(q) - int(zp_out)).astype(np.float32) * np.float32(s_out)


def ref_matmul_into_gate(gate, W, bias_eff, v, m, s):
    """gate[r] = sat16(MBQM(wrap32(bias_eff[r] + sum_c W[r,c] * v[c]), m[r], s[r]) + gate[r]).
    gate (B, rows), W (rows, cols), v (B, cols); m, s scalars or (rows,)."""
    acc = vwrap32(_i64(bias_eff) + _i64(v) @ _i64(W).T)
    return vsat16(vmbqm(acc, m, s) + _i64(gate))


def ref_peephole_into_gate(gate, w_peep_row, c, m, s):
    """gate[r] = sat16(MBQM(w_peep[j, r] * c[r], m_p[j]) + gate[r])."""
    return vsat16(vmbqm(_i64(w_peep_row) * _i64(c), m, s) + _i64(gate))


def ref_sigmoid16(x):
    from edgelstm.quant.tables import sigmoid_table
    return sigmoid_table().astype(np.int64)[_i64(x) + 32768]


def ref_tanh16(x, integer_bits):
    from edgelstm.quant.tables import tanh_table
    return tanh_table(integer_bits).astype(np.int64)[_i64(x) + 32768]


def ref_lstm_cell_update(i, f, g, c, cell_exp):
    """c = sat16(int16(RDBPOT(f * c, 15)) + int16(RDBPOT(i * g, 30 + e))); i, f, g in Q0.15."""
    fc = vtrunc16(vrdbpot(_i64(f) * _i64(c), 15))
    ig = vtrunc16(vrdbpot(_i64(i) * _i64(g), 30 + int(cell_exp)))
    return vsat16(fc + ig)


def ref_lstm_hidden(o, c, cell_exp, m_hid, zp_hid):
    """hid8[r] = sat8(MBQM(o[r] * tanh_table(15 + e)[c[r]], m_hid) + zp_hid)."""
    return vsat8(vmbqm(_i64(o) * ref_tanh16(c, 15 + int(cell_exp)), *m_hid) + int(zp_hid))



def ref_lstm_step(p, lp, x, h, c):
    """One LSTM step (NUMERICS.md steps 1-8). x (B, I) int8 values, h (B, R), c (B, H) -> (h, c)."""
    H, e = p["H"], p["e"]
    gates = np.zeros((x.shape[0], 4 * H), np.int64)
    gates = ref_matmul_into_gate(gates, p["w_x"], p["bx"], x, p["m_x"], p["s_x"])
    gates = ref_matmul_into_gate(gates, p["w_h"], p["bh"], h, p["m_h"], p["s_h"])
    gi, gf, gg, go = (gates[:, j * H:(j + 1) * H] for j in range(4))
    if "w_peep" in p:
        gi = ref_peephole_into_gate(gi, p["w_peep"][0], c, *p["m_p"][0])
        gf = ref_peephole_into_gate(gf, p["w_peep"][1], c, *p["m_p"][1])
    i, f, g = ref_sigmoid16(gi), ref_sigmoid16(gf), ref_tanh16(gg, 3)
    c = ref_lstm_cell_update(i, f, g, c, e)
    if p["cell_clip_q"]:
        c = np.clip(c, -p["cell_clip_q"], p["cell_clip_q"])
    if "w_peep" in p:
        go = ref_peephole_into_gate(go, p["w_peep"][2], c, *p["m_p"][2])
    o = ref_sigmoid16(go)
    hid8 = ref_lstm_hidden(o, c, e, p["m_hid"], p["zp_hid"])
    if "w_proj" in p:
        acc = vwrap32(p["bp"] + hid8 @ p["w_proj"].T)
        h = vsat8(vmbqm(acc, *p["m_proj"]) + lp["zp_out"])
        if p["proj_clip_q"]:
            h = np.clip(h, -p["proj_clip_q"], p["proj_clip_q"])
    else:
        h = hid8
    return h, c


# -- int8 GRU / RNN: int16 graphs of TFLite 16x8 builtin ops (docs/contract.md, "GRU and vanilla RNN"), vectorized
# over the batch; independent of edgelstm/program/cellgraph.py and the op kernels

def ref_cell16_prepare(layer, q, s_in, zp_in, s_out, zp_out):
    """Per direction: int64 weights, folded x biases, (m16, right shift) per conv row, ADD/MUL/QUANTIZE
    multipliers and the LOGISTIC/TANH (multiplier, shift), from the float32 scales in the contract."""
    f = lambda v: float(np.float32(v))                               # noqa: E731
    H = layer.hidden_size
    sc = [f(v) for v in q["graph_scale"]]
    relu = layer.kind == "rnn" and layer.nonlinearity == "relu"
    s_h = sc[2] if relu else _Q15

    def conv(w_scale, s_x, s_o):            # LiteRT 16x8 conv: QM of the double ratio, multiplier cut to 16 bits
        out = []
        for ws in w_scale:
            m, sh = ref_quantize_multiplier(f(s_x) * f(ws) / f(s_o))
            out.append(((m + 2 ** 15) // 2 ** 16 if m < 0x7FFF0000 else 0x7FFF, 15 - sh))
        return _i64([v[0] for v in out]), _i64([v[1] for v in out])

    def add(sa, sb, so):                    # int16 ADD / SUB: inputs << 15, rescaled to 2 * max input scale
        tw = 2.0 * max(f(sa), f(sb))
        return (ref_quantize_multiplier(f(sa) / tw), ref_quantize_multiplier(f(sb) / tw),
                ref_quantize_multiplier(tw / (2 ** 15 * f(so))))

    def mul(sa, sb, so):
        return ref_quantize_multiplier(f(sa) * f(sb) / f(so))

    p = {"H": H, "kind": layer.kind, "relu": relu, "s_h": s_h,
         "out": ref_quantize_multiplier(f(s_h if relu else _Q15) / f(s_out))}
    wx, wh = _i64(q["w_x"]), _i64(q["w_h"])
    bx = vwrap32((_i64(q["b_x"]) if layer.kind == "gru" else _i64(q["b"])) - zp_in * wx.sum(axis=1))
    p.update(w_x=wx, w_h=wh, bx=bx, zp_in=zp_in, zp_out=zp_out)
    if layer.kind == "rnn":
        p["cx"] = conv(q["w_x_scale"], s_in, sc[0])
        p["ch"] = conv(q["w_h_scale"], s_h, sc[1])
        p["add"] = add(sc[0], sc[1], s_h if relu else sc[2])
        p["act"] = None if relu else _ref_act16_params(sc[2], True)
        return p
    p["reset_after"] = bool(layer.reset_after)
    p["bh"] = _i64(q["b_h"])
    p["cx"] = [conv(q["w_x_scale"][j * H:(j + 1) * H], s_in, sc[j]) for j in range(3)]
    p["ch"] = [conv(q["w_h_scale"][j * H:(j + 1) * H], _Q15, sc[3 + j]) for j in range(3)]
    p["add_g"] = [add(sc[j], sc[3 + j], sc[6 + j]) for j in range(2)]
    p["act_g"] = [_ref_act16_params(sc[6 + j], False) for j in range(2)]
    if p["reset_after"]:
        p["mul_rn"] = mul(_Q15, sc[5], sc[9])
        p["add_n"] = add(sc[2], sc[9], sc[8])
    else:
        p["mul_rh"] = mul(_Q15, _Q15, _Q15)
        p["add_n"] = add(sc[2], sc[5], sc[8])
    p["act_n"] = _ref_act16_params(sc[8], True)
    p["sub_d"] = add(_Q15, _Q15, 2.0 ** -14)
    p["mul_zd"] = mul(_Q15, 2.0 ** -14, 2.0 ** -14)
    p["add_h"] = add(_Q15, 2.0 ** -14, _Q15)
    return p


def vconv16(x, w, bias, mults, lo=_FX_I16_MIN, hi=_FX_I16_MAX):
    """(B, K) int16 values -> (B, N): exact accumulator, (acc * m16 + 2^(t-1)) >> t per row, clamped."""
    m16, t = mults
    acc = _i64(x) @ _i64(w).T + (0 if bias is None else _i64(bias))
    return np.clip(vwrap32((acc * m16 + (np.int64(1) << (t - 1))) >> t), lo, hi)   # int32 result, then clamp


def vadd16(a, b, params, *, subtract=False, lo=_FX_I16_MIN, hi=_FX_I16_MAX):
    (ma, sa), (mb, sb), (mo, so) = params
    u, v = vmbqm(_i64(a) << 15, ma, sa), vmbqm(_i64(b) << 15, mb, sb)
    return np.clip(vmbqm(u - v if subtract else u + v, mo, so), lo, hi)


def vmul16(a, b, params):
    return vsat16(vmbqm(_i64(a) * _i64(b), *params))


def vact16(x, params, tanh):
    """int16 LOGISTIC / TANH (output 2^-15): scale, interpolate sigmoid(i / 24) at |v|, mirror for v < 0."""
    from edgelstm.quant.tables import SIGMOID_TABLE_U16 as tab
    mult, shift = params
    v = (_i64(x) * mult + ((1 << (shift - 1)) if shift else 0)) >> shift
    u = np.abs(v)
    fb = 8 if tanh else 9
    i = np.minimum(u >> fb, 254)
    interp = (tab[i] << fb) + (u & ((1 << fb) - 1)) * (tab[i + 1] - tab[i])
    r = np.where((u >> fb) >= 255, (0xFFFF << 8) if tanh else (0x7FFF << 10), interp)
    if tanh:
        return np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1) >> 8
    return np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1) >> 10


def ref_cell16_step(p, x8, h):
    """One int8 GRU / RNN step: x8 (B, I) int8 values, h (B, H) int16 state -> (h', y8)."""
    H = p["H"]
    if p["kind"] == "rnn":
        pre_lo = 0 if p["relu"] else _FX_I16_MIN
        pre = vadd16(vconv16(x8, p["w_x"], p["bx"], p["cx"]), vconv16(h, p["w_h"], None, p["ch"]), p["add"],
                     lo=pre_lo)
        h2 = pre if p["relu"] else vact16(pre, p["act"], True)
    else:
        fx = [vconv16(x8, p["w_x"][j * H:(j + 1) * H], p["bx"][j * H:(j + 1) * H], p["cx"][j]) for j in range(3)]
        rz = [vact16(vadd16(fx[j], vconv16(h, p["w_h"][j * H:(j + 1) * H], p["bh"][j * H:(j + 1) * H], p["ch"][j]),
                            p["add_g"][j]), p["act_g"][j], False) for j in range(2)]
        r, z = rz
        wn, bn = p["w_h"][2 * H:], p["bh"][2 * H:]
        if p["reset_after"]:
            hn = vmul16(r, vconv16(h, wn, bn, p["ch"][2]), p["mul_rn"])
        else:
            hn = vconv16(vmul16(r, h, p["mul_rh"]), wn, bn, p["ch"][2])
        n = vact16(vadd16(fx[2], hn, p["add_n"]), p["act_n"], True)
        d = vadd16(h, n, p["sub_d"], subtract=True)
        h2 = vadd16(n, vmul16(z, d, p["mul_zd"]), p["add_h"])
    return h2, vsat8(vmbqm(h2, *p["out"]) + p["zp_out"])


def ref_dense_table(fn, pre_scale, pre_zp, s_out, zp_out):
    """T[q] = clamp(floor(f(pre_scale * (q - pre_zp)) / s_out + 0.5) + zp_out), q = -128..127 (index q+128)."""
    q = np.arange(-128, 128, dtype=np.float64)
    v = np.floor(fn(float(pre_scale) * (q - pre_zp)) / s_out + 0.5) + zp_out
    return np.clip(v, -128, 127).astype(np.int64)


def ref_softmax_exp_table(pre_scale):
    """LiteRT's int8 SOFTMAX table (beta 1): E[d] = expf(float32(-pre_scale) * float32(d)), d = 0..255,
    float32 (exp evaluated in double, then rounded to float32)."""
    f32 = np.float32
    return np.array([f32(math.exp(float(f32(f32(-f32(pre_scale)) * f32(d))))) for d in range(256)], np.float32)


def ref_softmax(logit, E):
    """LiteRT's int8 SOFTMAX, one row at a time, in float32 exactly as its kernel orders it:
    M = max, S = sum_r E[M - logit[r]] (left to right), inv = 1 / (S * (1/256)),
    out[r] = sat8(round_half_away(E[M - logit[r]] * inv) - 128)."""
    f32 = np.float32
    logit = _i64(logit)
    flat = logit.reshape(-1, logit.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        m = row.max()
        s = f32(0.0)
        for v in row:
            s = f32(s + E[m - v])
        inv = f32(f32(1.0) / f32(s * f32(1.0 / 256.0)))
        for j, v in enumerate(row):
            p = float(f32(E[m - v] * inv))
            out[i, j] = int(math.copysign(math.floor(abs(p) + 0.5), p)) - 128
    return vsat8(out.reshape(logit.shape))


def ref_dense(p, x):
    """Dense + output activation over int8 x (..., I) -> int8 values (..., O)."""
    acc = vwrap32(p["bd"] + _i64(x) @ p["w"].T)
    logit = np.stack([ref_mbqm_single(acc[..., r], *p["m_fc"][r]) for r in range(acc.shape[-1])], axis=-1)
    logit = vsat8(logit + p["pre_zp"])
    act = p["activation"]
    if act == "none":
        return logit
    if act == "relu":
        return np.maximum(logit, p["pre_zp"])
    if act in ("sigmoid", "tanh"):
        return p["table"][logit + 128]
    if act == "softmax":
        return ref_softmax(logit, p["E"])
    raise ValueError(act)


def ref_zero_state_int8(prep_layer, B):
    """Zero state: LSTM h = zp_out, c = 0; GRU and RNN int16 h = 0."""
    layer, zp = prep_layer["layer"], prep_layer["zp_out"]
    if layer.kind == "lstm":
        return {"h": np.full((B, layer.recurrent_size), zp, np.int64),
                "c": np.zeros((B, layer.hidden_size), np.int64)}
    return {"h": np.zeros((B, layer.hidden_size), np.int64)}      # GRU / RNN: int16 h = 0


_STATE_DTYPES = {("lstm", "h"): np.int8, ("lstm", "c"): np.int16, ("gru", "h"): np.int16,
                 ("rnn", "h"): np.int16}


def ref_forward_int8(spec, quant, X, *, lengths=None, initial_state=None, prep=None):
    """Integer forward of an int8 model over float32 X (B, T, F) -> (Y float32 (B, T, O), state).

    state[k][d]: LSTM {"h" int8, "c" int16}, GRU / RNN {"h" int16}, Dense {} (one dict);
    arrays with a leading batch axis, taken at each sequence's own length. Outputs past a sequence's
    length are 0. The backward direction runs over each sequence's own valid steps in reverse."""
    prep = ref_prepare(spec, quant) if prep is None else prep
    X = np.asarray(X, dtype=np.float32)
    B, T, _ = X.shape
    lengths = np.full(B, T, np.int64) if lengths is None else _i64(lengths).reshape(B)
    s0, z0 = prep[0]["s_in"], prep[0]["zp_in"]
    seq = ref_quantize_input(X, s0, z0)                                # (B, T, F) int8 values in int64
    rows = np.arange(B)
    final = []
    for k, lp in enumerate(prep):
        layer = lp["layer"]
        if layer.kind == "dense":
            seq = ref_dense(lp["dirs"][0], seq)
            final.append([{}])
            continue
        if layer.kind in FRONT_END_KINDS:
            seq, fin = _front_end_seq(layer, seq, lengths, initial_state[k][0] if initial_state else None,
                                      lambda x, ctx: ref_front_end_int8(lp, x, ctx), np.int64, lp["zp_in"])
            final.append([{n: a.astype(np.int8) for n, a in fin.items()}])
            continue
        W = layer.recurrent_size
        out = np.zeros((B, T, len(lp["dirs"]) * W), np.int64)
        layer_final = []
        for d, p in enumerate(lp["dirs"]):
            if initial_state is None:
                st = ref_zero_state_int8(lp, B)
            else:
                st = {n: _i64(a).reshape(B, -1).copy() for n, a in initial_state[k][d].items()}
            if layer.kind in ("gru", "rnn"):
                st["y8"] = np.zeros((B, layer.hidden_size), np.int64)      # the step's int8 output
            backward = d == 1 or getattr(layer, "reverse", False)
            for s in range(int(lengths.max(initial=0))):
                active = s < lengths
                t = np.where(active, lengths - 1 - s if backward else s, 0)
                x = seq[rows, t]
                if layer.kind == "lstm":
                    h, c = ref_lstm_step(p, lp, x, st["h"], st["c"])
                    new = {"h": h, "c": c}
                else:
                    h16, y8 = ref_cell16_step(p, x, st["h"])
                    new = {"h": h16, "y8": y8}
                st = {n: np.where(active[:, None], new[n], st[n]) for n in st}
                y = st["h"] if layer.kind == "lstm" else st["y8"]
                out[rows[active], t[active], d * W:(d + 1) * W] = y[active]
            layer_final.append({n: st[n].astype(_STATE_DTYPES[(layer.kind, n)]) for n in st if n != "y8"})
        seq = out
        final.append(layer_final)
    s_L, z_L = prep[-1]["s_out"], prep[-1]["zp_out"]
    Y = ref_dequantize_output(seq, s_L, z_L)
    Y[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    return Y, final


# ---- TFLite builtin int8 ops and the op-graph layer kind, plain Python integers: independent of
# edgelstm/kernels/ops_int8.py and of edgelstm/quant/ops_prepare.py (written from LiteRT's reference kernels)
def _ref_clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _ref_round_away(v):
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def ref_op_fully_connected(x, zp_in, w, bias, s_in, w_scales, s_out, zp_out, lo=-128, hi=127):
    """FULLY_CONNECTED int8 per-channel, single rounding: (acc * m + 2^(t-1)) >> t, t = 31 - shift."""
    out = []
    for n in range(len(w)):
        m, s = ref_quantize_multiplier(float(np.float32(s_in)) * float(np.float32(w_scales[n]))
                                       / float(np.float32(s_out)))
        acc = _fx_i32((0 if bias is None else int(bias[n])) + sum((int(xk) - zp_in) * int(wk)
                                                                    for xk, wk in zip(x, w[n])))
        t = 31 - s
        out.append(_ref_clamp(((acc * m + (1 << (t - 1))) >> t) + zp_out, lo, hi))
    return out


def ref_op_conv16(x, w, bias, s_in, w_scales, s_out, lo=-32768, hi=32767):
    """16x8 1x1 CONV_2D per channel: exact integer accumulator, LiteRT's int64 MultiplyByQuantizedMultiplier:
    the multiplier rounded to its top 16 bits (0x7FFF if that would overflow), one rounding shift by 15 - shift."""
    out = []
    for n in range(len(w)):
        m, s = ref_quantize_multiplier(float(np.float32(s_in)) * float(np.float32(w_scales[n]))
                                       / float(np.float32(s_out)))
        m16 = (m + 2 ** 15) // 2 ** 16 if m < 0x7FFF0000 else 0x7FFF
        acc = (0 if bias is None else int(bias[n])) + sum(int(xk) * int(wk) for xk, wk in zip(x, w[n]))
        t = 15 - s
        out.append(_ref_clamp(_fx_i32((acc * m16 + 2 ** (t - 1)) // 2 ** t), lo, hi))   # returns int32
    return out


def _ref_act16_params(s_in, tanh):
    """TFLite's int16 LOGISTIC/TANH Prepare: power-of-two scales (log2 within 1e-3 of an integer, in float32)
    with left shift 0 (tanh: 0 or 1) use multiplier 3 << shift; others scale * 4096 * 3 doubled until > 16383.5."""
    f = np.float32
    l2 = f(f(np.log(f(s_in))) * (f(1.0) / f(np.log(f(2.0)))))
    r = f(np.round(l2))
    shift = 12 + int(r)
    if abs(f(l2 - r)) < f(1e-3) and (shift in (0, 1) if tanh else shift == 0):
        return 3 << shift, 0
    m, shift = float(f(s_in)) * 4096.0 * 3.0, 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        m, shift = m * 2.0, shift + 1
    return int(m), shift


def ref_op_act16(fn, x, s_in):
    """int16 LOGISTIC / TANH (output scale 2^-15): LiteRT's reference interpolation of sigmoid(i/24)."""
    from edgelstm.quant.tables import SIGMOID_TABLE_U16 as tab
    mult, shift = _ref_act16_params(s_in, fn == "tanh")
    out = []
    for v in x:
        t = (int(v) * mult + (2 ** (shift - 1) if shift else 0)) // 2 ** shift
        u = abs(t)
        frac_bits = 8 if fn == "tanh" else 9
        i, frac = u // 2 ** frac_bits, u % 2 ** frac_bits
        saturated = 0xFFFF * 2 ** 8 if fn == "tanh" else 0x7FFF * 2 ** 10
        r = saturated if i >= 255 else int(tab[i]) * 2 ** frac_bits + frac * (int(tab[i + 1]) - int(tab[i]))
        if fn == "tanh":
            r = r - 2 ** 23 + 2 ** 7 if t >= 0 else -r + 2 ** 23 + 2 ** 7 - 1
            out.append(r // 2 ** 8)
        else:
            r = r + 2 ** 9 if t >= 0 else 2 ** 25 - r + 2 ** 9 - 1
            out.append(r // 2 ** 10)
    return out


def ref_op_add(a, zp_a, s_a, b, zp_b, s_b, s_out, zp_out, *, subtract=False, lo=-128, hi=127, bits=8):
    """ADD/SUB: inputs << 20 (int8) or << 15 (int16), rescaled to 2*max scale, summed, rescaled to the output."""
    fa, fb, fo = (float(np.float32(v)) for v in (s_a, s_b, s_out))
    twice = 2.0 * max(fa, fb)
    ls = 20 if bits == 8 else 15
    ma, sa = ref_quantize_multiplier(fa / twice)
    mb, sb = ref_quantize_multiplier(fb / twice)
    mo, so = ref_quantize_multiplier(twice / ((1 << ls) * fo))
    out = []
    for x, y in zip(a, b):
        u = ref_mbqm((int(x) - zp_a) << ls, ma, sa)
        v = ref_mbqm((int(y) - zp_b) << ls, mb, sb)
        out.append(_ref_clamp(ref_mbqm(u - v if subtract else u + v, mo, so) + zp_out, lo, hi))
    return out


def ref_op_mul(a, zp_a, s_a, b, zp_b, s_b, s_out, zp_out, lo=-128, hi=127):
    m, s = ref_quantize_multiplier(float(np.float32(s_a)) * float(np.float32(s_b)) / float(np.float32(s_out)))
    return [_ref_clamp(ref_mbqm((int(x) - zp_a) * (int(y) - zp_b), m, s) + zp_out, lo, hi) for x, y in zip(a, b)]


def ref_op_requantize(x, zp_in, s_in, s_out, zp_out, lo=-128, hi=127):
    m, s = ref_quantize_multiplier(float(np.float32(s_in)) / float(np.float32(s_out)))
    return [_ref_clamp(ref_mbqm(int(v) - zp_in, m, s) + zp_out, lo, hi) for v in x]


def ref_op_lut(fn, x, zp_in, s_in, s_out, zp_out):
    """LOGISTIC/TANH int8: float32 dequantize, transform (correctly rounded to float32), float32 rescale, round
    half away from zero, clamp. One element at a time with Python floats."""
    f32 = lambda v: float(np.float32(v))                           # noqa: E731
    out = []
    for v in x:
        d = f32(f32(s_in) * f32(int(v) - zp_in))
        t = f32(1.0 / (1.0 + f32(math.exp(-d)))) if fn == "logistic" else f32(math.tanh(d))
        r = f32(t * f32(1.0 / f32(s_out)))
        out.append(_ref_clamp(_ref_round_away(r) + zp_out, -128, 127))
    return out


def ref_op_float_requantize(x, zp_in, s_in, s_out, zp_out):
    """DEQUANTIZE (float32 of double scale * (q - zp)) then QUANTIZE (round half away of float32 v / s)."""
    out = []
    for v in x:
        d = float(np.float32(float(np.float32(s_in)) * (int(v) - zp_in)))
        out.append(_ref_clamp(_ref_round_away(float(np.float32(d / float(np.float32(s_out))))) + zp_out, -128, 127))
    return out


def _ref_act_range(act, s, zp, bits=8):
    q = lambda v: zp + _ref_round_away(float(np.float32(np.float32(v) / np.float32(s))))  # noqa: E731
    t_lo, t_hi = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    lo, hi = {0: (t_lo, t_hi), 1: (q(0.0), t_hi), 2: (q(-1.0), q(1.0)), 3: (q(0.0), q(6.0))}[act]
    return max(t_lo, lo), min(t_hi, hi)


def ref_opgraph_stream(layer, params, Xq):
    """Run an int8 op-graph layer (edgelstm.ir.opgraph.OpGraph IR + its int8 constants) over int8 frames Xq (T, I),
    state fed back through DEQUANTIZE -> QUANTIZE when quantizations differ. Returns (Y int8 (T, O), state)."""
    T = layer.tensors
    val = {}
    state = [[T[si][2]] * T[si][0] for si, _ in layer.state]
    Y = []
    for x in Xq:
        val = {i: list(params["c"][t[3]:t[3] + t[0]]) for i, t in enumerate(T) if t[3] is not None}
        val[layer.x] = [int(v) for v in x]
        for (si, _), s in zip(layer.state, state):
            val[si] = list(s)
        for name, a, b, out, act, p0, p1, p2 in layer.ops:
            na, sa, za = T[a][:3]
            no, so, zo = T[out][:3]
            bits = T[out][4] if len(T[out]) > 4 else 8
            lo, hi = _ref_act_range(act, so, zo, bits)
            if name == "CONV_2D":
                w = np.asarray(params["w"][p0:p0 + no * na]).reshape(no, na)
                bias = None if p1 < 0 else params["b"][p1:p1 + no]
                val[out] = ref_op_conv16(val[a], w, bias, sa, params["w_scale"][p2:p2 + no], so, lo, hi)
            elif name == "FULLY_CONNECTED":
                w = np.asarray(params["w"][p0:p0 + no * na]).reshape(no, na)
                bias = None if p1 < 0 else params["b"][p1:p1 + no]
                val[out] = ref_op_fully_connected(val[a], za, w, bias, sa, params["w_scale"][p2:p2 + no], so, zo,
                                                  lo, hi)
            elif name in ("ADD", "SUB"):
                val[out] = ref_op_add(val[a], za, sa, val[b], T[b][2], T[b][1], so, zo, subtract=name == "SUB",
                                      lo=lo, hi=hi, bits=bits)
            elif name == "MUL":
                val[out] = ref_op_mul(val[a], za, sa, val[b], T[b][2], T[b][1], so, zo, lo, hi)
            else:
                n = p2 or no
                src = val[a][p0:p0 + n]
                if name == "COPY":
                    r = list(src)
                elif name == "QUANTIZE":
                    r = ref_op_requantize(src, za, sa, so, zo, lo, hi)
                elif bits == 16:
                    r = ref_op_act16(name.lower(), src, sa)
                elif name == "RELU":
                    r = ref_op_requantize(src, za, sa, so, zo, *_ref_act_range(1, so, zo))
                elif name == "REQUANTIZE_FLOAT":
                    r = ref_op_float_requantize(src, za, sa, so, zo)
                else:
                    r = ref_op_lut(name.lower(), src, za, sa, so, zo)
                dst = val.setdefault(out, [0] * no)
                dst[p1:p1 + n] = r
        Y.append(list(val[layer.y]))
        new = []
        for si, so_ in layer.state:
            if (T[si][1], T[si][2]) == (T[so_][1], T[so_][2]):
                new.append(list(val[so_]))
            else:
                new.append(ref_op_float_requantize(val[so_], T[so_][2], T[so_][1], T[si][1], T[si][2]))
        state = new
    return np.asarray(Y, np.int8), state


# ---- front-end layers (edgelstm/ir/frontend.py), one frame at a time, plain loops: independent of
# edgelstm/kernels/frontend.py, edgelstm/program/frontend.py and the calibration forward in edgelstm/quant/ptq.py
FRONT_END_KINDS = ("conv1d", "pad", "magnitude", "activation", "context")


def _front_end_seq(layer, seq, lengths, initial, step, dtype, zero=0):
    """Run a per-frame front-end function over (B, T, F) frames (zeros past each length); a context layer carries
    its last ``context`` values per sequence, starting from ``initial`` or ``zero`` (int8: the zero point).
    Returns (out, final state dict)."""
    B, T, _ = seq.shape
    out = np.zeros((B, T, layer.output_size), dtype)
    fin = {}
    if layer.kind == "context":
        fin["ctx"] = (np.full((B, layer.context), zero, dtype) if initial is None
                      else np.array(initial["ctx"], dtype).reshape(B, -1))
    for b in range(B):
        c = fin["ctx"][b].copy() if layer.kind == "context" else None
        for t in range(lengths[b]):
            out[b, t], c = step(seq[b, t], c)
        if layer.kind == "context":
            fin["ctx"][b] = c
    return out, fin


def _ref_padded_rows(x, length, channels, left, right, reflect, pad_value):
    """(length, channels) frame -> (length + left + right, channels): zeros (pad_value) or a reflection that does
    not repeat the edge."""
    rows = np.asarray(x).reshape(length, channels)
    out = []
    for p in range(-left, length + right):
        if 0 <= p < length:
            out.append(rows[p])
        elif reflect:
            out.append(rows[-p] if p < 0 else rows[2 * (length - 1) - p])
        else:
            out.append(np.full(channels, pad_value, rows.dtype))
    return np.array(out)


def _ref_act64(v, act):
    return {"none": lambda a: a, "relu": lambda a: np.maximum(a, 0), "relu6": lambda a: np.clip(a, 0, 6),
            "sigmoid": _sigmoid64, "tanh": np.tanh}[act](v)


def _ref_conv_acc(layer, xp, w, zp):
    """acc[l, o] = sum_k sum_i w[o, k, i] * (xp[l*stride + k*dilation, g(o)*Ig + i] - zp) over the padded rows."""
    O, K, Ig = w.shape
    G = layer.groups
    pos = np.arange(layer.out_length)[:, None] * layer.stride + np.arange(K)[None, :] * layer.dilation
    win = (xp[pos] - zp).reshape(layer.out_length, K, G, Ig)                    # (L_out, K, groups, Ig)
    return np.einsum("lkgi,gpki->lgp", win, w.reshape(G, O // G, K, Ig)).reshape(layer.out_length, O)


def ref_front_end_f64(layer, p, x, ctx):
    """One frame through a front-end layer in float64; returns (output frame, new context or None)."""
    x = np.asarray(x, np.float64)
    kind = layer.kind
    if kind == "context":
        full = np.concatenate([ctx, x])
        return full, full[len(full) - layer.context:].copy()
    if kind == "activation":
        return _ref_act64(x, layer.activation), None
    if kind == "magnitude":
        v = x.reshape(layer.length, 2, layer.channels)
        return np.sqrt(v[:, 0] ** 2 + v[:, 1] ** 2).ravel(), None
    if kind == "pad":
        return _ref_padded_rows(x, layer.length, layer.channels, layer.left, layer.right, layer.mode == "reflect",
                                0.0).ravel(), None
    xp = _ref_padded_rows(x, layer.length, layer.in_channels, layer.pad_left, layer.pad_right,
                          layer.pad_mode == "reflect", 0.0)
    acc = _ref_conv_acc(layer, xp, np.asarray(p["w"], np.float64), 0.0) + np.asarray(p["b"], np.float64)
    return _ref_act64(acc, layer.activation).ravel(), None


def ref_front_end_prepare(layer, q, s_in, zp_in, s_out, zp_out):
    """What an int8 front-end layer needs besides its input: act quantizations, conv weights (as LiteRT reads them)."""
    p = {"s_in": s_in, "zp_in": zp_in, "s_out": s_out, "zp_out": zp_out}
    if layer.kind == "conv1d":
        lut = layer.activation in ("sigmoid", "tanh")
        p.update(w=_i64(q["w"]), b=_i64(q["b"]), w_scale=np.asarray(q["w_scale"], np.float32),
                 pre=(float(np.float32(q["pre_scale"][0])), int(q["pre_zp"][0])) if lut else (s_out, zp_out))
    return p


def _ref_lut_front(act, x, s_in, zp_in, s_out, zp_out):
    return _i64(ref_op_lut("logistic" if act == "sigmoid" else "tanh", _i64(x).ravel(), zp_in, s_in, s_out, zp_out))


def ref_front_end_int8(lp, x, ctx):
    """One int8 frame (int64 values) through a front-end layer as LiteRT's reference resolver computes it (the
    per-op references below); returns (frame, new context or None)."""
    layer, p = lp["layer"], lp["dirs"][0]
    kind = layer.kind
    x = _i64(x)
    if kind == "context":
        full = np.concatenate([ctx, x])
        return full, full[len(full) - layer.context:].copy()
    if kind == "pad":      # PAD / MIRROR_PAD with equal quantizations (the runtime requires it)
        return ref_pad_int8(x.reshape(layer.length, layer.channels), layer.left, layer.right, zp_out=p["zp_in"],
                            mode=layer.mode).ravel(), None
    if kind == "activation":
        if layer.activation in ("sigmoid", "tanh"):
            return _ref_lut_front(layer.activation, x, p["s_in"], p["zp_in"], p["s_out"], p["zp_out"]), None
        return ref_op_relu_int8(x, zp_in=p["zp_in"], s_in=p["s_in"], zp_out=p["zp_out"], s_out=p["s_out"],
                                act=layer.activation), None
    if kind == "magnitude":
        v = x.reshape(layer.length, 2, layer.channels)
        return ref_magnitude_int8(v[:, 0].ravel(), v[:, 1].ravel(), s_in=p["s_in"], zp_in=p["zp_in"],
                                  s_out=p["s_out"], zp_out=p["zp_out"]), None
    xp = ref_pad_int8(x.reshape(layer.length, layer.in_channels), layer.pad_left, layer.pad_right,
                      zp_out=p["zp_in"], mode=layer.pad_mode)
    act, (s_pre, zp_pre) = layer.activation, p["pre"]
    mult = layer.out_channels // layer.in_channels if layer.depthwise else None
    y = ref_conv1d_int8(xp, zp_in=p["zp_in"], w=p["w"][:, :, 0] if mult else p["w"], b=p["b"], s_in=p["s_in"],
                        w_scale=p["w_scale"], s_out=s_pre, zp_out=zp_pre,
                        act="none" if act in ("sigmoid", "tanh") else act, stride=layer.stride,
                        dilation=layer.dilation, depth_multiplier=mult)
    if act in ("sigmoid", "tanh"):
        return _ref_lut_front(act, y, s_pre, zp_pre, p["s_out"], p["zp_out"]), None
    return y.ravel(), None


# ---- LiteRT's int8 conv front-end ops (CONV_2D / DEPTHWISE_CONV_2D over a (1, 1, L, C) frame, PAD, MIRROR_PAD,
# RELU / RELU6, the float magnitude chain), one formula per op and per resolver, as measured on ai-edge-litert 2.3
# (docs/litert_conv_measurements.md, tests/test_litert_conv_ops.py). numpy int64 / float32, independent of edgelstm.
# resolver: "ref" = BUILTIN_REF, "opt" = BUILTIN_WITHOUT_DEFAULT_DELEGATES (x86 AVX2 build), "xnn" = AUTO (XNNPACK).

def ref_conv_multipliers(s_in, w_scale, s_out):
    """Per output channel (m, shift) = QuantizeMultiplier(double(s_in) * double(w_scale[c]) / double(s_out)), the
    scales float32 values (kernel_util.cc PopulateConvolutionQuantizationParams). -> (m (O,), shift (O,)) int64."""
    f = lambda v: float(np.float32(v))                                       # noqa: E731
    ms = [ref_quantize_multiplier(f(s_in) * f(ws) / f(s_out)) for ws in np.ravel(w_scale)]
    return _i64([m for m, _ in ms]), _i64([s for _, s in ms])


def ref_xnn_conv_scale(s_in, w_scale, s_out):
    """XNNPACK's per-channel requantization scale: float32 (s_in * w_scale[c]) / s_out, left to right."""
    f32 = np.float32
    return (f32(s_in) * np.asarray(w_scale, f32)) / f32(s_out)


def ref_conv_acc(x, zp_in, w, b, *, stride=1, dilation=1, depth_multiplier=None):
    """int32 accumulators (L_out, O) of a VALID conv along the length of x (L, C) int8 values:
    acc[l, o] = wrap32(b[o] + sum_k sum_i w[o, k, i] * (x[l*stride + k*dilation, i] - zp_in)); depthwise
    (depth_multiplier given, w (O, K)): output channel o reads input channel o // depth_multiplier."""
    x, w = _i64(x) - int(zp_in), _i64(w)
    O, K = w.shape[:2]
    n_out = (x.shape[0] - dilation * (K - 1) - 1) // stride + 1
    acc = np.zeros((n_out, O), np.int64) + _i64(b)
    for k in range(K):
        rows = x[k * dilation:k * dilation + (n_out - 1) * stride + 1:stride]        # (n_out, C)
        acc += rows[:, np.arange(O) // depth_multiplier] * w[:, k] if depth_multiplier else rows @ w[:, k, :].T
    return vwrap32(acc)


def ref_mbqm_up(x, m, s):
    """MultiplyByQuantizedMultiplier with the final shift rounding ties UP (toward +inf), not away from zero:
    r = SRDHM(wrap32(x << max(s, 0)), m); (r + 2^(e-1)) >> e, e = max(-s, 0) -- ruy's AVX2 kernel
    (CONV_2D "opt") and the NEON (NEON_2_SSE on x86) vqrdmulh + vrshl of optimized_ops::Quantize (depthwise "opt")."""
    s = _i64(s)
    e = np.maximum(-s, 0)
    r = vsrdhm(vwrap32(_i64(x) * (np.int64(1) << np.maximum(s, 0))), m)
    return (r + np.where(e > 0, np.int64(1) << np.maximum(e - 1, 0), 0)) >> e


def ref_requant_xnn(acc, scale):
    """XNNPACK's fp32 requantization: round-half-to-even(float32(float32(acc) * scale))."""
    v = (_i64(acc).astype(np.float32) * np.asarray(scale, np.float32)).astype(np.float32)
    return np.rint(v).astype(np.int64)


def ref_conv_act_range(act, s_out, zp_out, *, resolver="ref"):
    """Output clamp of a fused NONE / RELU / RELU6: LiteRT zp + round_half_away(float32(f / s_out)); XNNPACK
    lrintf(float32(f / s_out) + zp) (ties to even, so 6/s_out on a .5 can land one lower)."""
    if resolver != "xnn":
        return _ref_act_range({"none": 0, "relu": 1, "relu6": 3}[act], s_out, zp_out)
    f32 = np.float32
    q = lambda v: int(np.rint(f32(f32(f32(v) / f32(s_out)) + f32(zp_out))))  # noqa: E731
    lo, hi = {"none": (-128, 127), "relu": (q(0.0), 127), "relu6": (q(0.0), q(6.0))}[act]
    return max(-128, lo), min(127, hi)


def ref_conv1d_int8(x, *, zp_in, w, b, s_in, w_scale, s_out, zp_out, act="none", stride=1, dilation=1,
                    depth_multiplier=None, resolver="ref"):
    """LiteRT's CONV_2D (w (O, K, C)) or DEPTHWISE_CONV_2D (depth_multiplier given, w (O, K)) int8 per-channel,
    VALID, over x (L, C) int8 values -> (L_out, O) int8 values, as `resolver` computes it:
      ref: MBQM (double rounding, ties away);  opt CONV_2D: ref_mbqm_up (ruy);  opt DEPTHWISE: ref_mbqm_up on
      the first 8 * (O // 8) channels, MBQM on the O % 8 last (NEON-emulated blocks of 8, then a scalar tail);
      xnn: float32 requantization (ref_requant_xnn) with XNNPACK's clamp."""
    acc = ref_conv_acc(x, zp_in, w, b, stride=stride, dilation=dilation, depth_multiplier=depth_multiplier)
    m, s = ref_conv_multipliers(s_in, w_scale, s_out)
    if resolver == "ref":
        v = vmbqm(acc, m, s)
    elif resolver == "opt":
        up = np.arange(acc.shape[1]) < (acc.shape[1] // 8 * 8 if depth_multiplier else acc.shape[1])
        v = np.where(up, ref_mbqm_up(acc, m, s), vmbqm(acc, m, s))
    elif resolver == "xnn":
        v = ref_requant_xnn(acc, ref_xnn_conv_scale(s_in, w_scale, s_out))
    else:
        raise ValueError(resolver)
    lo, hi = ref_conv_act_range(act, s_out, zp_out, resolver=resolver)
    return np.clip(v + int(zp_out), lo, hi)


def ref_conv1d_f64(x, w, b, *, stride=1, dilation=1, depth_multiplier=None, act="none"):
    """The float conv the int8 one approximates (x (L, C), w as in ref_conv1d_int8), in float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    O, K = w.shape[:2]
    n_out = (x.shape[0] - dilation * (K - 1) - 1) // stride + 1
    y = np.zeros((n_out, O)) + np.asarray(b, np.float64)
    for k in range(K):
        rows = x[k * dilation:k * dilation + (n_out - 1) * stride + 1:stride]
        y += rows[:, np.arange(O) // depth_multiplier] * w[:, k] if depth_multiplier else rows @ w[:, k, :].T
    return {"none": y, "relu": np.maximum(y, 0.0), "relu6": np.clip(y, 0.0, 6.0)}[act]


def ref_pad_int8(x, left, right, *, zp_out, mode="zeros"):
    """PAD int8 along the length of x (L, C): the body copied as raw int8 (LiteRT never requantizes it), the
    padding filled with the OUTPUT zero point; MIRROR_PAD REFLECT = numpy "reflect" (edge not repeated)."""
    x = _i64(x)
    if mode == "reflect":
        return np.pad(x, ((left, right), (0, 0)), mode="reflect")
    return np.pad(x, ((left, right), (0, 0)), constant_values=int(zp_out))


def ref_op_relu_int8(q, *, zp_in, s_in, zp_out, s_out, act="relu"):
    """RELU / RELU6 int8 (activations.cc, all three resolvers: XNNPACK does not take int8 RELU): MBQM by
    QuantizeMultiplier(float32(s_in / s_out)) -- the ratio divided in FLOAT32 (ReluPrepare), unlike QUANTIZE's
    double -- plus zp_out, clamped to [zp_out + roundf(0 / s_out), zp_out + roundf(6 / s_out)] in float32."""
    m, s = ref_quantize_multiplier(float(np.float32(np.float32(s_in) / np.float32(s_out))))
    lo, hi = _ref_act_range({"relu": 1, "relu6": 3}[act], s_out, zp_out)
    return np.clip(vmbqm(_i64(q) - int(zp_in), m, s) + int(zp_out), lo, hi)


def ref_dequantize_int8(q, *, s, zp, resolver="ref"):
    """DEQUANTIZE int8 -> float32 over a flat tensor: ref / xnn float32(double(s) * (q - zp)); opt blocks of 8 from
    the tensor start (NEON-emulated, no FMA on x86): float32(float32(q * float32(s)) + float32(-zp * double(s))),
    the last size % 8 values as ref."""
    q = _i64(q).ravel()
    out = (float(np.float32(s)) * (q - int(zp)).astype(np.float64)).astype(np.float32)
    if resolver == "opt":
        n8 = q.size // 8 * 8
        f32 = np.float32
        out[:n8] = (q[:n8].astype(f32) * f32(s)).astype(f32) + f32(-int(zp) * float(f32(s)))
    return out


def ref_quantize_f32(v, *, s, zp, resolver="ref"):
    """QUANTIZE float32 -> int8 over a flat tensor: ref round_half_away(float32(v / float32(s))) + zp;
    opt blocks of 8 from the tensor start: round_half_even(float32(v * float32(1 / double(s)))) + zp, the last
    size % 8 values round_half_away(double(v) / double(s)) + zp; xnn round_half_even(float32(v * float32(1 / s)))
    + zp; then clamped to int8."""
    f32 = np.float32
    v = np.asarray(v, f32).ravel()
    inv = f32(1.0 / float(f32(s)))
    if resolver == "ref":
        r = _round_half_away64((v / f32(s)).astype(f32))
    elif resolver == "xnn":
        r = np.rint((v * inv).astype(f32))
    elif resolver == "opt":
        n8 = v.size // 8 * 8
        r = np.concatenate([np.rint((v[:n8] * inv).astype(f32)),
                            _round_half_away64(v[n8:].astype(np.float64) / float(f32(s)))])
    else:
        raise ValueError(resolver)
    return vsat8(np.clip(r, -1e9, 1e9).astype(np.int64) + int(zp))


def ref_magnitude_int8(qa, qb, *, s_in, zp_in, s_out, zp_out, resolver="ref"):
    """The magnitude layer kept float in an int8 model (DEQUANTIZE, MUL a*a, MUL b*b, ADD, SQRT, QUANTIZE), flat
    int8 a, b of one quantization -> int8: every float op float32 and correctly rounded (sqrt too: exact on the
    reference and builtin kernels). resolver "xnn" is approximate: XNNPACK's SQRT is x * rsqrt(x) from the CPU's
    12-bit rsqrtps estimate plus Newton steps (up to 3 ulp off here, vendor-dependent), modelled here with the exact
    sqrt (tests bound the difference)."""
    f32 = np.float32
    a = ref_dequantize_int8(qa, s=s_in, zp=zp_in, resolver=resolver)
    b = ref_dequantize_int8(qb, s=s_in, zp=zp_in, resolver=resolver)
    r = np.sqrt((a * a).astype(f32) + (b * b).astype(f32)).astype(f32)
    return ref_quantize_f32(r, s=s_out, zp=zp_out, resolver=resolver)


def ref_fc_requant_ref(acc, s_in, w_scale, s_out):
    """FULLY_CONNECTED int8 per-channel on LiteRT's REFERENCE resolver (reference_integer_ops::FullyConnectedPerChannel,
    float-scale form): round_half_away(double(acc) * (double(s_in) * double(w_scale[c]) / double(s_out))). Measured
    alongside the conv ops (tests/test_litert_conv_ops.py); the opt resolver is ruy (ref_mbqm_up), XNNPACK
    ref_requant_xnn, and none is the single rounding README's Dense contract states."""
    f = lambda v: float(np.float32(v))                                       # noqa: E731
    eff = np.array([f(s_in) * f(w) / f(s_out) for w in np.ravel(w_scale)])
    return _round_half_away64(_i64(acc).astype(np.float64) * eff).astype(np.int64)

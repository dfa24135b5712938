"""Slow, obviously-correct numpy references; never imported by the package."""
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
    if "w_peep" in p:
        po = po + p["w_peep"][2] * c_new
    o = _sigmoid64(po)
    h_new = o * np.tanh(c_new)
    if "w_proj" in p:
        h_new = p["w_proj"] @ h_new + p["b_proj"]
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
    """Float64 forward of a whole ``edgelstm.model.ModelSpec`` over ``X`` (B, T, F).

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
        if layer.kind == "dense":
            out = np.zeros((B, T, layer.output_size))
            for b in range(B):
                for t in range(lengths[b]):
                    out[b, t] = _dense64(params[0], seq[b, t], activation=layer.activation)
            seq = out
            final_state.append([{}])
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
                steps = range(lengths[b]) if d == 0 else range(lengths[b] - 1, -1, -1)
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
    # neg_tanh_on_negative_values(n) = one_minus_x_over_one_plus_x(exp_on_negative_values(ExactMulByPot<1>(n)))
    t = _g_one_minus_x_over_one_plus_x_for_x_in_0_1(_g_exp_on_negative_values(n, integer_bits + 1))
    return _g_select(mask_if_zero, 0, _g_select(mask_if_negative, _g_neg(t), t))

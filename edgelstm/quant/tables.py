"""Exhaustive int16 activation tables reproducing gemmlowp's fixed-point logistic / tanh bit for bit.

TFLite's int8x8_16 LSTM (lstm_eval.cc: CalculateLstmGateInteger8x8_16 / CalculateLstmOutputInteger8x8_16)
calls tensor_utils::ApplySigmoid and ApplyTanh(integer_bits, ...); the portable kernels
(reference/portable_tensor_utils.cc: PortableApplySigmoid, PortableApplyTanhImpl<IntegerBits>) evaluate
    gemmlowp::logistic(FixedPoint<int16_t, 3>::FromRaw(x)).raw()
    gemmlowp::tanh(FixedPoint<int16_t, IntegerBits>::FromRaw(x)).raw()
per element. Here the same computation is ported from gemmlowp fixedpoint/fixedpoint.h and vectorized
over all 65,536 int16 inputs at once. Table index = raw + 32768 (index 0 is input -32768); outputs are
Q0.15 raws.

Every C-level int16 operation is reproduced with its exact int16 semantics: the operands are promoted to
int, the int result is truncated back to int16 (``_w16``) - e.g. negating -32768 gives -32768 - except
where gemmlowp saturates (SaturatingAdd, SaturatingRoundingMultiplyByPOT with positive exponent,
SaturatingRoundingDoublingHighMul). Arrays are int64 throughout so no numpy intermediate can overflow.
"""
import functools

import numpy as np

__all__ = ["sigmoid_table", "tanh_table", "SIGMOID_TABLE_U16"]

_I16_MIN = -32768
_I16_MAX = 32767
_TOTAL_BITS = 16


# ---- Part 1 of fixedpoint.h: raw int16 primitives (vectorized) -------------------------------------

def _w16(x):
    """static_cast<int16_t>(int value): two's-complement truncation."""
    return ((x + 32768) & 0xFFFF) - 32768


def _mask(cond):
    """MaskIfNonZero(bool): all bits set (-1) where true, 0 elsewhere."""
    return -(np.asarray(cond).astype(np.int64))


def _select(if_mask, then_val, else_val):
    """SelectUsingMask: (mask & then) ^ (~mask & else)."""
    return (if_mask & then_val) ^ (~if_mask & else_val)


def _add(a, b):
    return _w16(a + b)


def _sub(a, b):
    return _w16(a - b)


def _neg(a):
    return _w16(-a)


def _saturating_add(a, b):
    """SaturatingAdd<int16_t>."""
    return np.clip(a + b, _I16_MIN, _I16_MAX)


def _rounding_half_sum(a, b):
    """RoundingHalfSum<int16_t>: (sum + sign) / 2 with C truncating division, sign = sum >= 0 ? 1 : -1."""
    s = a + b
    t = s + np.where(s >= 0, 1, -1)
    q = np.where(t >= 0, t >> 1, -((-t) >> 1))
    return _w16(q)


def _srdhm16(a, b):
    """SaturatingRoundingDoublingHighMul<int16_t>."""
    overflow = (a == b) & (a == _I16_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    v = ab + nudge
    q = np.where(v >= 0, v >> 15, -((-v) >> 15))        # C '/ (1 << 15)' truncates toward zero
    return np.where(overflow, _I16_MAX, _w16(q))


def _rdbpot(x, exponent):
    """RoundingDivideByPOT (int16 or int32 raw; x already in range, exponent >= 0 a Python int)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (_mask(x < 0) & 1)
    return (x >> exponent) + (_mask(remainder > threshold) & 1)


def _srmul_pot16(x, exponent):
    """SaturatingRoundingMultiplyByPOT<exponent> on int16 raws."""
    if exponent == 0:
        return x
    if exponent < 0:
        return _rdbpot(x, -exponent)
    threshold = (1 << (_TOTAL_BITS - 1 - exponent)) - 1
    positive_mask = _mask(x > threshold)
    negative_mask = _mask(x < -threshold)
    result = _w16(x * (1 << exponent))                # ShiftLeft: a * (1 << offset), truncated
    result = _select(positive_mask, _I16_MAX, result)
    result = _select(negative_mask, _I16_MIN, result)
    return result


def _rescale(x, src_bits, dst_bits):
    """Rescale<dst>(FixedPoint<int16, src>)."""
    return _srmul_pot16(x, src_bits - dst_bits)


def _const16(int32_value):
    """GEMMLOWP_CHECKED_FIXEDPOINT_CONSTANT for int16: RescaleConstantInitializer rounds the int32 raw
    with RoundingDivideByPOT<int32_t>(v, 32 - 16), then static_cast<int16_t>."""
    v = int(_rdbpot(np.int64(int32_value), 32 - _TOTAL_BITS))
    return int(_w16(v))


def _const_pot(integer_bits, exponent):
    """FixedPoint<int16, integer_bits>::ConstantPOT<exponent>: raw 1 << (fractional_bits + exponent)."""
    offset = (_TOTAL_BITS - 1 - integer_bits) + exponent
    assert 0 <= offset < 31
    return int(_w16(1 << offset))


def _one(integer_bits):
    """FixedPoint<int16, integer_bits>::One()."""
    return _I16_MAX if integer_bits == 0 else 1 << (_TOTAL_BITS - 1 - integer_bits)


# ---- Part 3/4 of fixedpoint.h: math functions on int16 raws (vectorized) ---------------------------

def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """F0 -> F0: exp(a) for a in [-1/4, 0), Taylor expansion around -1/8."""
    constant_term = _const16(1895147668)              # exp(-1/8)
    constant_1_over_3 = _const16(715827883)           # 1/3
    x = _add(a, _const_pot(0, -3))                    # a + 1/8
    x2 = _srdhm16(x, x)
    x3 = _srdhm16(x2, x)
    x4 = _srdhm16(x2, x2)
    x4_over_4 = _srmul_pot16(x4, -2)
    inner = _add(_srdhm16(_add(x4_over_4, x3), constant_1_over_3), x2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = _srmul_pot16(inner, -1)
    return _saturating_add(constant_term,
                           _srdhm16(constant_term, _add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)))


# (Exponent, int32 raw of exp(-2^Exponent)) pairs of GEMMLOWP_EXP_BARREL_SHIFTER.
_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
           (3, 720401), (4, 242))


def _exp_on_negative_values(a, k):
    """FixedPoint<int16, k> (a <= 0) -> F0: exp(a)."""
    frac_bits = _TOTAL_BITS - 1 - k
    one_quarter = _const_pot(k, -2)
    mask = _sub(one_quarter, 1)
    a_mod_quarter_minus_one_quarter = _sub(a & mask, one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _rescale(a_mod_quarter_minus_one_quarter, k, 0))
    remainder = _sub(a_mod_quarter_minus_one_quarter, a)
    for exponent, multiplier_raw32 in _BARREL:
        if k > exponent:
            multiplier = _const16(multiplier_raw32)   # note: exp(-16) rescales to 0 in int16
            shift_amount = frac_bits + exponent
            bit = int(_w16(1 << shift_amount))        # Dup<int16_t>(1 << kShiftAmount)
            result = _select(_mask((remainder & bit) != 0), _srdhm16(result, multiplier), result)
    if k > 5:
        clamp = _const16(-(1 << (36 - k)))             # -32 in Qk
        result = _select(_mask(a < clamp), 0, result)
    result = _select(_mask(a == 0), _one(0), result)
    return result


def _one_over_one_plus_x_for_x_in_0_1(a):
    """F0 -> F0: 1 / (1 + a), Newton-Raphson in F2."""
    half_denominator = _rounding_half_sum(a, _one(0))
    c48_17 = _const16(1515870810)
    c_neg32_17 = _const16(-1010580540)
    x = _add(c48_17, _srdhm16(half_denominator, c_neg32_17))          # F2
    for _ in range(3):
        hdx = _srdhm16(half_denominator, x)                             # F0*F2 = F2
        one_minus = _sub(_one(2), hdx)                                  # F2
        x = _add(x, _rescale(_srdhm16(x, one_minus), 4, 2))             # F2*F2 = F4 -> F2
    return _rescale(x, 1, 0)                                            # ExactMulByPot<-1>: F2 raw as F1


def _one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """F0 -> F0: (1 - a) / (1 + a), Newton-Raphson in F2."""
    half_denominator = _rounding_half_sum(a, _one(0))
    c48_17 = _const16(1515870810)
    c_neg32_17 = _const16(-1010580540)
    x = _add(c48_17, _srdhm16(half_denominator, c_neg32_17))
    for _ in range(3):
        hdx = _srdhm16(half_denominator, x)
        one_minus = _sub(_one(2), hdx)
        x = _add(x, _rescale(_srdhm16(x, one_minus), 4, 2))
    return _rescale(_sub(x, _one(2)), 2, 0)


def _logistic(a, k):
    """gemmlowp::logistic(FixedPoint<int16, k>) -> F0 raw."""
    mask_if_positive = _mask(a > 0)
    mask_if_zero = _mask(a == 0)
    abs_input = _select(mask_if_positive, a, _neg(a))
    result_if_positive = _one_over_one_plus_x_for_x_in_0_1(_exp_on_negative_values(_neg(abs_input), k))
    result_if_negative = _sub(_one(0), result_if_positive)
    one_half = _const16(1 << 30)
    return _select(mask_if_zero, one_half,
                   _select(mask_if_positive, result_if_positive, result_if_negative))


def _tanh(a, k):
    """gemmlowp::tanh(FixedPoint<int16, k>) -> F0 raw."""
    mask_if_negative = _mask(a < 0)
    mask_if_zero = _mask(a == 0)
    n = _select(mask_if_negative, a, _neg(a))
    # neg_tanh_on_negative_values: ExactMulByPot<1> reinterprets n as FixedPoint<int16, k + 1>.
    t = _one_minus_x_over_one_plus_x_for_x_in_0_1(_exp_on_negative_values(n, k + 1))
    return _select(mask_if_zero, 0, _select(mask_if_negative, _neg(t), t))


def _all_inputs():
    return np.arange(_I16_MIN, _I16_MAX + 1, dtype=np.int64)


def _finish(raw):
    assert raw.min() >= _I16_MIN and raw.max() <= _I16_MAX
    out = raw.astype(np.int16)
    out.setflags(write=False)
    return out


def _disk_cached(name, compute):
    """A table from the user cache (keyed by this file's hash) or computed and stored there: computing one
    costs ~35 ms, a large share of a no-JIT process's cold start. Any cache problem just recomputes."""
    import hashlib
    import os
    from pathlib import Path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
        path = Path(base) / "edgelstm" / f"table-{name}-{digest}.npy"
        table = np.load(path)
        if table.dtype == np.int16 and table.shape == (65536,):
            table.setflags(write=False)
            return table
    except (OSError, ValueError):
        pass
    table = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        os.replace(tmp, path)
    except (OSError, NameError):
        pass
    return table


@functools.lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """np.int16[65536]: gemmlowp::logistic(FixedPoint<int16_t, 3>::FromRaw(x)).raw() at index x + 32768
    (TFLite PortableApplySigmoid: Q3.12 in, Q0.15 out). Read-only, cached (memory and user disk cache)."""
    return _disk_cached("sigmoid", lambda: _finish(_logistic(_all_inputs(), 3)))


@functools.lru_cache(maxsize=None)
def tanh_table(integer_bits: int) -> np.ndarray:
    """np.int16[65536]: gemmlowp::tanh(FixedPoint<int16_t, integer_bits>::FromRaw(x)).raw() at index
    x + 32768 (TFLite PortableApplyTanh<IntegerBits>, integer_bits 0..6, Q0.15 out). Read-only, cached."""
    k = int(integer_bits)
    if k != integer_bits or not 0 <= k <= 6:
        raise ValueError(f"tanh_table: integer_bits must be an int in 0..6, got {integer_bits!r}")
    return _disk_cached(f"tanh{k}", lambda: _finish(_tanh(_all_inputs(), k)))


# LiteRT's int16 LOGISTIC / TANH (reference kernels, also what its optimized resolvers run for non-power-of-two
# input scales) interpolate this table: sigmoid(i / 24) in unsigned 0.16 fixed point, i = 0..255, as the
# constants shipped in TFLite's kernels/internal (not a formula: several entries differ from round(65536 *
# sigmoid(i / 24)) by one). Checked exhaustively against LiteRT (tests/test_int16_ops.py).
SIGMOID_TABLE_U16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
], dtype=np.int64)

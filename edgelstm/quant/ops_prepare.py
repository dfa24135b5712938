"""prepare() for the TFLite int8 op kernels of the op-graph kind (edgelstm/kernels/ops_int8.py): all float math,
once, as LiteRT's Prepare does it.

Scale ratios are formed in double from the float32 tensor scales (as LiteRT's C++ does) and turned into
(multiplier, shift) by QuantizeMultiplier, refused (ModelError) when MBQM cannot apply the shift; lookup tables
for LOGISTIC/TANH are filled in float32 like LiteRT's LUTPopulate (dequantize, transform, round half away,
clamp); a DEQUANTIZE -> QUANTIZE float island is a function of one int8 value, so it is a 256-entry table too.
"""
import numpy as np

from ..errors import ModelError
from ..limits import ACT16_MULT_RANGE, ACT16_SHIFT_RANGE, CONV16_SHIFT_RANGE
from .multiplier import quantize_multiplier_checked as _qm
from .tables import SIGMOID_TABLE_U16

INT8_LO, INT8_HI = -128, 127
INT16_LO, INT16_HI = -32768, 32767


def _f32(v) -> float:
    return float(np.float32(v))


def _round_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def activation_range(act: int, scale: float, zero_point: int, *, bits: int = 8) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 / int16 outputs; act is TFLite's fused activation code
    (0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6); TfLiteRound rounds half away from zero."""
    def q(v):
        return zero_point + int(_round_away(np.float64(np.float32(v) / np.float32(scale))))

    t_lo, t_hi = (INT8_LO, INT8_HI) if bits == 8 else (INT16_LO, INT16_HI)
    lo, hi = {0: (t_lo, t_hi), 1: (q(0.0), t_hi), 2: (q(-1.0), q(1.0)), 3: (q(0.0), q(6.0))}[act]
    return max(t_lo, lo), min(t_hi, hi)


def prepare_add(*, s_a, s_b, s_out, bits: int = 8):
    """ADD/SUB: inputs << left_shift (20 for int8, 15 for int16: LiteRT's general-scale int16 path), rescaled
    to 2*max(s_a, s_b). Returns a dict of kernel scalars."""
    left_shift = 20 if bits == 8 else 15
    twice_max = 2.0 * max(_f32(s_a), _f32(s_b))
    ma, sa = _qm(_f32(s_a) / twice_max)
    mb, sb = _qm(_f32(s_b) / twice_max)
    mo, so = _qm(twice_max / ((1 << left_shift) * _f32(s_out)))
    return dict(mult_a=ma, shift_a=sa, mult_b=mb, shift_b=sb, left_shift=left_shift, mult_out=mo, shift_out=so)


def prepare_mul(*, s_a, s_b, s_out):
    """MUL int8: s_a * s_b / s_out in double."""
    return _qm(_f32(s_a) * _f32(s_b) / _f32(s_out))


def prepare_requantize(*, s_in, s_out):
    """QUANTIZE int8->int8: s_in / s_out in double."""
    return _qm(_f32(s_in) / _f32(s_out))


def prepare_relu(*, s_in, s_out):
    """RELU / RELU6 int8: LiteRT's ReluPrepare divides the two float32 scales in FLOAT32 (then widens to double),
    unlike QUANTIZE (measured on all three resolvers: docs/litert_conv_measurements.md)."""
    return _qm(float(np.float32(np.float32(s_in) / np.float32(s_out))))


def lookup_table(fn: str, *, s_in, zp_in, s_out, zp_out) -> np.ndarray:
    """LiteRT LUTPopulate<int8_t> for LOGISTIC ('logistic') or TANH ('tanh'): int8 table indexed x + 128."""
    x = np.arange(-128, 128, dtype=np.int32)
    deq = np.float32(s_in) * (x - np.int32(zp_in)).astype(np.float32)
    if fn == "logistic":
        # std::exp on float32 (correctly rounded in glibc): evaluate in double, round once to float32 (inf when
        # it overflows, as expf: the table entry is then 0)
        with np.errstate(over="ignore"):
            e = np.exp(-deq.astype(np.float64)).astype(np.float32)
        y = np.float32(1.0) / (np.float32(1.0) + e)
    elif fn == "tanh":
        y = np.tanh(deq.astype(np.float64)).astype(np.float32)
    else:
        raise ValueError(f"no lookup table for {fn!r}")
    inv = np.float32(1.0) / np.float32(s_out)
    prod = (y * inv).astype(np.float32).astype(np.float64)                  # exact widening
    q = _round_away(prod).astype(np.int64) + int(zp_out)
    return np.clip(q, INT8_LO, INT8_HI).astype(np.int8)


def float_requantize_table(*, s_in, zp_in, s_out, zp_out) -> np.ndarray:
    """DEQUANTIZE (float32(double(scale) * (q - zp))) then QUANTIZE float32 -> int8
    (round-half-away(v / float32(scale)) + zp, clamped), as LiteRT's reference kernels: a table over q."""
    x = np.arange(-128, 128, dtype=np.int64)
    deq = (float(np.float32(s_in)) * (x - int(zp_in)).astype(np.float64)).astype(np.float32)
    v = (deq / np.float32(s_out)).astype(np.float32).astype(np.float64)
    q = _round_away(v).astype(np.int64) + int(zp_out)
    return np.clip(q, INT8_LO, INT8_HI).astype(np.int8)


def conv16_multipliers(w_scales, in_scale, out_scale) -> list[int]:
    """LiteRT's 16x8 CONV_2D Prepare, per output channel: QuantizeMultiplier(double(s_in) * double(w_scale[c]) /
    double(s_out)); (multiplier, shift) pairs. The kernel requantizes with the int64 MultiplyByQuantizedMultiplier
    (multiplier reduced to 16 bits, one rounding), defined for shifts in [-31, 7]."""
    lo, hi = CONV16_SHIFT_RANGE
    out = []
    for w in np.asarray(w_scales, np.float32):
        real = _f32(in_scale) * float(w) / _f32(out_scale)
        m, shift = _qm(real)
        if m == 0 or not lo <= shift <= hi:   # m == 0: QuantizeMultiplier flushed a shift below -31 to (0, 0)
            raise ModelError(f"int16 conv effective scale {real:.6g} needs a shift outside [{lo}, {hi}]")
        out.extend((m, shift))
    return out


def act16_table(mult: int, shift: int, *, tanh: bool) -> np.ndarray:
    """LiteRT's int16 LOGISTIC / TANH reference kernel (reference_integer_ops::Logistic / Tanh, zero points 0,
    output scale 2^-15) evaluated on every int16 input: the (65536,) int16 table the JIT kernels look up,
    entry ``x + 32768`` for input x.  v = (x * mult + round) >> shift, then linear interpolation in the
    256-entry uint16 sigmoid table at |v| (9 fraction bits for logistic, 8 for tanh: tanh(x) =
    2 sigmoid(2x) - 1), mirrored for v < 0.  One lookup per element replaces the interpolation's two
    gathers and selects (0.27 -> 0.035 us for a 64-element op here); the C runtime, short of flash, interpolates
    (og_act16)."""
    tab = SIGMOID_TABLE_U16.astype(np.int64)
    x = np.arange(INT16_LO, INT16_HI + 1, dtype=np.int64)
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    v = (x * int(mult) + rnd) >> shift
    u = np.abs(v)
    frac = 8 if tanh else 9
    j = np.minimum(u >> frac, 254)
    res = (tab[j] << frac) + (u & ((1 << frac) - 1)) * (tab[j + 1] - tab[j])
    if tanh:
        res = np.where((u >> 8) >= 255, 0xFFFF << 8, res)
        out = np.where(v >= 0, res - (1 << 23) + (1 << 7), -res + (1 << 23) + (1 << 7) - 1) >> 8
    else:
        res = np.where((u >> 9) >= 255, 0x7FFF << 10, res)
        out = np.where(v >= 0, res + (1 << 9), (1 << 25) - res + (1 << 9) - 1) >> 10
    return out.astype(np.int16)


def magnitude_table(*, s_in, zp_in, s_out, zp_out) -> np.ndarray:
    """The int8 magnitude sqrt(a^2 + b^2) of every int8 pair, as LiteRT computes it between DEQUANTIZE and QUANTIZE
    in float32: a' = float32(s_in) * float32(a - zp_in) (exact: DEQUANTIZE's double product rounds to the same
    float32), sqrt(a' * a' + b' * b') in float32 (correctly rounded MUL, ADD, SQRT), then QUANTIZE: round half away
    from zero of the float32 quotient by s_out, + zp_out, saturated. (65536,) int16, entry (a + 128) * 256 + b + 128:
    the JIT looks it up; the C runtime computes it."""
    q = np.arange(-128, 128, dtype=np.int32)
    deq = np.float32(s_in) * (q - np.int32(zp_in)).astype(np.float32)
    sq = deq * deq
    m = np.sqrt(sq[:, None] + sq[None, :])                       # float32 throughout
    v = (m / np.float32(s_out)).astype(np.float64)
    out = _round_away(v).astype(np.int64) + int(zp_out)
    return np.clip(out, INT8_LO, INT8_HI).astype(np.int16).ravel()


def _checked_log2(x: float) -> tuple[bool, int]:
    """TFLite CheckedLog2 in float32: (is log2(x) within 1e-3 of an integer, that integer)."""
    xl = np.float32(np.float32(np.log(np.float32(x))) * (np.float32(1.0) / np.float32(np.log(np.float32(2.0)))))
    r = np.float32(np.round(xl))
    return bool(abs(np.float32(xl - r)) < np.float32(1e-3)), int(r)


def prepare_act16(s_in: float, *, tanh: bool) -> tuple[int, int]:
    """LiteRT's int16 LOGISTIC / TANH Prepare (3 integer bits): (input_multiplier, input_left_shift) for the
    reference kernel, already in its kernel form (a power-of-two scale gives multiplier 3 << shift, shift 0).
    The optimized resolvers run a different algorithm for power-of-two input scales; edgelstm's own int16
    graphs keep those scales off powers of two (cellgraph.py), where all resolvers run the reference."""
    pot, log2 = _checked_log2(s_in)
    shift = 12 + log2
    if pot and (shift in (0, 1) if tanh else shift == 0):
        return 3 << shift, 0
    m = _f32(s_in) * 4096.0 * 3.0
    shift = 0
    while m <= ACT16_MULT_RANGE[1] / 2.0 and shift <= ACT16_SHIFT_RANGE[1]:
        shift += 1
        m *= 2.0
    if int(m) > ACT16_MULT_RANGE[1] or shift > ACT16_SHIFT_RANGE[1]:
        # 32768 * mult + 2^(shift-1) must stay below 2^31 (the kernel's int32 arithmetic)
        raise ModelError(f"int16 {'TANH' if tanh else 'LOGISTIC'} input scale {s_in:.6g} is outside the range "
                         f"LiteRT's int16 kernel handles")
    return int(m), shift

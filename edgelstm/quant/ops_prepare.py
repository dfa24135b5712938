"""prepare() for the TFLite int8 op kernels of the op-graph kind (edgelstm/kernels/ops_int8.py): all float math,
once, as LiteRT's Prepare does it.

Scale ratios are formed in double from the float32 tensor scales (as LiteRT's C++ does) and turned into
(multiplier, shift) by QuantizeMultiplier, refused (ModelError) when MBQM cannot apply the shift; lookup tables
for LOGISTIC/TANH are filled in float32 like LiteRT's LUTPopulate (dequantize, transform, round half away,
clamp); a DEQUANTIZE -> QUANTIZE float island is a function of one int8 value, so it is a 256-entry table too.
"""
import numpy as np

INT8_LO, INT8_HI = -128, 127


def _f32(v) -> float:
    return float(np.float32(v))


def _qm(real: float) -> tuple[int, int]:
    from ..runtime import _qm_exact
    return _qm_exact(real)


def _round_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs; act is TFLite's fused activation code
    (0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6); TfLiteRound rounds half away from zero."""
    def q(v):
        return zero_point + int(_round_away(np.float64(np.float32(v) / np.float32(scale))))

    lo, hi = {0: (INT8_LO, INT8_HI), 1: (q(0.0), INT8_HI), 2: (q(-1.0), q(1.0)), 3: (q(0.0), q(6.0))}[act]
    return max(INT8_LO, lo), min(INT8_HI, hi)


def prepare_add(*, s_a, s_b, s_out):
    """ADD/SUB int8: left_shift 20, inputs rescaled to 2*max(s_a, s_b). Returns a dict of kernel scalars."""
    left_shift = 20
    twice_max = 2.0 * max(_f32(s_a), _f32(s_b))
    ma, sa = _qm(_f32(s_a) / twice_max)
    mb, sb = _qm(_f32(s_b) / twice_max)
    mo, so = _qm(twice_max / ((1 << left_shift) * _f32(s_out)))
    return dict(mult_a=ma, shift_a=sa, mult_b=mb, shift_b=sb, left_shift=left_shift, mult_out=mo, shift_out=so)


def prepare_mul(*, s_a, s_b, s_out):
    """MUL int8: s_a * s_b / s_out in double."""
    return _qm(_f32(s_a) * _f32(s_b) / _f32(s_out))


def prepare_requantize(*, s_in, s_out):
    """QUANTIZE int8->int8 and RELU int8: s_in / s_out in double."""
    return _qm(_f32(s_in) / _f32(s_out))


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

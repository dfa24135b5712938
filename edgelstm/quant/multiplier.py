"""Real multiplier -> (int32 Q0.31 multiplier, power-of-two shift), as TFLite does it.

Mirrors TFLite QuantizeMultiplier(double, int32_t*, int*) in
tensorflow/lite/kernels/internal/quantization_util.cc (non-TFLITE_EMULATE_FLOAT path, default
double-rounding build, i.e. no shift > 30 saturation):

    q = frexp(m, &shift)                    # m = q * 2^shift, q in [0.5, 1)
    q_fixed = TfLiteRound(q * 2^31)         # std::round: half away from zero
    if q_fixed == 2^31: q_fixed /= 2; ++shift
    if shift < -31: shift = 0; q_fixed = 0  # flush tiny multipliers to zero
    m == 0 -> (0, 0)

so that m ~= q_fixed * 2^(shift - 31), and mbqm(x, q_fixed, shift) ~= x * m.
"""
import math

import numpy as np

from ..errors import ModelError
from ..limits import FC_SHIFT_RANGE, MBQM_SHIFT_RANGE, MULTIPLIER_RANGE

__all__ = ["quantize_multiplier", "quantize_multiplier_checked", "quantize_multiplier_f32", "MBQM_SHIFT_RANGE",
           "scale_f32", "conv_multipliers", "fc_multipliers", "quantized_clip", "fold_zero_point", "wrap32"]



def quantize_multiplier(real: float) -> tuple[int, int]:
    """Return (quantized_multiplier, shift) for a non-negative finite real multiplier.

    ``real`` is typically a scale product computed in float32 and converted to double; it is used as is
    (converted to a Python float, which is exact for float32/float64 inputs) and not rounded further.
    Negative multipliers raise ValueError (LSTM effective scales are always positive).
    """
    m = float(real)
    if not math.isfinite(m):
        raise ValueError(f"quantize_multiplier: multiplier must be finite, got {real!r}")
    if m < 0.0:
        raise ValueError(f"quantize_multiplier: multiplier must be >= 0, got {real!r}")
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)                   # std::frexp
    scaled = q * 2147483648.0                  # exact: multiplication by a power of two
    # TfLiteRound == std::round (half away from zero); scaled > 0 here. Split off the integer part
    # exactly (floor of a double is exact) instead of adding 0.5, which could itself round.
    whole = math.floor(scaled)
    q_fixed = int(whole) + (1 if scaled - whole >= 0.5 else 0)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_checked(r: float) -> tuple[int, int]:
    """QuantizeMultiplier of a double, refused (ModelError) when MBQM cannot apply its shift."""
    try:
        m, shift = quantize_multiplier(r)
    except ValueError as e:
        raise ModelError(f"effective scale {r!r} cannot be quantized: {e}") from None
    lo, hi = MBQM_SHIFT_RANGE
    if not MULTIPLIER_RANGE[0] <= m <= MULTIPLIER_RANGE[1] or not lo <= shift <= hi:
        raise ModelError(f"effective scale {r:.6g} needs a multiplier shift of {shift}, outside the supported "
                         f"range [{lo}, {hi}] (scale ratio must lie below 2^{hi}); the model's quantization "
                         f"scales are inconsistent")
    return m, shift


def quantize_multiplier_f32(real) -> tuple[int, int]:
    """QuantizeMultiplier of a float32 effective scale, refused when MBQM cannot apply it.  Every model (loaded,
    quantized or imported) goes through prepare() and so through this one check."""
    return quantize_multiplier_checked(float(np.float32(real)))


def scale_f32(w_scale, in_scale, out_scale):
    """TFLite Prepare's float32 effective scale: w_scale * in_scale / out_scale, evaluated left to right."""
    return np.float32(np.float32(w_scale) * np.float32(in_scale)) / np.float32(out_scale)


def conv_multipliers(w_scales, in_scale, out_scale) -> list[int]:
    """LiteRT's per-channel Prepare (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED): per output channel the
    effective scale in double, input_scale * filter_scale[c] / output_scale (each a float32 widened to double),
    QuantizeMultiplier: flat (multiplier, shift) pairs."""
    out = []
    for w in np.asarray(w_scales, np.float32):
        out.extend(quantize_multiplier_checked(float(np.float32(in_scale)) * float(w) / float(np.float32(out_scale))))
    return out


def fc_multipliers(w_scales, in_scale, out_scale) -> list[int]:
    """``conv_multipliers`` for int8 FULLY_CONNECTED, whose single-rounding form shifts right by 31 - shift:
    shifts in FC_SHIFT_RANGE (limits.py)."""
    out = conv_multipliers(w_scales, in_scale, out_scale)
    for shift in out[1::2]:
        if not FC_SHIFT_RANGE[0] <= shift <= FC_SHIFT_RANGE[1]:
            raise ModelError(f"Dense effective scale needs a multiplier shift of {shift}; LiteRT's "
                             f"FULLY_CONNECTED supports shifts up to {FC_SHIFT_RANGE[1]}")
    return out


def quantized_clip(clip: float, scale: float, limit: int) -> int:
    """LiteRT's Prepare: static_cast<intN>(min(max(float32(clip) / float32(scale), -limit-1), limit)),
    a float32 division truncated toward zero; 0 (no clipping) when clip is 0 or rounds to 0."""
    if clip <= 0:
        return 0
    q = np.float32(np.float32(clip) / np.float32(scale))
    return int(min(max(q, np.float32(-limit - 1)), np.float32(limit)))


def wrap32(a: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's-complement wrap (C semantics of TFLite's int32 accumulations)."""
    return ((np.asarray(a, dtype=np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def fold_zero_point(bias: np.ndarray | None, weights: np.ndarray, zero_point: int) -> np.ndarray:
    """TFLite PrecomputeZeroPointTimesWeightWithBias: bias - zp * rowsum(weights), int32."""
    rows = weights.shape[0]
    b = np.zeros(rows, np.int64) if bias is None else bias.astype(np.int64)
    return wrap32(b - int(zero_point) * weights.astype(np.int64).sum(axis=1))

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

__all__ = ["quantize_multiplier"]


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

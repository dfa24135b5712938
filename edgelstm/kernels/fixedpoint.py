"""Scalar int32 fixed-point primitives with exact C semantics, for use inside @njit kernels.

Mirrors (ported, not copied):
  * gemmlowp fixedpoint/fixedpoint.h: SaturatingRoundingDoublingHighMul<int32_t>,
    RoundingDivideByPOT<int32_t>;
  * TFLite tensorflow/lite/kernels/internal/common.{h,cc}: MultiplyByQuantizedMultiplier(int32_t x, ...)
    in its default *double-rounding* form (TFLITE_SINGLE_ROUNDING=0).

Numba promotes int32 arithmetic to int64, so every function widens its arguments to np.int64, does the
arithmetic there, and re-wraps to the int32 range explicitly where C would truncate. All results are
np.int64 values inside the int32 range (boxed as Python ints when called from Python). The functions
are plain scalar functions (no closures, no Python objects): they inline into other @njit kernels and
accept explicit integer signatures for AOT compilation.
"""
import numpy as np
from numba import njit

from ..config import NJIT_OPTS

INT32_MIN = -2147483648
INT32_MAX = 2147483647
INT16_MIN = -32768
INT16_MAX = 32767
INT8_MIN = -128
INT8_MAX = 127


@njit(**NJIT_OPTS)
def wrap32(x):
    """Two's-complement truncation to int32 (what static_cast<int32_t> does on every real compiler)."""
    v = np.int64(x) & np.int64(0xFFFFFFFF)
    if v >= np.int64(0x80000000):
        v -= np.int64(0x100000000)
    return v


@njit(**NJIT_OPTS)
def sat16(x):
    """Clamp to [-32768, 32767] (std::min/std::max against the int16 limits)."""
    v = np.int64(x)
    if v > INT16_MAX:
        v = np.int64(INT16_MAX)
    elif v < INT16_MIN:
        v = np.int64(INT16_MIN)
    return v


@njit(**NJIT_OPTS)
def sat8(x):
    """Clamp to [-128, 127]."""
    v = np.int64(x)
    if v > INT8_MAX:
        v = np.int64(INT8_MAX)
    elif v < INT8_MIN:
        v = np.int64(INT8_MIN)
    return v


@njit(**NJIT_OPTS)
def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul<int32_t> (ARM VQRDMULH).

    (a*b + nudge) / 2^31 with C truncating division, nudge = 2^30 if a*b >= 0 else 1 - 2^30;
    INT32_MIN * INT32_MIN saturates to INT32_MAX. Arguments are converted to int32 as a C call would.
    """
    a64 = wrap32(a)
    b64 = wrap32(b)
    ab = a64 * b64                                   # |ab| <= 2^62: exact in int64
    if ab >= 0:
        num = ab + np.int64(1 << 30)
    else:
        num = ab + np.int64(1 - (1 << 30))
    # C '/' truncates toward zero; '>>' floors. For num < 0 add (2^31 - 1) first: ceil == trunc.
    if num < 0:
        num += np.int64((1 << 31) - 1)
    q = num >> np.int64(31)
    if a64 == b64 and a64 == INT32_MIN:
        return np.int64(INT32_MAX)
    return wrap32(q)


@njit(**NJIT_OPTS)
def rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT<int32_t>: round-to-nearest arithmetic right shift, exponent 0..31.

    mask = 2^e - 1; remainder = x & mask; threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    result = (x >> e) + (remainder > threshold ? 1 : 0)   (ties round away from zero).
    """
    x64 = wrap32(x)
    e = np.int64(exponent)
    mask = (np.int64(1) << e) - np.int64(1)
    remainder = x64 & mask
    threshold = mask >> np.int64(1)
    if x64 < 0:
        threshold += np.int64(1)
    r = x64 >> e                                     # arithmetic shift, as gemmlowp assumes
    if remainder > threshold:
        r += np.int64(1)
    return r


@njit(**NJIT_OPTS)
def mbqm(x, multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplier(int32_t x, int32_t quantized_multiplier, int shift),
    double-rounding form:
        left_shift = max(shift, 0); right_shift = max(-shift, 0)
        RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * (1 << left_shift), m), right_shift)
    The x * (1 << left_shift) product wraps to int32 as on two's-complement hardware.
    Valid shifts: -31..+31 (TFLite uses -31..+7)."""
    s = np.int64(shift)
    left = s if s > 0 else np.int64(0)
    right = np.int64(0) if s > 0 else -s
    xs = wrap32(wrap32(x) << left)
    return rdbpot(srdhm(xs, multiplier), right)

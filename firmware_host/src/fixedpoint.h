/* gemmlowp / TFLite fixed-point primitives with exact C semantics (docs/contract.md).
 * Assumes two's-complement int32 with arithmetic right shift of negative values (every compiler we build
 * with); wrapping conversions are written with unsigned arithmetic so no step has undefined behaviour. */
#ifndef ELSTM_FIXEDPOINT_H
#define ELSTM_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t elstm_wrap32(int64_t x)
{
    uint32_t u = (uint32_t)((uint64_t)x & 0xFFFFFFFFu);
    return u < 0x80000000u ? (int32_t)u : (int32_t)(u - 0x80000000u) - INT32_MAX - 1;
}

static inline int16_t elstm_wrap16(int32_t x)
{
    uint32_t u = (uint32_t)x & 0xFFFFu;
    return u < 0x8000u ? (int16_t)u : (int16_t)((int32_t)u - 65536);
}

/* saturation of a sum formed in int64 (an int32 result plus an int16 or a zero point can leave int32) */
static inline int32_t elstm_sat16(int64_t x) { return (int32_t)(x > 32767 ? 32767 : (x < -32768 ? -32768 : x)); }
static inline int32_t elstm_sat8(int64_t x) { return (int32_t)(x > 127 ? 127 : (x < -128 ? -128 : x)); }

/* SaturatingRoundingDoublingHighMul<int32_t> */
static inline int32_t elstm_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));   /* C division truncates, as gemmlowp's */
}

/* RoundingDivideByPOT<int32_t>, exponent 0..31 */
static inline int32_t elstm_rdbpot(int32_t x, int32_t exponent)
{
    int64_t mask = ((int64_t)1 << exponent) - 1;
    int64_t remainder = (int64_t)x & mask;
    int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* MultiplyByQuantizedMultiplier, double-rounding form; x << left wraps as on the hardware */
static inline int32_t elstm_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    int32_t xs = elstm_wrap32((int64_t)(((uint32_t)x) << left));
    return elstm_rdbpot(elstm_srdhm(xs, multiplier), right);
}

#endif

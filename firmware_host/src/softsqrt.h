/* The float32 square root correctly rounded to nearest, in integer arithmetic: for builds without a floating-point
 * unit (soft-float ARM such as a Cortex-M4 built -mfloat-abi=soft, or -DELSTM_SOFT_SQRT), where libm's sqrtf
 * brings its errno wrapper and newlib's reentrancy struct (1 KiB of RAM) along. fdlibm's bit-by-bit method
 * (e_sqrtf.c): the 24-bit significand (doubled for an odd exponent) yields 25 root bits, the last one a rounding
 * bit; a square root is never exactly half-way between two floats, so adding that bit rounds to nearest (when the
 * root is exact the bit is 0). Equal to a correctly rounded sqrtf for +0 and every positive normal float
 * (harness/sqrt_check.c: all 2^31 - 2^23 of them in the slow test); the magnitude passes nothing else (a sum of
 * two squares of scales >= 1e-12, at most 2^57). */
#ifndef ELSTM_SOFTSQRT_H
#define ELSTM_SOFTSQRT_H

#include <stdint.h>
#include <string.h>

static inline float elstm_sqrt_f32(float x)
{
    uint32_t ix, rem, q = 0, s = 0, bit = 0x01000000u;
    int32_t be, half_exp;
    memcpy(&ix, &x, sizeof ix);
    if (ix == 0) {
        return x;
    }
    be = (int32_t)(ix >> 23);                         /* biased exponent, 1..254 */
    rem = (ix & 0x007FFFFFu) | 0x00800000u;           /* x = rem * 2^(be - 150) */
    if ((be & 1) == 0) {                              /* odd unbiased exponent: make it even */
        rem += rem;
    }
    half_exp = ((be & 1) ? be - 127 : be - 128) / 2;  /* exact: an even number halved */
    rem += rem;
    while (bit != 0) {                                /* q = the root's 25 bits, rem = what is left */
        uint32_t t = s + bit;
        if (t <= rem) {
            s = t + bit;
            rem -= t;
            q += bit;
        }
        rem += rem;
        bit >>= 1;
    }
    q += q & 1;                                       /* round to nearest (no ties; exact roots end in 0) */
    ix = (uint32_t)((int32_t)(q >> 1) + 0x3F000000 + half_exp * (1 << 23));
    memcpy(&x, &ix, sizeof x);
    return x;
}

#endif

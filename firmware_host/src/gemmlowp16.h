/* gemmlowp's int16 fixed-point logistic and tanh (fixedpoint/fixedpoint.h), computed: the same values as
 * the 65,536-entry tables quant/tables.py builds (tested exhaustively, tests/test_firmware.py), for bundles
 * exported without tables (flash ~ the int8 weights). A port of quant/tables.py, operation for operation:
 * int16 values are held in int32; elstm_wrap16 is C's static_cast<int16_t>, and gemmlowp saturates only
 * where it says so (SaturatingAdd, SaturatingRoundingDoublingHighMul, SaturatingRoundingMultiplyByPOT). */
#ifndef ELSTM_GEMMLOWP16_H
#define ELSTM_GEMMLOWP16_H

#include "fixedpoint.h"

static int32_t g16_srdhm(int32_t a, int32_t b)   /* SaturatingRoundingDoublingHighMul<int16_t> */
{
    int32_t ab = a * b;
    if (a == b && a == -32768) {
        return 32767;
    }
    return elstm_wrap16((ab + (ab >= 0 ? (1 << 14) : 1 - (1 << 14))) / (1 << 15));   /* C '/' truncates */
}

static int32_t g16_pot(int32_t x, int32_t exponent)   /* SaturatingRoundingMultiplyByPOT<exponent> */
{
    int32_t threshold;
    if (exponent <= 0) {
        return exponent == 0 ? x : elstm_rdbpot(x, -exponent);
    }
    threshold = (1 << (15 - exponent)) - 1;
    return x > threshold ? 32767 : (x < -threshold ? -32768 : elstm_wrap16(x * (1 << exponent)));
}

static int32_t g16_const(int32_t raw32) { return elstm_wrap16(elstm_rdbpot(raw32, 16)); }   /* int32 -> int16 */
static int32_t g16_const_pot(int32_t k, int32_t e) { return elstm_wrap16(1 << (15 - k + e)); }
static int32_t g16_one(int32_t k) { return k == 0 ? 32767 : 1 << (15 - k); }

static int32_t g16_half_sum(int32_t a, int32_t b)   /* RoundingHalfSum<int16_t> */
{
    int32_t s = a + b;
    return elstm_wrap16((s + (s >= 0 ? 1 : -1)) / 2);
}

/* F0 -> F0: exp(a) for a in [-1/4, 0), Taylor expansion around -1/8 */
static int32_t g16_exp_quarter(int32_t a)
{
    int32_t constant_term = g16_const(1895147668), one_third = g16_const(715827883);
    int32_t x = elstm_wrap16(a + g16_const_pot(0, -3));
    int32_t x2 = g16_srdhm(x, x), x3 = g16_srdhm(x2, x), x4 = g16_srdhm(x2, x2);
    int32_t inner = elstm_wrap16(g16_srdhm(elstm_wrap16(g16_pot(x4, -2) + x3), one_third) + x2);
    int32_t s = constant_term + g16_srdhm(constant_term, elstm_wrap16(x + g16_pot(inner, -1)));
    return elstm_sat16(s);
}

/* FixedPoint<int16, k> a <= 0 -> F0: exp(a) (GEMMLOWP_EXP_BARREL_SHIFTER) */
static int32_t g16_exp_negative(int32_t a, int32_t k)
{
    static const int32_t barrel[7][2] = {{-2, 1672461947}, {-1, 1302514674}, {0, 790015084}, {1, 290630308},
                                         {2, 39332535}, {3, 720401}, {4, 242}};
    int32_t one_quarter = g16_const_pot(k, -2), i;
    int32_t a_mod = elstm_wrap16((a & elstm_wrap16(one_quarter - 1)) - one_quarter);
    int32_t result = g16_exp_quarter(g16_pot(a_mod, k));
    int32_t remainder = elstm_wrap16(a_mod - a);
    for (i = 0; i < 7; ++i) {
        if (k > barrel[i][0] && (remainder & elstm_wrap16(1 << (15 - k + barrel[i][0]))) != 0) {
            result = g16_srdhm(result, g16_const(barrel[i][1]));
        }
    }
    if (k > 5 && a < g16_const(-(1 << (36 - k)))) {
        result = 0;
    }
    return a == 0 ? g16_one(0) : result;
}

/* F0 -> F2 Newton-Raphson for 1 / (1 + a), a in [0, 1] (shared by 1/(1+x) and (1-x)/(1+x)) */
static int32_t g16_newton(int32_t a)
{
    int32_t half_denominator = g16_half_sum(a, g16_one(0)), i;
    int32_t x = elstm_wrap16(g16_const(1515870810) + g16_srdhm(half_denominator, g16_const(-1010580540)));
    for (i = 0; i < 3; ++i) {
        int32_t one_minus = elstm_wrap16(g16_one(2) - g16_srdhm(half_denominator, x));
        x = elstm_wrap16(x + g16_pot(g16_srdhm(x, one_minus), 2));
    }
    return x;
}

/* gemmlowp::logistic(FixedPoint<int16, k>::FromRaw(a)).raw() */
static int32_t elstm_logistic16(int32_t a, int32_t k)
{
    int32_t abs_input = a > 0 ? a : elstm_wrap16(-a);
    int32_t positive = g16_pot(g16_newton(g16_exp_negative(elstm_wrap16(-abs_input), k)), 1);
    if (a == 0) {
        return g16_const(1 << 30);
    }
    return a > 0 ? positive : elstm_wrap16(g16_one(0) - positive);
}

/* gemmlowp::tanh(FixedPoint<int16, k>::FromRaw(a)).raw() */
static int32_t elstm_tanh16(int32_t a, int32_t k)
{
    int32_t n = a < 0 ? a : elstm_wrap16(-a);
    int32_t t = g16_pot(elstm_wrap16(g16_newton(g16_exp_negative(n, k + 1)) - g16_one(2)), 2);
    if (a == 0) {
        return 0;
    }
    return a < 0 ? elstm_wrap16(-t) : t;
}

#endif

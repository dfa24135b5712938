/* Integer-only interpreter over edgelstm's prepared program: a port of kernels/cells_int8.py (LSTM, Dense),
 * kernels/ops_int8.py (op graphs: converter-made cell graphs and edgelstm's own int8 GRU / RNN, which
 * prepare() lowers to int16 op graphs, edgelstm/program/cellgraph.py), kernels/frontend.py (the conv front-end
 * kinds: Conv1D, and pad / magnitude / activation / context as map records) and the one-frame path of
 * kernels/program.py (same records, same arithmetic, same order). */
#include <string.h>

#include "edgelstm.h"
#include "elstm_records.h"
#include "fixedpoint.h"

/* What this build compiles. A bundle's generated elstm_records.h names the layer kinds of its model
 * (ELSTM_WITH_LSTM, ELSTM_WITH_DENSE, ELSTM_WITH_OPS, ELSTM_WITH_CONV; ELSTM_WITH_MAP for pad / activation /
 * context records, ELSTM_WITH_MAGNITUDE for magnitude records, the one float32 kernel), whether a Dense layer ends in softmax
 * (ELSTM_WITH_SOFTMAX: the runtime's one float epilogue) and, for op graphs, the op kernels its records use
 * (ELSTM_WITH_OP_FC, _CONV16, _ACT16, _ADD (ADD / SUB), _MUL, _REQUANT, _LUT; COPY comes with every op
 * graph) and whether its graphs have constant tensors (_OP_CONSTS) or int8 state tensors with zero points or
 * requantization tables (_OP_STATE8), both only in converter-made graphs, so the runtime holds only that
 * code. With none of the kind macros (the native library, the test harness, a bundle built with
 * -DELSTM_ALL_KINDS) every kind, activation and op is compiled, and an op-graph build without op macros has
 * every op. elstm_init rejects a record of a kind, activation or op this build
 * left out: it never runs. */
#if !defined(ELSTM_WITH_LSTM) && !defined(ELSTM_WITH_DENSE) && !defined(ELSTM_WITH_OPS) && !defined(ELSTM_WITH_CONV) \
    && !defined(ELSTM_WITH_MAP) && !defined(ELSTM_WITH_MAGNITUDE)
#define ELSTM_WITH_LSTM 1
#define ELSTM_WITH_DENSE 1
#define ELSTM_WITH_OPS 1
#define ELSTM_WITH_SOFTMAX 1
#define ELSTM_WITH_CONV 1
#define ELSTM_WITH_MAP 1
#define ELSTM_WITH_MAGNITUDE 1
#endif
#ifndef ELSTM_WITH_DENSE
#undef ELSTM_WITH_SOFTMAX
#endif
#if defined(ELSTM_WITH_OPS) && !defined(ELSTM_WITH_OP_FC) && !defined(ELSTM_WITH_OP_CONV16) \
    && !defined(ELSTM_WITH_OP_ACT16) && !defined(ELSTM_WITH_OP_ADD) && !defined(ELSTM_WITH_OP_MUL) \
    && !defined(ELSTM_WITH_OP_REQUANT) && !defined(ELSTM_WITH_OP_LUT) && !defined(ELSTM_WITH_OP_CONSTS) \
    && !defined(ELSTM_WITH_OP_STATE8)
#define ELSTM_WITH_OP_CONSTS 1
#define ELSTM_WITH_OP_STATE8 1
#define ELSTM_WITH_OP_FC 1
#define ELSTM_WITH_OP_CONV16 1
#define ELSTM_WITH_OP_ACT16 1
#define ELSTM_WITH_OP_ADD 1
#define ELSTM_WITH_OP_MUL 1
#define ELSTM_WITH_OP_REQUANT 1
#define ELSTM_WITH_OP_LUT 1
#endif
#ifndef ELSTM_WITH_OPS   /* op kernels exist only inside op graphs */
#undef ELSTM_WITH_OP_FC
#undef ELSTM_WITH_OP_CONV16
#undef ELSTM_WITH_OP_ACT16
#undef ELSTM_WITH_OP_ADD
#undef ELSTM_WITH_OP_MUL
#undef ELSTM_WITH_OP_REQUANT
#undef ELSTM_WITH_OP_LUT
#undef ELSTM_WITH_OP_CONSTS
#undef ELSTM_WITH_OP_STATE8
#endif
#if defined(ELSTM_WITH_LSTM) || defined(ELSTM_WITH_DENSE) || defined(ELSTM_WITH_CONV)
#define ELSTM_WITH_DOT 1   /* the int8 dot loop of LSTM, Dense and conv layers */
#endif
#if defined(ELSTM_WITH_MAP) || defined(ELSTM_WITH_MAGNITUDE)
#define ELSTM_WITH_MAP_KIND 1   /* map records (KIND_MAP): pad, activation, context; magnitude */
#endif
#ifdef ELSTM_WITH_MAGNITUDE   /* the float32 magnitude's square root: libm's where an FPU computes it */
#if defined(ELSTM_SOFT_SQRT) || defined(__SOFTFP__) || (defined(__riscv) && !defined(__riscv_flen))
#include "softsqrt.h"
#define ELSTM_SQRTF elstm_sqrt_f32
#else
#include <math.h>
#define ELSTM_SQRTF sqrtf
#endif
#endif
#ifdef ELSTM_WITH_LSTM
#include "gemmlowp16.h"
#endif

#ifdef ELSTM_WITH_DOT
/* The dot loop: acc[r] = wrap32(sum_c W[r, c] * v[c]) over int8 weights W (rows, cols), row-major and
 * unpadded, and int16 vectors v holding int8 values (every dot input is an int8 activation: a layer input,
 * an LSTM's int8 hidden state, its int8 hidden before projection). Sums are taken modulo 2^32,
 * in uint32 in C so a wrap is defined behaviour (the Numba kernel sums in int64 and truncates: same bits);
 * addition mod 2^32 is associative, so the SIMD paths may sum in any order and still give the same bits.
 * vpmaddwd's one overflow case (both pairs -32768 * -32768) cannot occur with int8 weights, and would wrap
 * to the same bits anyway (2^31 mod 2^32). */
static int32_t dot_tail(const int8_t *row, const int16_t *v, int32_t c, int32_t cols, uint32_t s)
{
    for (; c < cols; ++c) {
        s += (uint32_t)((int32_t)row[c] * (int32_t)v[c]);
    }
    return elstm_wrap32((int64_t)s);
}
#endif

#ifndef ELSTM_WITH_DOT
#define ELSTM_DOT_PATH "none"   /* no LSTM, Dense or conv layer in this build: no dot loop */

#elif !defined(ELSTM_NO_SIMD) && defined(__AVX2__)
#include <immintrin.h>
#define ELSTM_DOT_PATH "avx2"

/* 16 int8 weights widened to int16 times 16 int16 inputs, pairwise summed into 8 int32 lanes */
#define MADD16(s, w, x) _mm256_add_epi32((s), _mm256_madd_epi16( \
    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w))), (x)))
#define MADD8(s, w, x) _mm_add_epi32((s), _mm_madd_epi16( \
    _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(w))), (x)))
#define HALVES(s) _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256((s), 1))

static void dot_rows(const int8_t *w, int32_t rows, int32_t cols, const int16_t *v, int32_t *acc)
{
    int32_t r = 0, c, c16 = cols & ~15, c8 = cols & ~7;
    for (; r + 4 <= rows; r += 4) {   /* four rows at once: one horizontal reduction per 4 sums */
        const int8_t *w0 = w + (int64_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        __m128i t0, t1, t2, t3;
        for (c = 0; c < c16; c += 16) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(v + c));
            s0 = MADD16(s0, w0 + c, x);
            s1 = MADD16(s1, w1 + c, x);
            s2 = MADD16(s2, w2 + c, x);
            s3 = MADD16(s3, w3 + c, x);
        }
        t0 = HALVES(s0);
        t1 = HALVES(s1);
        t2 = HALVES(s2);
        t3 = HALVES(s3);
        if (c8 > c16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(v + c16));
            t0 = MADD8(t0, w0 + c16, x);
            t1 = MADD8(t1, w1 + c16, x);
            t2 = MADD8(t2, w2 + c16, x);
            t3 = MADD8(t3, w3 + c16, x);
        }
        _mm_storeu_si128((__m128i *)(void *)(acc + r),
                         _mm_hadd_epi32(_mm_hadd_epi32(t0, t1), _mm_hadd_epi32(t2, t3)));
        if (c8 < cols) {
            for (c = 0; c < 4; ++c) {
                acc[r + c] = dot_tail(w0 + (int64_t)c * cols, v, c8, cols, (uint32_t)acc[r + c]);
            }
        }
    }
    for (; r < rows; ++r) {
        acc[r] = dot_tail(w + (int64_t)r * cols, v, 0, cols, 0);
    }
}

#elif !defined(ELSTM_NO_SIMD) && defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#if defined(__ARM_FEATURE_DOTPROD)
#define ELSTM_DOT_PATH "neon-sdot"
#define MAC16(s, w, x) vdotq_s32((s), vld1q_s8(w), (x))   /* 4 int8 products per int32 lane */
#else
#define ELSTM_DOT_PATH "neon"
/* int8 x int8 -> int16 products (|p| <= 2^14, exact), pairwise added into int32 lanes */
static int32x4_t mac16(int32x4_t s, const int8_t *w, int8x16_t x)
{
    int8x16_t a = vld1q_s8(w);
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(a), vget_low_s8(x)));
    return vpadalq_s16(s, vmull_high_s8(a, x));
}
#define MAC16(s, w, x) mac16((s), (w), (x))
#endif
#define MAC8(s, w, x) vpadalq_s16((s), vmull_s8(vld1_s8(w), (x)))

static void dot_rows(const int8_t *w, int32_t rows, int32_t cols, const int16_t *v, int32_t *acc)
{
    int32_t r = 0, c, c16 = cols & ~15, c8 = cols & ~7;
    for (; r + 4 <= rows; r += 4) {
        const int8_t *w0 = w + (int64_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
        for (c = 0; c < c16; c += 16) {   /* v holds int8 values: narrowing is exact */
            int8x16_t x = vcombine_s8(vmovn_s16(vld1q_s16(v + c)), vmovn_s16(vld1q_s16(v + c + 8)));
            s0 = MAC16(s0, w0 + c, x);
            s1 = MAC16(s1, w1 + c, x);
            s2 = MAC16(s2, w2 + c, x);
            s3 = MAC16(s3, w3 + c, x);
        }
        if (c8 > c16) {
            int8x8_t x = vmovn_s16(vld1q_s16(v + c16));
            s0 = MAC8(s0, w0 + c16, x);
            s1 = MAC8(s1, w1 + c16, x);
            s2 = MAC8(s2, w2 + c16, x);
            s3 = MAC8(s3, w3 + c16, x);
        }
        vst1q_s32(acc + r, vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3)));
        if (c8 < cols) {
            for (c = 0; c < 4; ++c) {
                acc[r + c] = dot_tail(w0 + (int64_t)c * cols, v, c8, cols, (uint32_t)acc[r + c]);
            }
        }
    }
    for (; r < rows; ++r) {
        acc[r] = dot_tail(w + (int64_t)r * cols, v, 0, cols, 0);
    }
}

#elif !defined(ELSTM_NO_SIMD) && defined(__ARM_NEON) && !defined(__aarch64__)
#include <arm_neon.h>
#define ELSTM_DOT_PATH "neon32-vmlal"

/* 32-bit ARM with NEON (armv7 Raspberry Pis, 32-bit Pi OS on any Pi): 8 int8 weights widened to int16, times 8
 * int16 inputs, multiply-accumulated into 4 int32 lanes (vmlal_s16; lanes wrap like the int32 sum) */
#define MAC8_32(s, w, x) do { int16x8_t w_ = vmovl_s8(vld1_s8(w)); \
    (s) = vmlal_s16(vmlal_s16((s), vget_low_s16(w_), vget_low_s16(x)), vget_high_s16(w_), vget_high_s16(x)); } while (0)
#define PAIR32(s) vpadd_s32(vget_low_s32(s), vget_high_s32(s))

static void dot_rows(const int8_t *w, int32_t rows, int32_t cols, const int16_t *v, int32_t *acc)
{
    int32_t r = 0, c, c8 = cols & ~7;
    for (; r + 4 <= rows; r += 4) {   /* four rows share each input vector */
        const int8_t *w0 = w + (int64_t)r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
        for (c = 0; c < c8; c += 8) {
            int16x8_t x = vld1q_s16(v + c);
            MAC8_32(s0, w0 + c, x);
            MAC8_32(s1, w1 + c, x);
            MAC8_32(s2, w2 + c, x);
            MAC8_32(s3, w3 + c, x);
        }
        vst1_s32(acc + r, vpadd_s32(PAIR32(s0), PAIR32(s1)));
        vst1_s32(acc + r + 2, vpadd_s32(PAIR32(s2), PAIR32(s3)));
        if (c8 < cols) {
            for (c = 0; c < 4; ++c) {
                acc[r + c] = dot_tail(w0 + (int64_t)c * cols, v, c8, cols, (uint32_t)acc[r + c]);
            }
        }
    }
    for (; r < rows; ++r) {
        acc[r] = dot_tail(w + (int64_t)r * cols, v, 0, cols, 0);
    }
}

#elif !defined(ELSTM_NO_SIMD) && defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_DSP) && !defined(__aarch64__)
#include <arm_acle.h>
#define ELSTM_DOT_PATH "dsp-smlad"

/* Cortex-M4/M7/M33 DSP: SXTB16 splits 4 int8 weights into int16 pairs (w0, w2) and (w1, w3); SMLAD adds two
 * int16 x int16 products to an int32 accumulator, wrapping (the Q flag it sets is ignored). */
static uint32_t pair16(int16_t lo, int16_t hi) { return (uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16); }

#define SMLAD4(s, w, v02, v13) do { uint32_t q_; memcpy(&q_, (w), 4); \
    (s) = __smlad(__sxtb16((int8x4_t)q_), (int16x2_t)(v02), (s)); \
    (s) = __smlad(__sxtb16((int8x4_t)((q_ >> 8) | (q_ << 24))), (int16x2_t)(v13), (s)); } while (0)

static void dot_rows(const int8_t *w, int32_t rows, int32_t cols, const int16_t *v, int32_t *acc)
{
    int32_t r = 0, c, c4 = cols & ~3;
    for (; r + 2 <= rows; r += 2) {   /* two rows share each input pair (four spill registers on a Cortex-M4) */
        const int8_t *w0 = w + (int64_t)r * cols, *w1 = w0 + cols;
        int32_t s0 = 0, s1 = 0;
        for (c = 0; c < c4; c += 4) {
            uint32_t v02 = pair16(v[c], v[c + 2]), v13 = pair16(v[c + 1], v[c + 3]);
            SMLAD4(s0, w0 + c, v02, v13);
            SMLAD4(s1, w1 + c, v02, v13);
        }
        acc[r] = dot_tail(w0, v, c4, cols, (uint32_t)s0);
        acc[r + 1] = dot_tail(w1, v, c4, cols, (uint32_t)s1);
    }
    if (r < rows) {
        acc[r] = dot_tail(w + (int64_t)r * cols, v, 0, cols, 0);
    }
}

#else
#define ELSTM_DOT_PATH "portable"

static void dot_rows(const int8_t *w, int32_t rows, int32_t cols, const int16_t *v, int32_t *acc)
{
    int32_t r;
    for (r = 0; r < rows; ++r) {
        acc[r] = dot_tail(w + (int64_t)r * cols, v, 0, cols, 0);
    }
}
#endif

const char *elstm_dot_path(void) { return ELSTM_DOT_PATH; }

#ifdef ELSTM_WITH_LSTM
/* gate = sat16(mbqm(wrap32(bias + acc)) [+ gate]), one (mult, shift) pair per gate block */
static void requant_acc16(const int32_t *acc, const int32_t *bias, const int32_t *m, int32_t n_blocks,
                          int32_t block, int16_t *gate, int accumulate)
{
    int32_t g, r;
    for (g = 0; g < n_blocks; ++g) {
        int32_t mult = m[2 * g], shift = m[2 * g + 1];
        for (r = 0; r < block; ++r) {
            int32_t i = g * block + r;
            int32_t v = elstm_mbqm(elstm_wrap32((int64_t)acc[i] + bias[i]), mult, shift);
            gate[i] = (int16_t)elstm_sat16((int64_t)v + (accumulate ? gate[i] : 0));
        }
    }
}

/* gemmlowp activations: by table (off >= 0: blob[off + x + 32768], quant/tables.py) or computed (off < 0: the
 * bundle was exported without tables). bits: LOGISTIC_Q3 for the Q3.12 logistic, 0..6 for tanh on
 * FixedPoint<int16, bits>. */
#define LOGISTIC_Q3 (-1)

static int32_t act1(const int16_t *blob, int32_t off, int32_t bits, int32_t x)
{
    if (off >= 0) {
        return blob[off + x + 32768];
    }
    return bits == LOGISTIC_Q3 ? elstm_logistic16(x, 3) : elstm_tanh16(x, bits);
}

static void lut16(const int16_t *blob, int32_t off, int32_t bits, int16_t *v, int32_t n)
{
    int32_t i;
    if (off >= 0) {
        const int16_t *table = blob + off;
        for (i = 0; i < n; ++i) {
            v[i] = table[(int32_t)v[i] + 32768];
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        v[i] = (int16_t)act1(blob, off, bits, v[i]);
    }
}

static void lstm_peephole(const int32_t *prog, int32_t rec, const int16_t *blob, int32_t row, const int16_t *c,
                          int32_t hidden, int16_t *gate)
{
    const int16_t *w = blob + prog[rec + LS_PEEP] + row * hidden;
    int32_t mult = prog[rec + LS_MP + 2 * row], shift = prog[rec + LS_MP + 2 * row + 1];
    int32_t r;
    for (r = 0; r < hidden; ++r) {
        int32_t v = elstm_mbqm((int32_t)w[r] * (int32_t)c[r], mult, shift);
        gate[r] = (int16_t)elstm_sat16((int64_t)v + gate[r]);
    }
}

static void lstm_step(const int32_t *prog, int32_t rec, int32_t flags, const int8_t *w8, const int16_t *blob,
                      const int16_t *x, int32_t n_in, int16_t *state, int32_t hidden, int32_t n_rec, int16_t *out,
                      int16_t *gates, int32_t *acc, int16_t *hid)
{
    int32_t H = hidden, r;
    int16_t *h = state;
    int16_t *c = state + n_rec;
    int16_t *o = gates + 3 * H;
    int32_t sig = prog[rec + LS_SIG], tanh_c = prog[rec + LS_TANH_CELL], cell_bits = 15 + prog[rec + LS_CELL_EXP];
    int32_t shift_ig = 30 + prog[rec + LS_CELL_EXP];
    int32_t m_hid = prog[rec + LS_MHID], s_hid = prog[rec + LS_MHID + 1], zp_hid = prog[rec + LS_HID_ZP];
    int32_t cell_clip = prog[rec + LS_CELL_CLIP], proj_clip = prog[rec + LS_PROJ_CLIP];

    dot_rows(w8 + prog[rec + LS_WX], 4 * H, n_in, x, acc);
    requant_acc16(acc, prog + prog[rec + LS_BX], prog + rec + LS_MX, 4, H, gates, 0);
    dot_rows(w8 + prog[rec + LS_WH], 4 * H, n_rec, h, acc);
    requant_acc16(acc, prog + prog[rec + LS_BH], prog + rec + LS_MH, 4, H, gates, 1);
    if (flags & FLAG_PEEP) {
        lstm_peephole(prog, rec, blob, 0, c, H, gates);          /* i uses c(t-1) */
        lstm_peephole(prog, rec, blob, 1, c, H, gates + H);      /* f uses c(t-1) */
    }
    lut16(blob, sig, LOGISTIC_Q3, gates, 2 * H);
    lut16(blob, prog[rec + LS_TANH3], 3, gates + 2 * H, H);
    for (r = 0; r < H; ++r) {   /* TFLite UpdateLstmCellInteger; int16 casts truncate as its CwiseMul */
        int16_t fc = elstm_wrap16(elstm_rdbpot((int32_t)gates[H + r] * (int32_t)c[r], 15));
        int16_t ig = elstm_wrap16(elstm_rdbpot((int32_t)gates[r] * (int32_t)gates[2 * H + r], shift_ig));
        c[r] = (int16_t)elstm_sat16((int32_t)fc + (int32_t)ig);
    }
    if (cell_clip > 0) {        /* TFLite CwiseClipping of the quantized cell */
        for (r = 0; r < H; ++r) {
            c[r] = (int16_t)(c[r] > cell_clip ? cell_clip : (c[r] < -cell_clip ? -cell_clip : c[r]));
        }
    }
    if (flags & FLAG_PEEP) {
        lstm_peephole(prog, rec, blob, 2, c, H, o);              /* o uses c(t) */
    }
    lut16(blob, sig, LOGISTIC_Q3, o, H);
    for (r = 0; r < H; ++r) {   /* hidden = o * tanh(c), requantized to int8 */
        int32_t t = act1(blob, tanh_c, cell_bits, c[r]);
        hid[r] = (int16_t)elstm_sat8((int64_t)elstm_mbqm((int32_t)o[r] * t, m_hid, s_hid) + zp_hid);
    }
    if (flags & FLAG_PROJ) {
        const int32_t *bias = prog + prog[rec + LS_BPROJ];
        int32_t m_p = prog[rec + LS_MPROJ], s_p = prog[rec + LS_MPROJ + 1], zp_out = prog[rec + LS_OUT_ZP];
        dot_rows(w8 + prog[rec + LS_PROJ], n_rec, H, hid, acc);
        for (r = 0; r < n_rec; ++r) {
            h[r] = (int16_t)elstm_sat8((int64_t)elstm_mbqm(elstm_wrap32((int64_t)acc[r] + bias[r]), m_p, s_p)
                                       + zp_out);
        }
        if (proj_clip > 0) {    /* TFLite clips the raw int8 values, zero point ignored */
            for (r = 0; r < n_rec; ++r) {
                h[r] = (int16_t)(h[r] > proj_clip ? proj_clip : (h[r] < -proj_clip ? -proj_clip : h[r]));
            }
        }
    } else {
        for (r = 0; r < H; ++r) {
            h[r] = hid[r];
        }
    }
    for (r = 0; r < n_rec; ++r) {
        out[r] = h[r];
    }
}
#endif   /* ELSTM_WITH_LSTM */

#ifdef ELSTM_WITH_DENSE
/* LiteRT FULLY_CONNECTED (reference int8): per-channel requantization with TFLite's single-rounding
 * MultiplyByQuantizedMultiplier, (x * m + 2^(30 - shift)) >> (31 - shift); shift <= 30 (checked by prepare) */
static int64_t elstm_mbqm_single(int32_t x, int32_t multiplier, int32_t shift)
{
    int32_t t = 31 - shift;
    return ((int64_t)x * (int64_t)multiplier + ((int64_t)1 << (t - 1))) >> t;
}

#ifdef ELSTM_WITH_SOFTMAX
static float elstm_table_f32(const int32_t *table, int32_t i)
{
    float v;
    int32_t bits = table[i < 0 ? 0 : (i > 255 ? 255 : i)];
    memcpy(&v, &bits, sizeof v);
    return v;
}
#endif

static void dense_step(const int32_t *prog, int32_t rec, const int8_t *w8, const int16_t *x, int32_t n_in,
                       int32_t n_out, int16_t *y, int32_t *logits)
{
    const int32_t *bias = prog + prog[rec + DN_B];
    const int32_t *m = prog + prog[rec + DN_M];   /* per output channel (mult, shift) pairs */
    int32_t zp = prog[rec + DN_PRE_ZP];
    int32_t act = prog[rec + DN_ACT];
    int32_t lut = prog[rec + DN_LUT];   /* sigmoid / tanh: an int8 table in w8; softmax: float bits in prog */
    int32_t r;
    dot_rows(w8 + prog[rec + DN_W], n_out, n_in, x, logits);
    for (r = 0; r < n_out; ++r) {
        int64_t v = elstm_mbqm_single(elstm_wrap32((int64_t)logits[r] + bias[r]), m[2 * r], m[2 * r + 1]) + zp;
        logits[r] = (int32_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
    }
    if (act == ACT_NONE) {
        for (r = 0; r < n_out; ++r) y[r] = (int16_t)logits[r];
    } else if (act == ACT_RELU) {
        for (r = 0; r < n_out; ++r) y[r] = (int16_t)(logits[r] > zp ? logits[r] : zp);
#ifdef ELSTM_WITH_SOFTMAX
    } else if (act == ACT_SOFTMAX) {
        /* LiteRT's int8 SOFTMAX: a float32 exp table (stored as bits in prog) and float32 arithmetic in its
         * order; the one float epilogue of the int8 path (LiteRT computes int8 softmax so). */
        int32_t q_max = -128;
        float total = 0.0f, inv;
        for (r = 0; r < n_out; ++r) q_max = logits[r] > q_max ? logits[r] : q_max;
        for (r = 0; r < n_out; ++r) total = total + elstm_table_f32(prog + lut, q_max - logits[r]);
        inv = 1.0f / (total * 0.00390625f);
        for (r = 0; r < n_out; ++r) {   /* round half away (p >= 0) - 128: output scale 1/256, zp -128 */
            float p = elstm_table_f32(prog + lut, q_max - logits[r]) * inv;
            int64_t q = (int64_t)((double)p + 0.5) - 128;
            y[r] = (int16_t)(q > 127 ? 127 : (q < -128 ? -128 : q));
        }
#endif
    } else {   /* sigmoid, tanh: 256-entry int8 table */
        for (r = 0; r < n_out; ++r) y[r] = w8[lut + logits[r] + 128];
    }
}
#endif   /* ELSTM_WITH_DENSE */

/* ---- front-end layers (kinds "conv1d", and "pad" / "magnitude" / "activation" / "context" as map records): a
 * port of kernels/frontend.py. A frame is (length, channels), channels last: element l * channels + c. Every
 * field was checked by elstm_init (conv_ok, map_ok). */
#if defined(ELSTM_WITH_CONV) || defined(ELSTM_WITH_MAP)
/* The input position that padded position p (relative to the unpadded start) reads, or -1 for a pad (the zero
 * point). Reflection does not repeat the edge (torch's / ONNX's "reflect"); elstm_init keeps pads < length. */
static int32_t source_position(int32_t p, int32_t length, int32_t reflect)
{
    if (p >= 0 && p < length) {
        return p;
    }
    if (!reflect) {
        return -1;
    }
    return p < 0 ? -p : 2 * (length - 1) - p;
}
#endif

#if defined(ELSTM_WITH_MAP) || defined(ELSTM_WITH_CONV)
/* a 256-entry int8 table at index v + 128, clamped: a read never leaves the table */
static int16_t lut8(const int8_t *table, int32_t v)
{
    v += 128;
    return table[v < 0 ? 0 : (v > 255 ? 255 : v)];
}
#endif

#ifdef ELSTM_WITH_CONV
/* LiteRT's int8 CONV_2D / DEPTHWISE_CONV_2D, one output position at a time (acc: O int32; win: the K x C
 * window of a full conv), so RAM is one window and one row of accumulators whatever the output length. A full
 * conv gathers the window (pads hold the input zero point: with the zero point folded into the bias they add
 * 0, as in LiteRT) and takes the dot loop over its (O, K * C) int8 matrix (the JIT's matrix has zero rows up to
 * whole pairwise blocks; the C copy holds the O real rows); a depthwise conv sums its K taps per output
 * channel o, reading input channel o / mult, modulo 2^32 as the dot loop (the Numba kernel sums in int64 and
 * truncates: same bits). Then per channel: mbqm(wrap32(acc + bias)) with the channel's (multiplier, shift)
 * (double rounding), + the output zero point, clamped to the fused relu / relu6 range; a fused sigmoid / tanh
 * then maps through its 256-entry int8 table (in w8). */
static void conv_step(const int32_t *prog, int32_t rec, const int8_t *w8, const int16_t *x, int16_t *y,
                      int32_t *acc, int16_t *win)
{
    const int32_t *r = prog + rec;
    const int32_t *bias = prog + r[CV_B], *m = prog + r[CV_M];
    const int8_t *w = w8 + r[CV_W];
    int32_t L = r[CV_LEN_IN], C = r[CV_CIN], O = r[CV_COUT], K = r[CV_K], stride = r[CV_STRIDE];
    int32_t dil = r[CV_DIL], reflect = r[CV_REFLECT], mult = r[CV_MULT], zp_in = r[CV_ZP_IN];
    int32_t zp_out = r[CV_ZP_OUT], lo = r[CV_LO], hi = r[CV_HI], lut = r[CV_LUT], l, k, c, o;
    for (l = 0; l < r[CV_LOUT]; ++l) {
        int32_t first = l * stride - r[CV_PADL];
        int16_t *yl = y + l * O;
        if (mult == 0) {
            for (k = 0; k < K; ++k) {
                int32_t p = source_position(first + k * dil, L, reflect);
                int16_t *dst = win + k * C;
                if (p < 0) {
                    for (c = 0; c < C; ++c) dst[c] = (int16_t)zp_in;
                } else {
                    for (c = 0; c < C; ++c) dst[c] = x[p * C + c];
                }
            }
            dot_rows(w, O, K * C, win, acc);
        } else {
            for (k = 0; k < K; ++k) {   /* tap 0 starts the sums (no zeroing loop: gcc makes that a memset) */
                int32_t p = source_position(first + k * dil, L, reflect);
                for (o = 0; o < O; ++o) {
                    int32_t v = p < 0 ? zp_in : x[p * C + o / mult];
                    acc[o] = elstm_wrap32((k > 0 ? (int64_t)acc[o] : 0) + (int32_t)w[o * K + k] * v);
                }
            }
        }
        for (o = 0; o < O; ++o) {
            int64_t v = (int64_t)elstm_mbqm(elstm_wrap32((int64_t)acc[o] + bias[o]), m[2 * o], m[2 * o + 1]) + zp_out;
            int32_t q = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
            yl[o] = lut >= 0 ? lut8(w8 + lut, q) : (int16_t)q;
        }
    }
}
#endif

#ifdef ELSTM_WITH_MAGNITUDE
/* The int8 magnitude sqrt(a^2 + b^2), as LiteRT computes it between DEQUANTIZE and QUANTIZE in float32 (and
 * prepare()'s table for the JIT, quant/ops_prepare.magnitude_table): a' = float32(s_in) * float32(a - zp_in),
 * a'^2 and b'^2 rounded to float32, their float32 sum, its square root (correctly rounded: sqrtf, or
 * softsqrt.h without an FPU), the float32 quotient by s_out rounded half away from zero, + zp_out, saturated.
 * The squares are volatile: each is rounded to float32 before the sum whatever the compiler's contraction
 * setting (with -ffp-contract=fast, gcc's default outside ISO C modes, a * a + b * b became one FMA, rounding
 * once: 2 of 65,536 pairs differed in a measured case; an exact double product rounded to float did not help,
 * gcc narrows it back to a float multiply and fuses that). The scales were checked by elstm_init (finite,
 * positive), so the quotient is a finite non-negative float; it is capped (a NaN would be too) and rounded in
 * float32 alone: v - floor(v) is exact, and a soft-float build links no double arithmetic for it. */
static int16_t magnitude8(int32_t a, int32_t b, float s_in, int32_t zp_in, float s_out, int32_t zp_out)
{
    float fa = s_in * (float)(a - zp_in), fb = s_in * (float)(b - zp_in);
    volatile float sq_a = fa * fa, sq_b = fb * fb;
    float v = ELSTM_SQRTF(sq_a + sq_b) / s_out;
    int32_t q;
    if (!(v <= 1024.0f)) {   /* saturates to 127 whatever the zero point */
        v = 1024.0f;
    }
    q = (int32_t)v;
    q += v - (float)q >= 0.5f;
    return (int16_t)elstm_sat8((int64_t)q + zp_out);
}

static float bits_f32(int32_t bits)
{
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
#endif

#ifdef ELSTM_WITH_MAP_KIND
/* A map record: pad (zero point or reflection), magnitude, an int8 activation table (in w8), or the context
 * (y = [the last K input values of the stream, x]; the K values live in the state block). */
static void map_step(const int32_t *prog, int32_t rec, const int8_t *w8, const int16_t *x, int32_t n_in,
                     int16_t *y, int16_t *state)
{
    const int32_t *r = prog + rec;
    int32_t op = r[MP_OP], i, c;
    (void)w8;
    (void)state;
    (void)n_in;
#ifdef ELSTM_WITH_MAP
    if (op == MAP_PAD) {
        int32_t C = r[4], n = r[3] + r[5] + r[6];
        for (i = 0; i < n; ++i) {
            int32_t p = source_position(i - r[5], r[3], r[7]);
            for (c = 0; c < C; ++c) y[i * C + c] = (int16_t)(p < 0 ? r[8] : x[p * C + c]);
        }
    } else if (op == MAP_ACTIVATION) {
        for (i = 0; i < n_in; ++i) y[i] = lut8(w8 + r[3], x[i]);
    } else if (op == MAP_CONTEXT) {
        int32_t K = r[3];
        int16_t *ctx = state + r[4];
        for (i = 0; i < K; ++i) y[i] = ctx[i];
        for (i = 0; i < n_in; ++i) y[K + i] = x[i];
        for (i = 0; i < K; ++i) ctx[i] = y[n_in + i];
    }
#endif
#ifdef ELSTM_WITH_MAGNITUDE
    if (op == MAP_MAGNITUDE) {
        int32_t C = r[4];
        float s_in = bits_f32(r[6]), s_out = bits_f32(r[8]);
        for (i = 0; i < r[3]; ++i) {
            const int16_t *a = x + i * 2 * C;
            for (c = 0; c < C; ++c) y[i * C + c] = magnitude8(a[c], a[C + c], s_in, r[5], s_out, r[7]);
        }
    }
#endif
}
#endif

/* ---- op-graph layers (kind "ops"): a port of kernels/ops_int8.py, the same fields, the same integer
 * arithmetic. Tensors live in an arena (st->gates, cfg->scratch elements) of int16 elements holding int8
 * values (converter graphs, the int8 ends of edgelstm's GRU / RNN cell graphs) or full int16 values (the
 * int16 intermediates and state of those cell graphs, edgelstm/program/cellgraph.py); the FC weights, the int8
 * 256-entry tables and constant tensors are in the int16 blob, the CONV16 weights in w8, the ACT16 sigmoid
 * table in prog. The C copy of the program (edgelstm/program/c_program.py c_program) stores each op record as the used
 * prefix of its fields (OPK_LEN_*: records follow each other), the CONV16 multipliers as one packed int32
 * per row and the ACT16 table as two uint16 entries per int32. Every offset was checked by elstm_init
 * (opgraph_ok). */
#ifdef ELSTM_WITH_OPS
/* the length of an op record, 0 for a code this build has no kernel for */
static int32_t op_len(int32_t op)
{
    switch (op) {
    case OPK_COPY:
        return OPK_LEN_COPY;
#ifdef ELSTM_WITH_OP_FC
    case OPK_FC:
        return OPK_LEN_FC;
#endif
#ifdef ELSTM_WITH_OP_CONV16
    case OPK_CONV16:
        return OPK_LEN_CONV16;
#endif
#ifdef ELSTM_WITH_OP_ACT16
    case OPK_ACT16:
        return OPK_LEN_ACT16;
#endif
#ifdef ELSTM_WITH_OP_ADD
    case OPK_ADD:
        return OPK_LEN_ADD;
    case OPK_SUB:
        return OPK_LEN_SUB;
#endif
#ifdef ELSTM_WITH_OP_MUL
    case OPK_MUL:
        return OPK_LEN_MUL;
#endif
#ifdef ELSTM_WITH_OP_REQUANT
    case OPK_REQUANT:
        return OPK_LEN_REQUANT;
#endif
#ifdef ELSTM_WITH_OP_LUT
    case OPK_LUT:
        return OPK_LEN_LUT;
#endif
    default:
        return 0;
    }
}

#if defined(ELSTM_WITH_OP_FC) || defined(ELSTM_WITH_OP_CONV16) || defined(ELSTM_WITH_OP_ADD) \
    || defined(ELSTM_WITH_OP_MUL) || defined(ELSTM_WITH_OP_REQUANT)
static int16_t og_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return (int16_t)(v < lo ? lo : (v > hi ? hi : v));
}
#endif

#if defined(ELSTM_WITH_OP_LUT) || defined(ELSTM_WITH_OP_STATE8)
static int32_t og_lut_index(int32_t v)   /* clamped: a table read never leaves the table */
{
    v += 128;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}
#endif

#ifdef ELSTM_WITH_OP_FC
static void og_fully_connected(const int32_t *r, const int32_t *prog, const int16_t *blob, int16_t *arena)
{
    int32_t x = r[1], K = r[2], zp_in = r[3], N = r[5], b_off = r[6], m_off = r[7];
    int32_t zp_out = r[9], lo = r[10], hi = r[11], o = r[12], n, k;
    for (n = 0; n < N; ++n) {   /* sum in int64 over int8 values: exact; wrap32 as the Numba kernel */
        const int16_t *row = blob + r[4] + (int64_t)n * K;
        int64_t acc = b_off < 0 ? 0 : prog[b_off + n];
        int32_t t = 31 - prog[m_off + 2 * n + 1];
        for (k = 0; k < K; ++k) {
            acc += ((int64_t)arena[x + k] - zp_in) * (int64_t)row[k];
        }
        acc = ((int64_t)elstm_wrap32(acc) * prog[m_off + 2 * n] + ((int64_t)1 << (t - 1))) >> t;
        arena[o + n] = og_clamp(acc + zp_out, lo, hi);
    }
}
#endif

#ifdef ELSTM_WITH_OP_CONV16
/* The conv's dot product sum_k x[k] * w[k], int16 inputs times int8 weights, exact. Every term is at most 2^22
 * in magnitude, so for K < 512 every partial sum fits int32 and the SIMD paths may sum in any order in int32
 * lanes (the same integer as the scalar int64 loop, which takes the tail and any longer K). */
#if !defined(ELSTM_NO_SIMD) && defined(__AVX2__)
#include <immintrin.h>
static int64_t og_dot16(const int16_t *x, const int8_t *w, int32_t K)
{
    int32_t k = 0;
    int64_t s = 0;
    if (K < 512) {
        __m256i a = _mm256_setzero_si256();
        __m128i h;
        for (; k + 16 <= K; k += 16) {
            a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(x + k)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w + k)))));
        }
        h = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        if (k + 8 <= K) {
            h = _mm_add_epi32(h, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + k)),
                _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(w + k)))));
            k += 8;
        }
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        s = _mm_cvtsi128_si32(h);
    }
    for (; k < K; ++k) {
        s += (int64_t)x[k] * (int64_t)w[k];
    }
    return s;
}
#elif !defined(ELSTM_NO_SIMD) && defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
static int64_t og_dot16(const int16_t *x, const int8_t *w, int32_t K)
{
    int32_t k = 0;
    int64_t s = 0;
    if (K < 512) {
        int32x4_t a = vdupq_n_s32(0), b = a;
        for (; k + 8 <= K; k += 8) {      /* int16 x int16 (widened int8) -> int32 multiply-accumulate */
            int16x8_t xv = vld1q_s16(x + k), wv = vmovl_s8(vld1_s8(w + k));
            a = vmlal_s16(a, vget_low_s16(xv), vget_low_s16(wv));
            b = vmlal_high_s16(b, xv, wv);
        }
        s = vaddvq_s32(vaddq_s32(a, b));
    }
    for (; k < K; ++k) {
        s += (int64_t)x[k] * (int64_t)w[k];
    }
    return s;
}
#else
static int64_t og_dot16(const int16_t *x, const int8_t *w, int32_t K)
{
    int64_t s = 0;
    int32_t k;
    for (k = 0; k < K; ++k) {
        s += (int64_t)x[k] * (int64_t)w[k];
    }
    return s;
}
#endif

/* Two's-complement truncation of a uint64 to int64 (no implementation-defined conversion). */
static int64_t og_wrap64(uint64_t u)
{
    return u < ((uint64_t)1 << 63) ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* LiteRT's 16x8 1x1 CONV_2D (reference_integer_ops::ConvPerChannel, int16 in / out, zero points 0): int64
 * accumulator over full int16 inputs and int8 weights (in w8), then its int64 MultiplyByQuantizedMultiplier:
 * the multiplier rounded to 16 bits (m16 0x4000..0x7FFF: a positive scale's), one rounding, t = 15 - shift in
 * 8..46. The rows' (m16, t) as c_program.conv16_packed stores them (m16 rounded as the Numba kernel rounds it):
 * two bytes a row, (t - t0) << 14 | (m16 - 0x4000), two rows per int32, t0 = r[8] (elstm_init checks it in
 * 8..43; c_program splits a conv whose shifts spread wider into records of row ranges). The sum cannot overflow
 * (K * N <= w8_len terms of at most 2^22); the product with m16 is formed in uint64 (wrapping as the Numba
 * kernel's int64 would; it cannot wrap for int8 weights and layer sizes of a real model) and the right shift
 * is arithmetic. */
static void og_conv16(const int32_t *r, const int32_t *prog, const int8_t *w8, int16_t *arena)
{
    int32_t x = r[1], K = r[2], N = r[5], b_off = r[6], m_off = r[7], t0 = r[8], lo = r[10], hi = r[11];
    int32_t o = r[12], n;
    for (n = 0; n < N; ++n) {
        const int8_t *row = w8 + r[4] + (int64_t)n * K;
        int64_t acc = (b_off < 0 ? 0 : prog[b_off + n]) + og_dot16(arena + x, row, K);
        uint32_t e = ((uint32_t)prog[m_off + (n >> 1)] >> ((n & 1) * 16)) & 0xFFFFu;
        int32_t t = t0 + (int32_t)(e >> 14);
        uint64_t p;
        p = (uint64_t)acc * (0x4000u + (e & 0x3FFFu)) + ((uint64_t)1 << (t - 1));
        /* LiteRT's int64 MultiplyByQuantizedMultiplier returns int32: truncated before the clamp */
        arena[o + n] = og_clamp(elstm_wrap32(og_wrap64(p) >> t), lo, hi);
    }
}
#endif

#ifdef ELSTM_WITH_OP_ACT16
/* entry j of the 256-entry uint16 table stored two per int32 (c_program.act16_packed) */
static int32_t og_tab16(const int32_t *tab, int32_t j)
{
    return (int32_t)(((uint32_t)tab[j >> 1] >> ((j & 1) * 16)) & 0xFFFFu);
}

/* LiteRT's int16 LOGISTIC / TANH (reference_integer_ops::Logistic / Tanh, zero points 0, output scale 2^-15):
 * v = (x * mult + round) >> left_shift, then linear interpolation in the 256-entry uint16 sigmoid table at |v|
 * (fb = 9 fraction bits for the logistic, 8 for tanh: tanh(x) = 2 sigmoid(2x) - 1), mirrored for v < 0. In
 * int32: elstm_init checks mult in 0..32767 (what LiteRT's Prepare makes) and left_shift in 0..31, so
 * |x * mult| + round < 2^31 and every interpolation term stays below 2^26. The result is truncated to int16
 * as the Numba kernel stores it (for the real table it fits). */
static void og_act16(const int32_t *r, const int32_t *prog, int16_t *arena)
{
    int32_t n = r[1], a = r[2], o = r[4], is_tanh = r[5], mult = r[6], shift = r[7], i;
    int32_t rnd = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    int32_t fb = 9 - is_tanh, out_shift = 10 - 2 * is_tanh, half = (int32_t)1 << (out_shift - 1);
    int32_t sat = is_tanh ? 0xFFFF << 8 : 0x7FFF << 10;
    int32_t pos = is_tanh ? -((int32_t)1 << 23) : 0, neg = is_tanh ? (int32_t)1 << 23 : (int32_t)1 << 25;
    const int32_t *tab = prog + r[8];
    for (i = 0; i < n; ++i) {
        int32_t v = ((int32_t)arena[a + i] * mult + rnd) >> shift;
        int32_t u = v < 0 ? -v : v, uh = u >> fb, res = sat;
        if (uh < 255) {
            int32_t ua = og_tab16(tab, uh);
            res = ua * ((int32_t)1 << fb) + (u & (((int32_t)1 << fb) - 1)) * (og_tab16(tab, uh + 1) - ua);
        }
        res = v >= 0 ? res + pos + half : neg - res + half - 1;
        arena[o + i] = elstm_wrap16(res >> out_shift);
    }
}
#endif

#ifdef ELSTM_WITH_OP_ADD
static void og_add_sub(const int32_t *r, int16_t *arena, int subtract)
{
    int32_t n = r[1], a = r[2], b = r[3], o = r[4], i;
    int64_t one = (int64_t)1 << r[11];
    for (i = 0; i < n; ++i) {
        int64_t u = elstm_mbqm(elstm_wrap32(((int64_t)arena[a + i] - r[5]) * one), r[6], r[7]);
        int64_t v = elstm_mbqm(elstm_wrap32(((int64_t)arena[b + i] - r[8]) * one), r[9], r[10]);
        int64_t raw = subtract ? u - v : u + v;
        arena[o + i] = og_clamp((int64_t)elstm_mbqm(elstm_wrap32(raw), r[12], r[13]) + r[14], r[15], r[16]);
    }
}
#endif

#ifdef ELSTM_WITH_OP_MUL
static void og_mul(const int32_t *r, int16_t *arena)
{
    int32_t n = r[1], a = r[2], b = r[3], o = r[4], i;
    for (i = 0; i < n; ++i) {
        int64_t p = ((int64_t)arena[a + i] - r[5]) * ((int64_t)arena[b + i] - r[6]);
        arena[o + i] = og_clamp((int64_t)elstm_mbqm(elstm_wrap32(p), r[7], r[8]) + r[9], r[10], r[11]);
    }
}
#endif

#ifdef ELSTM_WITH_OP_REQUANT
static void og_requantize(const int32_t *r, int16_t *arena)
{
    int32_t n = r[1], a = r[2], o = r[4], i;
    for (i = 0; i < n; ++i) {
        int64_t v = elstm_mbqm(elstm_wrap32((int64_t)arena[a + i] - r[5]), r[6], r[7]);
        arena[o + i] = og_clamp(v + r[8], r[9], r[10]);
    }
}
#endif

static void graph_step(const int32_t *prog, int32_t rec, const int8_t *w8, const int16_t *blob, const int16_t *x,
                       int16_t *state, int16_t *y, int16_t *arena)
{
    const int32_t *ss = prog + prog[rec + OG_STATES];
    const int32_t *r = prog + prog[rec + OG_OPS];
    int16_t *base = state + prog[rec + OG_STATE];
    int32_t i, k;
    (void)w8;   /* CONV16 weights (a build without CONV16 has none) */
    (void)blob;
#ifdef ELSTM_WITH_OP_CONSTS
    for (i = 0; i < prog[rec + OG_NCONST]; ++i) {   /* constants first: the arena is shared scratch */
        const int32_t *c = prog + prog[rec + OG_CONSTS] + i * OG_CONST_REC;
        for (k = 0; k < c[1]; ++k) arena[c[0] + k] = blob[c[2] + k];
    }
#endif
    for (k = 0; k < prog[rec + OG_NX]; ++k) arena[prog[rec + OG_X] + k] = x[k];
    for (i = 0; i < prog[rec + OG_NSTATE]; ++i) {
        const int32_t *e = ss + i * OG_STATE_REC;
        for (k = 0; k < e[2]; ++k) arena[e[0] + k] = base[e[3] + k];
    }
    for (i = 0; i < prog[rec + OG_NOPS]; ++i, r += op_len(r[0])) {   /* elstm_init admitted every code */
        int32_t op = r[0];
        if (op == OPK_COPY) {
            for (k = 0; k < r[1]; ++k) arena[r[4] + k] = arena[r[2] + k];
#ifdef ELSTM_WITH_OP_FC
        } else if (op == OPK_FC) {
            og_fully_connected(r, prog, blob, arena);
#endif
#ifdef ELSTM_WITH_OP_CONV16
        } else if (op == OPK_CONV16) {
            og_conv16(r, prog, w8, arena);
#endif
#ifdef ELSTM_WITH_OP_ACT16
        } else if (op == OPK_ACT16) {
            og_act16(r, prog, arena);
#endif
#ifdef ELSTM_WITH_OP_ADD
        } else if (op == OPK_ADD || op == OPK_SUB) {
            og_add_sub(r, arena, op == OPK_SUB);
#endif
#ifdef ELSTM_WITH_OP_MUL
        } else if (op == OPK_MUL) {
            og_mul(r, arena);
#endif
#ifdef ELSTM_WITH_OP_REQUANT
        } else if (op == OPK_REQUANT) {
            og_requantize(r, arena);
#endif
#ifdef ELSTM_WITH_OP_LUT
        } else if (op == OPK_LUT) {
            for (k = 0; k < r[1]; ++k) arena[r[4] + k] = blob[r[5] + og_lut_index(arena[r[2] + k])];
#endif
        }
    }
    for (k = 0; k < prog[rec + OG_NY]; ++k) y[k] = arena[prog[rec + OG_Y] + k];
    for (i = 0; i < prog[rec + OG_NSTATE]; ++i) {
        const int32_t *e = ss + i * OG_STATE_REC;
        for (k = 0; k < e[2]; ++k) {
#ifdef ELSTM_WITH_OP_STATE8
            base[e[3] + k] = e[4] < 0 ? arena[e[1] + k] : blob[e[4] + og_lut_index(arena[e[1] + k])];
#else
            base[e[3] + k] = arena[e[1] + k];
#endif
        }
    }
}
#endif   /* ELSTM_WITH_OPS */

/* ---- validation: elstm_init checks every record field before any kernel uses it, against the limits of
 * edgelstm/limits.py (ELSTM_LIM_* in the generated elstm_records.h: the Python loader's, one list). Every
 * length is checked before the fields it covers are read, and no check forms a sum or product that could
 * overflow: offsets go through span / inside, sizes are bounded by ELSTM_LIM_MAX_ELEMENTS (2^24) first. */

/* lo <= v <= hi */
static int in_range(int32_t v, int32_t lo, int32_t hi)
{
    return v >= lo && v <= hi;
}
#define LIM(v, name) in_range((v), ELSTM_LIM_##name##_MIN, ELSTM_LIM_##name##_MAX)

/* [off, off + n) inside [0, len) (n may be 0) */
static int span(int32_t off, int32_t n, int32_t len)
{
    return off >= 0 && n >= 0 && off <= len && n <= len - off;
}

/* a size in 1 .. ELSTM_LIM_MAX_ELEMENTS */
static int size_ok(int32_t n)
{
    return in_range(n, 1, ELSTM_LIM_MAX_ELEMENTS);
}

/* a (rows, cols) array at off lies inside [0, len) (no overflow: the product is never formed) */
#if defined(ELSTM_WITH_DOT) || defined(ELSTM_WITH_OP_FC) || defined(ELSTM_WITH_OP_CONV16)
static int inside(int32_t off, int32_t rows, int32_t cols, int32_t len)
{
    return off >= 0 && rows >= 0 && cols > 0 && off <= len && rows <= (len - off) / cols;
}
#endif

#if defined(ELSTM_WITH_LSTM) || defined(ELSTM_WITH_DENSE) || defined(ELSTM_WITH_OP_FC) || defined(ELSTM_WITH_CONV)
/* n (multiplier, shift) pairs at m (inside prog, checked by the caller): non-negative multipliers, as
 * QuantizeMultiplier makes them, and shifts the requantization is defined for (mbqm: ELSTM_LIM_SHIFT; LiteRT's
 * single-rounding FULLY_CONNECTED: ELSTM_LIM_FC_SHIFT) */
static int pairs_ok(const int32_t *m, int32_t n, int single_rounding)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        if (!LIM(m[2 * i], MULT) || !(single_rounding ? LIM(m[2 * i + 1], FC_SHIFT) : LIM(m[2 * i + 1], SHIFT))) {
            return 0;
        }
    }
    return 1;
}
#endif

#ifdef ELSTM_WITH_LSTM
/* an activation table in the blob, or none (-1: computed) */
static int table_ok(int32_t off, int32_t blob_len) { return off == -1 || inside(off, 1, 65536, blob_len); }

/* An LSTM layer record (the caller checked its header: sizes, wiring, dir_len inside prog): dir_len covers the
 * record before a field is read; H bounded and its gate rows (4H) inside scratch; h (n_out: H, or fewer than H with a
 * projection) and c (H) inside the state; every weight matrix inside w8 (rows x cols int8, as edgelstm/program/c_program.py
 * lays them out), every bias inside prog, every table and peephole inside the blob; multipliers, shifts, the
 * cell exponent, zero points and clips in their ranges. */
static int lstm_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo)
{
    const int32_t *r = prog + lo + L_HDR;
    int32_t flags = prog[lo + L_FLAGS], n_in = prog[lo + L_IN], H = prog[lo + L_HID], n_out = prog[lo + L_OUT];
    int32_t W = cfg->w8_len, B = cfg->blob_len, P = cfg->prog_len;
    return prog[lo + L_DIRLEN] >= LS_LEN && size_ok(H) && 4 * H <= cfg->scratch
        && ((flags & FLAG_PROJ) ? n_out < H : n_out == H) && span(r[LS_STATE], n_out + H, cfg->n_state)
        && inside(r[LS_WX], 4 * H, n_in, W) && inside(r[LS_WH], 4 * H, n_out, W)
        && span(r[LS_BX], 4 * H, P) && span(r[LS_BH], 4 * H, P)
        && (!(flags & FLAG_PROJ) || (inside(r[LS_PROJ], n_out, H, W) && span(r[LS_BPROJ], n_out, P)))
        && (!(flags & FLAG_PEEP) || inside(r[LS_PEEP], 3, H, B))
        && table_ok(r[LS_SIG], B) && table_ok(r[LS_TANH3], B) && table_ok(r[LS_TANH_CELL], B)
        && pairs_ok(r + LS_MX, 8, 0) && pairs_ok(r + LS_MP, 3, 0) && pairs_ok(r + LS_MPROJ, 2, 0)   /* + MH, MHID */
        && LIM(r[LS_CELL_EXP], CELL_EXP) && LIM(r[LS_HID_ZP], ZP) && LIM(r[LS_OUT_ZP], ZP)
        && LIM(r[LS_CELL_CLIP], CELL_CLIP) && LIM(r[LS_PROJ_CLIP], PROJ_CLIP);
}
#endif

#ifdef ELSTM_WITH_SOFTMAX
/* The float32 exp table of a softmax (as bits): every entry in [0, 1], entry 0 exactly 1 (exp(-s * 0)), as
 * prepare() makes it; then the sum over the outputs is at least 1 and every probability finite, so the
 * conversion to an integer is defined. */
static int softmax_table_ok(const int32_t *t)
{
    int32_t i;
    for (i = 0; i < 256; ++i) {
        if (!in_range(t[i], 0, 0x3F800000)) {
            return 0;
        }
    }
    return t[0] == 0x3F800000;
}
#endif

#ifdef ELSTM_WITH_DENSE
/* A Dense layer: dir_len covers the record; its outputs inside scratch (the accumulators), its weight matrix
 * inside w8, its biases and (multiplier, shift) pairs inside prog, shifts LiteRT's FULLY_CONNECTED takes, an int8
 * zero point, an activation this build holds, with its table (sigmoid / tanh: 256 int8 in w8; softmax: 256
 * float bits in prog). */
static int dense_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo)
{
    const int32_t *r = prog + lo + L_HDR;
    int32_t act, n_out = prog[lo + L_OUT], P = cfg->prog_len;
    if (prog[lo + L_DIRLEN] < DN_LEN) {
        return 0;
    }
    act = r[DN_ACT];
    return n_out <= cfg->scratch && inside(r[DN_W], n_out, prog[lo + L_IN], cfg->w8_len)
        && span(r[DN_B], n_out, P) && span(r[DN_M], 2 * n_out, P) && pairs_ok(prog + r[DN_M], n_out, 1)
        && LIM(r[DN_PRE_ZP], ZP)
        && (act == ACT_NONE || act == ACT_RELU
            || ((act == ACT_SIGMOID || act == ACT_TANH) && span(r[DN_LUT], 256, cfg->w8_len))
#ifdef ELSTM_WITH_SOFTMAX
            || (act == ACT_SOFTMAX && span(r[DN_LUT], 256, P) && softmax_table_ok(prog + r[DN_LUT]))
#endif
        );
}
#endif

#if defined(ELSTM_WITH_CONV) || defined(ELSTM_WITH_MAP)
/* padding: left / right in 0..ELSTM_LIM_MAX_ELEMENTS, a 0 / 1 reflect flag, and reflected pads shorter than the
 * length (so a reflected position stays inside the frame) */
static int pads_ok(int32_t left, int32_t right, int32_t reflect, int32_t length)
{
    return in_range(left, 0, ELSTM_LIM_MAX_ELEMENTS) && in_range(right, 0, ELSTM_LIM_MAX_ELEMENTS)
        && in_range(reflect, 0, 1) && (!reflect || (left < length && right < length));
}
#endif

#ifdef ELSTM_WITH_CONV
/* A conv layer: dir_len covers the record; sizes in 1..ELSTM_LIM_MAX_ELEMENTS (products formed in int64, at most
 * 2^48), the padding as pads_ok; the geometry consistent: input length x channels the layer's input, the
 * kernel's span dilation * (K - 1) + 1 inside the padded length, the output length (padded - span) / stride + 1
 * and output length x out channels the layer's output (so every window position lies inside the padded input);
 * a full conv's window (K * C) inside aux and its (O, K * C) matrix inside w8, a depthwise conv's out channels
 * in_channels x its multiplier and its (O, K) taps inside w8; O accumulators inside acc (scratch); biases and O
 * (multiplier, shift) pairs inside prog (mbqm's ranges); int8 zero points; a clamp range lo <= hi inside int8;
 * the fused sigmoid / tanh table (256 int8 in w8) or -1. */
static int conv_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo)
{
    const int32_t *r = prog + lo + L_HDR;
    int32_t L, C, O, K, mult, padded, span_k;
    if (prog[lo + L_DIRLEN] < CV_LEN) {
        return 0;
    }
    L = r[CV_LEN_IN], C = r[CV_CIN], O = r[CV_COUT], K = r[CV_K], mult = r[CV_MULT];
    if (!size_ok(L) || !size_ok(C) || !size_ok(O) || !size_ok(K) || !size_ok(r[CV_STRIDE]) || !size_ok(r[CV_DIL])
        || !pads_ok(r[CV_PADL], r[CV_PADR], r[CV_REFLECT], L) || !size_ok(r[CV_LOUT])) {
        return 0;
    }
    padded = L + r[CV_PADL] + r[CV_PADR];             /* < 2^26 */
    if (K > 1 && r[CV_DIL] > (padded - 1) / (K - 1)) {   /* the kernel's span dil * (K - 1) + 1 > padded */
        return 0;
    }
    span_k = r[CV_DIL] * (K - 1) + 1;               /* int32 division below: a Cortex-M's SDIV, no libgcc */
    if (r[CV_LOUT] != (padded - span_k) / r[CV_STRIDE] + 1
        || (int64_t)L * C != prog[lo + L_IN] || (int64_t)r[CV_LOUT] * O != prog[lo + L_OUT] || O > cfg->scratch) {
        return 0;
    }
    if (mult == 0) {
        if ((int64_t)K * C > cfg->scratch || !inside(r[CV_W], O, K * C, cfg->w8_len)) {
            return 0;
        }
    } else if (mult < 1 || (int64_t)C * mult != O || !inside(r[CV_W], O, K, cfg->w8_len)) {
        return 0;
    }
    return span(r[CV_B], O, cfg->prog_len) && span(r[CV_M], 2 * O, cfg->prog_len)
        && pairs_ok(prog + r[CV_M], O, 0) && LIM(r[CV_ZP_IN], ZP) && LIM(r[CV_ZP_OUT], ZP)
        && LIM(r[CV_LO], ZP) && LIM(r[CV_HI], ZP) && r[CV_LO] <= r[CV_HI]
        && (r[CV_LUT] == -1 || span(r[CV_LUT], 256, cfg->w8_len));
}
#endif

#ifdef ELSTM_WITH_MAP_KIND
/* A map record: dir_len covers it; its sizes the layer's input and output; an op this build holds with its
 * fields: pad (length and channels 1..ELSTM_LIM_MAX_ELEMENTS, pads_ok, (length + pads) x channels the output, an
 * int8 pad value), activation (its 256-entry int8 table inside w8), context (K values in
 * 1..ELSTM_LIM_MAX_ELEMENTS, K + input the output, inside the state block, an int8 start value), magnitude
 * (2 x length x channels in, length x channels out, int8 zero points, scales in the loader's range: finite and
 * positive). */
static int map_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo)
{
    const int32_t *r = prog + lo + L_HDR;
    int32_t n_in = prog[lo + L_IN], n_out = prog[lo + L_OUT];
    (void)cfg;
    if (prog[lo + L_DIRLEN] < MP_LEN || r[MP_N_IN] != n_in || r[MP_N_OUT] != n_out) {
        return 0;
    }
#ifdef ELSTM_WITH_MAP
    if (r[MP_OP] == MAP_PAD) {
        return size_ok(r[3]) && size_ok(r[4]) && pads_ok(r[5], r[6], r[7], r[3]) && (int64_t)r[3] * r[4] == n_in
            && ((int64_t)r[3] + r[5] + r[6]) * r[4] == n_out && LIM(r[8], ZP);
    }
    if (r[MP_OP] == MAP_ACTIVATION) {
        return n_out == n_in && span(r[3], 256, cfg->w8_len);
    }
    if (r[MP_OP] == MAP_CONTEXT) {
        return size_ok(r[3]) && (int64_t)r[3] + n_in == n_out && span(r[4], r[3], cfg->n_state) && LIM(r[5], ZP);
    }
#endif
#ifdef ELSTM_WITH_MAGNITUDE
    if (r[MP_OP] == MAP_MAGNITUDE) {
        return size_ok(r[3]) && size_ok(r[4]) && 2 * (int64_t)r[3] * r[4] == n_in && (int64_t)r[3] * r[4] == n_out
            && LIM(r[5], ZP) && LIM(r[6], SCALE_BITS) && LIM(r[7], ZP) && LIM(r[8], SCALE_BITS);
    }
#endif
    return 0;
}
#endif

#ifdef ELSTM_WITH_OPS
/* The element-wise ops' record checks, per op: its code, then one byte per check, kind << 4 | field, then 0.
 * A kind bounds r[field]: a zero point (int8), an elstm_mbqm multiplier (non-negative) or shift, an ADD / SUB
 * left shift, a 0 / 1 flag, the ACT16 input multiplier and left shift (what LiteRT's int16 LOGISTIC / TANH
 * Prepare makes), an output range r[field] <= r[field + 1] inside int16 (the int16 ops, and the int8 ops whose
 * output the arena holds as int16), an arena tensor of n = r[1] elements, the packed ACT16 table (128 int32 in
 * prog), a 256-entry int8 table in the blob. int16 tensors have zero point 0. */
enum { CK_ZP = 1, CK_MULT, CK_SHIFT, CK_LSHIFT, CK_FLAG, CK_AMULT, CK_ASHIFT, CK_RANGE16, CK_ARENA, CK_TABLE16,
       CK_TABLE8 };
#define CK(kind, field) ((kind) << 4 | (field))
static const uint8_t op_checks[] = {
    OPK_COPY, CK(CK_ARENA, 2), CK(CK_ARENA, 4), 0,
#ifdef ELSTM_WITH_OP_ACT16
    OPK_ACT16, CK(CK_ARENA, 2), CK(CK_ARENA, 4), CK(CK_FLAG, 5), CK(CK_AMULT, 6), CK(CK_ASHIFT, 7),
    CK(CK_TABLE16, 8), 0,
#endif
#ifdef ELSTM_WITH_OP_ADD
    OPK_ADD, CK(CK_ARENA, 2), CK(CK_ARENA, 3), CK(CK_ARENA, 4), CK(CK_ZP, 5), CK(CK_MULT, 6), CK(CK_SHIFT, 7),
    CK(CK_ZP, 8), CK(CK_MULT, 9), CK(CK_SHIFT, 10), CK(CK_LSHIFT, 11), CK(CK_MULT, 12), CK(CK_SHIFT, 13),
    CK(CK_ZP, 14), CK(CK_RANGE16, 15), 0,
#endif
#ifdef ELSTM_WITH_OP_MUL
    OPK_MUL, CK(CK_ARENA, 2), CK(CK_ARENA, 3), CK(CK_ARENA, 4), CK(CK_ZP, 5), CK(CK_ZP, 6), CK(CK_MULT, 7),
    CK(CK_SHIFT, 8), CK(CK_ZP, 9), CK(CK_RANGE16, 10), 0,
#endif
#ifdef ELSTM_WITH_OP_REQUANT
    OPK_REQUANT, CK(CK_ARENA, 2), CK(CK_ARENA, 4), CK(CK_ZP, 5), CK(CK_MULT, 6), CK(CK_SHIFT, 7), CK(CK_ZP, 8),
    CK(CK_RANGE16, 9), 0,
#endif
#ifdef ELSTM_WITH_OP_LUT
    OPK_LUT, CK(CK_ARENA, 2), CK(CK_ARENA, 4), CK(CK_TABLE8, 5), 0,
#endif
    0xFF
};
/* the ranges of the bounded kinds, as int16 (flash): CK_MULT's upper end is INT32_MAX, which every int32 meets
 * (-1 here: no upper check) */
static const int16_t ck_lo[] = {0, ELSTM_LIM_ZP_MIN, ELSTM_LIM_MULT_MIN, ELSTM_LIM_SHIFT_MIN, ELSTM_LIM_LSHIFT_MIN, 0,
                                ELSTM_LIM_ACT16_MULT_MIN, ELSTM_LIM_ACT16_SHIFT_MIN};
static const int16_t ck_hi[] = {0, ELSTM_LIM_ZP_MAX, -1, ELSTM_LIM_SHIFT_MAX, ELSTM_LIM_LSHIFT_MAX, 1,
                                ELSTM_LIM_ACT16_MULT_MAX, ELSTM_LIM_ACT16_SHIFT_MAX};

/* One op record (its op_len fields inside prog, checked by the caller) of an op this build holds: every arena
 * tensor inside the arena (A elements), every weight / table inside the blob or w8, every prog array inside
 * prog, shifts, multipliers and zero points where the arithmetic is defined. */
static int op_ok(const int32_t *prog, const int32_t *r, int32_t P, int32_t A, int32_t B, int32_t W)
{
    int32_t op = r[0] == OPK_SUB ? OPK_ADD : r[0], n = r[1];
    const uint8_t *c = op_checks;
    (void)prog;
    (void)W;
#if defined(ELSTM_WITH_OP_FC) || defined(ELSTM_WITH_OP_CONV16)
    if (op == OPK_FC || op == OPK_CONV16) {
        /* FC: (mult, shift) pairs in LiteRT's FULLY_CONNECTED range; CONV16: two-byte rows (see og_conv16),
         * t0 = r[8] such that every row's t = t0 + 0..3 = 15 - shift has its shift in ELSTM_LIM_CONV16_SHIFT
         * (t in 8..46: the rounding shift is defined); CONV16 has zero points 0 and an int16 output range. */
        int32_t K = r[2], N = r[5], b_off = r[6], m_off = r[7], t0 = r[8];
#ifdef ELSTM_WITH_OP_FC
        int fc = op == OPK_FC;
#else
        const int fc = 0;
#endif
        int range = fc ? LIM(r[3], ZP) && LIM(r[9], ZP) && r[10] >= ELSTM_LIM_ZP_MIN && r[10] <= r[11]
                         && r[11] <= ELSTM_LIM_ZP_MAX
                       : r[3] == 0 && r[9] == 0 && r[10] >= ELSTM_LIM_INT16_MIN && r[10] <= r[11]
                         && r[11] <= ELSTM_LIM_INT16_MAX && t0 >= 15 - ELSTM_LIM_CONV16_SHIFT_MAX
                         && t0 <= 15 - ELSTM_LIM_CONV16_SHIFT_MIN - 3;
        return K >= 1 && N >= 1 && N <= ELSTM_LIM_MAX_ELEMENTS && span(r[1], K, A) && span(r[12], N, A)
            && inside(r[4], N, K, fc ? B : W)   /* FC weights in the blob, CONV16 weights in w8 */
            && (b_off == -1 || span(b_off, N, P)) && span(m_off, fc ? 2 * N : (N + 1) / 2, P) && range
#ifdef ELSTM_WITH_OP_FC
            && (!fc || pairs_ok(prog + m_off, N, 1))   /* CONV16 rows are valid by construction */
#endif
            ;
    }
#endif
    while (*c != op) {   /* op_len admitted op: its checks are in the table */
        while (*c++ != 0) {
        }
    }
    for (++c; *c != 0; ++c) {
        int32_t kind = *c >> 4, f = *c & 15, v = r[f];
        if (kind < CK_RANGE16 ? v < ck_lo[kind] || (ck_hi[kind] >= 0 && v > ck_hi[kind])
            : kind == CK_RANGE16 ? v < ELSTM_LIM_INT16_MIN || v > r[f + 1] || r[f + 1] > ELSTM_LIM_INT16_MAX
            : !span(v, kind == CK_ARENA ? n : kind == CK_TABLE16 ? 128 : 256,
                    kind == CK_ARENA ? A : kind == CK_TABLE16 ? P : B)) {
            return 0;
        }
    }
    return 1;
}

/* An op-graph layer record (one direction at rec, dir_len prog elements, covering the record before a field is
 * read): the op, state and constant records inside prog, and everything they name inside the arena, the blob,
 * the state block and the frame buffers. The op records follow each other, each op_len(code) long: a code this
 * build has no kernel for ends it. */
static int opgraph_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo, int32_t rec, int32_t dir_len)
{
    int32_t P = cfg->prog_len, A = cfg->scratch, B = cfg->blob_len, W = cfg->w8_len, S = cfg->n_state, i;
    int32_t n_ops, n_st, n_c, s0, zps = prog[lo + L_ZPS], r;
    if (dir_len < OG_LEN) {
        return 0;
    }
    n_ops = prog[rec + OG_NOPS], n_st = prog[rec + OG_NSTATE], n_c = prog[rec + OG_NCONST];
    s0 = prog[rec + OG_STATE], r = prog[rec + OG_OPS];
    if (prog[rec + OG_NX] > prog[lo + L_IN] || prog[rec + OG_NY] > prog[lo + L_OUT]
        || !span(prog[rec + OG_X], prog[rec + OG_NX], A) || !span(prog[rec + OG_Y], prog[rec + OG_NY], A)
        || n_ops < 0 || n_st < 0 || n_st > P / OG_STATE_REC || !span(prog[rec + OG_STATES], n_st * OG_STATE_REC, P)
        || n_c < 0 || n_c > P / OG_CONST_REC || !span(prog[rec + OG_CONSTS], n_c * OG_CONST_REC, P)
        || !span(s0, 0, S) || !(zps == 0 || (zps >= G_LAYER0 && span(zps, n_st, P)))) {
        return 0;
    }
#ifndef ELSTM_WITH_OP_CONSTS
    if (n_c != 0) {
        return 0;
    }
#endif
    for (i = 0; i < n_ops; ++i) {
        int32_t len = span(r, 1, P) ? op_len(prog[r]) : 0;
        if (len == 0 || !span(r, len, P) || !op_ok(prog, prog + r, P, A, B, W)) {
            return 0;
        }
        r += len;
    }
    for (i = 0; i < n_st; ++i) {
        const int32_t *e = prog + prog[rec + OG_STATES] + i * OG_STATE_REC;
        if (!span(e[0], e[2], A) || !span(e[1], e[2], A) || !span(e[3], e[2], S - s0)
#ifdef ELSTM_WITH_OP_STATE8
            || !(e[4] == -1 || span(e[4], 256, B)) || (zps != 0 && !LIM(prog[zps + i], ZP))
#else
            || e[4] != -1 || zps != 0
#endif
            ) {
            return 0;
        }
    }
#ifdef ELSTM_WITH_OP_CONSTS
    for (i = 0; i < n_c; ++i) {
        const int32_t *c = prog + prog[rec + OG_CONSTS] + i * OG_CONST_REC;
        if (!span(c[0], c[1], A) || !span(c[2], c[1], B)) {
            return 0;
        }
    }
#endif
    return 1;
}
#endif   /* ELSTM_WITH_OPS */

/* One layer of a kind this build holds, its record checked. KIND_GRU / KIND_RNN records are rejected:
 * prepare() lowers int8 GRU / RNN layers to op graphs (KIND_OPS). */
static int layer_ok(const elstm_config *cfg, const int32_t *prog, int32_t lo)
{
    int32_t kind = prog[lo + L_KIND];
    (void)cfg;
#ifdef ELSTM_WITH_OPS
    if (kind == KIND_OPS) {
        return opgraph_ok(cfg, prog, lo, lo + L_HDR, prog[lo + L_DIRLEN]);
    }
#endif
#ifdef ELSTM_WITH_LSTM
    if (kind == KIND_LSTM) {
        return lstm_ok(cfg, prog, lo);
    }
#endif
#ifdef ELSTM_WITH_DENSE
    if (kind == KIND_DENSE) {
        return dense_ok(cfg, prog, lo);
    }
#endif
#ifdef ELSTM_WITH_CONV
    if (kind == KIND_CONV) {
        return conv_ok(cfg, prog, lo);
    }
#endif
#ifdef ELSTM_WITH_MAP_KIND
    if (kind == KIND_MAP) {
        return map_ok(cfg, prog, lo);
    }
#endif
    return 0;
}

/* a float32 quantization scale in the loader's range (positive floats order as their bits; NaN does not pass) */
static int scale_ok(const float *s)
{
    int32_t bits;
    memcpy(&bits, s, sizeof bits);
    return LIM(bits, SCALE_BITS);
}

int elstm_init(const elstm_config *cfg, const elstm_weights *w, elstm_state *st)
{
    const int32_t *prog = w->prog;
    int32_t P = cfg->prog_len, k, n_layers, n_prev = cfg->input_size;
    if (cfg->format_version != ELSTM_FORMAT_VERSION) {
        return ELSTM_BAD_VERSION;
    }
    /* the config: sizes bounded (so no sum or product below overflows), the input inside the frame buffers (the
     * output is the last layer's, checked below), the float edges' quantization as the loader accepts it, a
     * program holding its header (whose input / output sizes nothing reads: the layers' are checked) */
    if (!size_ok(cfg->width) || !size_ok(cfg->scratch) || !in_range(cfg->n_state, 0, ELSTM_LIM_MAX_ELEMENTS)
        || !in_range(cfg->input_size, 1, cfg->width) || !scale_ok(&cfg->input_scale)
        || !scale_ok(&cfg->output_scale) || !LIM(cfg->input_zp, ZP) || !LIM(cfg->output_zp, ZP) || P < G_LAYER0) {
        return ELSTM_BAD_MODEL;
    }
    n_layers = prog[G_LAYERS];
    if (n_layers < 1 || n_layers > P - G_LAYER0) {
        return ELSTM_BAD_MODEL;
    }
    /* every layer: its header and direction record inside prog, one forward direction, known flags (an op graph
     * lowered from a GRU / RNN keeps the layer's RESET_AFTER / RELU; nothing reads them), its input the
     * previous layer's output (the model's input for the first), its output inside the frame buffers (the last
     * layer's the model's output); then its record (which bounds the hidden size where one is used) */
    for (k = 0; k < n_layers; ++k) {
        int32_t lo = prog[G_LAYER0 + k];
        if (!span(lo, L_HDR, P) || !span(lo + L_HDR, prog[lo + L_DIRLEN], P) || prog[lo + L_NDIR] != 1
            || (prog[lo + L_FLAGS] & ~(FLAG_PEEP | FLAG_PROJ | FLAG_RESET_AFTER | FLAG_RELU)) != 0
            || prog[lo + L_IN] != n_prev
            || !in_range(prog[lo + L_OUT], 1, cfg->width) || !layer_ok(cfg, prog, lo)) {
            return ELSTM_BAD_MODEL;
        }
        n_prev = prog[lo + L_OUT];
    }
    if (n_prev != cfg->output_size) {
        return ELSTM_BAD_MODEL;
    }
    if (st != NULL) {
        elstm_reset(cfg, w, st);
    }
    return ELSTM_OK;
}

void elstm_reset(const elstm_config *cfg, const elstm_weights *w, elstm_state *st)
{
    const int32_t *prog = w->prog;
    int32_t i, k;
    for (i = 0; i < cfg->n_state; ++i) {
        st->state[i] = 0;
    }
    for (k = 0; k < prog[G_LAYERS]; ++k) {
        int32_t lo = prog[G_LAYER0 + k];
        int32_t rec = lo + L_HDR;
        int32_t kind = prog[lo + L_KIND];
        (void)rec;
        (void)kind;
#ifdef ELSTM_WITH_LSTM
        if (kind == KIND_LSTM) {        /* h = zero point, c = 0 */
            for (i = 0; i < prog[lo + L_OUT]; ++i) {
                st->state[prog[rec + LS_STATE] + i] = (int16_t)prog[rec + LS_OUT_ZP];
            }
        }
#endif
#ifdef ELSTM_WITH_MAP
        if (kind == KIND_MAP && prog[rec + MP_OP] == MAP_CONTEXT) {   /* the context: real zeros */
            for (i = 0; i < prog[rec + 3]; ++i) {
                st->state[prog[rec + 4] + i] = (int16_t)prog[rec + 5];
            }
        }
#endif
#ifdef ELSTM_WITH_OP_STATE8
        if (kind == KIND_OPS && prog[lo + L_ZPS] != 0) {   /* each state tensor at its zero point */
            int32_t e, n;
            for (e = 0; e < prog[rec + OG_NSTATE]; ++e) {
                const int32_t *s = prog + prog[rec + OG_STATES] + e * OG_STATE_REC;
                for (n = 0; n < s[2]; ++n) {
                    st->state[prog[rec + OG_STATE] + s[3] + n] = (int16_t)prog[prog[lo + L_ZPS] + e];
                }
            }
        }
#endif
    }
}

void elstm_step(const elstm_config *cfg, const elstm_weights *w, elstm_state *st, const int8_t *x, int8_t *y)
{
    const int32_t *prog = w->prog;
    int16_t *src = st->frames, *dst = st->frames + cfg->width, *swap;
    int32_t k, i;
    for (i = 0; i < cfg->input_size; ++i) {
        src[i] = x[i];
    }
    for (k = 0; k < prog[G_LAYERS]; ++k) {   /* elstm_init admitted only kinds this build holds */
        int32_t lo = prog[G_LAYER0 + k];
        int32_t rec = lo + L_HDR;
        int32_t kind = prog[lo + L_KIND];
        (void)rec;
        (void)kind;
#ifdef ELSTM_WITH_LSTM
        if (kind == KIND_LSTM) {
            lstm_step(prog, rec, prog[lo + L_FLAGS], w->w8, w->blob, src, prog[lo + L_IN],
                      st->state + prog[rec + LS_STATE], prog[lo + L_HID], prog[lo + L_OUT], dst, st->gates, st->acc,
                      st->aux);
        }
#endif
#ifdef ELSTM_WITH_OPS
        if (kind == KIND_OPS) {
            graph_step(prog, rec, w->w8, w->blob, src, st->state, dst, st->gates);
        }
#endif
#ifdef ELSTM_WITH_DENSE
        if (kind == KIND_DENSE) {
            dense_step(prog, rec, w->w8, src, prog[lo + L_IN], prog[lo + L_OUT], dst, st->acc);
        }
#endif
#ifdef ELSTM_WITH_CONV
        if (kind == KIND_CONV) {
            conv_step(prog, rec, w->w8, src, dst, st->acc, st->aux);
        }
#endif
#ifdef ELSTM_WITH_MAP_KIND
        if (kind == KIND_MAP) {
            map_step(prog, rec, w->w8, src, prog[lo + L_IN], dst, st->state);
        }
#endif
        swap = src;
        src = dst;
        dst = swap;
    }
    for (i = 0; i < cfg->output_size; ++i) {
        y[i] = (int8_t)src[i];
    }
}

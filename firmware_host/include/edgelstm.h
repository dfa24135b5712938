/* edgelstm C99 runtime: integer-only int8 LSTM / GRU / RNN / Dense / op-graph stacks, bit-exact with Numba.
 * int8 GRU and RNN layers arrive as op graphs (prepare() lowers them to graphs of TFLite-style int16 ops).
 *
 * The model is the program edgelstm's prepare() builds: int32 records (sizes, offsets, zero-point-folded
 * biases, multipliers, op records), the int8 LSTM / Dense weight matrices (row-major, unpadded) and an int16
 * blob (peepholes, gemmlowp activation tables, op-graph weights and tables); edgelstm/program/c_program.py derives this compact form and edgelstm.export.to_c() writes it as
 * const arrays in model_data.c. All float math happened there, once; elstm_step() uses integers only.
 * Memory is owned by the caller: no malloc, no globals.
 *
 * The dot loop has SIMD paths chosen at compile time (AVX2; AArch64 NEON, with sdot under
 * __ARM_FEATURE_DOTPROD), bit-exact with the portable C one, which is used everywhere else or with
 * -DELSTM_NO_SIMD. elstm_dot_path() names the one compiled in.
 */
#ifndef EDGELSTM_H
#define EDGELSTM_H

#include <stdint.h>

/* 5: elstm_init checks every field against the loader's limits (ELSTM_LIM_*) and takes st == NULL to check only
 * (the data layout is version 4's: op records stored compactly; 3: int8 GRU / RNN as op graphs, no GRU / RNN
 * layer records) */
#define ELSTM_FORMAT_VERSION 5

/* Sizes of a model; everything a caller needs to allocate memory for it. */
typedef struct {
    int32_t format_version; /* ELSTM_FORMAT_VERSION the bundle was generated for; checked by elstm_init */
    int32_t input_size;     /* F: features per frame */
    int32_t output_size;    /* O: outputs per frame */
    int32_t width;          /* W: widest layer boundary (elements of one frame buffer) */
    int32_t n_state;        /* state elements (int16) of one stream */
    int32_t scratch;        /* scratch elements (gate rows, padded) */
    int32_t prog_len;       /* elements of weights.prog */
    int32_t w8_len;         /* elements of weights.w8 */
    int32_t blob_len;       /* elements of weights.blob */
    float input_scale;      /* int8 input quantization (used only by the float helpers) */
    int32_t input_zp;
    float output_scale;     /* int8 output quantization (used only by the float helpers) */
    int32_t output_zp;
} elstm_config;

/* Constant model data (may live in flash). */
typedef struct {
    const int32_t *prog;    /* (prog_len,) program records, layout in elstm_records.h (stored as
                               edgelstm/program/c_program.py c_program writes them) */
    const int8_t *w8;       /* (w8_len,) int8 weight matrices, each (rows, cols) row-major, unpadded */
    const int16_t *blob;    /* (blob_len,) int16 peephole weights + gemmlowp activation tables */
} elstm_weights;

/* Per-stream memory, owned by the caller; every array is sized from elstm_config (a bundle's model_data.h
 * also gives the exact acc / aux sizes its layers touch: MODEL_ACC_LEN, MODEL_AUX_LEN <= scratch). */
typedef struct {
    int16_t *state;         /* (n_state,) recurrent state: LSTM h (int8 values) + c, op-graph state tensors */
    int16_t *frames;        /* (2 * width,) ping-pong layer outputs of the current frame */
    int16_t *gates;         /* (scratch,) int16 gate pre-activations / activations; the op-graph arena */
    int32_t *acc;           /* (scratch, or MODEL_ACC_LEN) int32 matmul accumulators: LSTM, Dense */
    int16_t *aux;           /* (scratch, or MODEL_AUX_LEN) hidden int8 values (LSTM projection input) */
} elstm_state;

enum { ELSTM_OK = 0, ELSTM_BAD_VERSION = 1, ELSTM_BAD_MODEL = 2 };

/* Checks the model before anything runs it, then (ELSTM_OK, st not NULL) resets the state; with st NULL it only
 * checks (a binding may do so before it allocates the buffers the config asks for). Checked: the format
 * version; the config (sizes 1 .. 2^24, the input and output within the width, the float edges' scales and
 * zero points); every record field: record lengths before their fields, every offset inside its array (prog,
 * w8, blob, state, scratch, frames) with checked arithmetic, layer sizes and wiring, multipliers, shifts, zero
 * points, clips, the cell exponent and tables in the ranges the Python loader accepts (edgelstm/limits.py,
 * ELSTM_LIM_* in elstm_records.h; firmware_host/README.md lists them). Returns ELSTM_OK, ELSTM_BAD_VERSION or
 * ELSTM_BAD_MODEL. elstm_reset and elstm_step trust a model elstm_init accepted. */
int elstm_init(const elstm_config *cfg, const elstm_weights *w, elstm_state *st);

/* Back to the zero state (h at its zero point, c = 0). */
void elstm_reset(const elstm_config *cfg, const elstm_weights *w, elstm_state *st);

/* One frame: x (input_size,) int8 in the input quantization -> y (output_size,) int8. Integer-only. */
void elstm_step(const elstm_config *cfg, const elstm_weights *w, elstm_state *st, const int8_t *x, int8_t *y);

/* Float helpers around the integer step (TFLite AffineQuantize / Dequantize). */
int8_t elstm_quantize(float v, float scale, int32_t zp);
float elstm_dequantize(int8_t q, float scale, int32_t zp);

/* Quantize a float frame, step, dequantize: returns 1 (state untouched) if x holds NaN or inf, else 0.
 * xq (input_size,) and yq (output_size,) are caller-owned int8 scratch. */
int elstm_step_f32(const elstm_config *cfg, const elstm_weights *w, elstm_state *st, const float *x, float *y,
                   int8_t *xq, int8_t *yq);

/* Every argument of elstm_step_f32 in one struct, for bindings that pay per call argument (Python ctypes:
 * ~0.1 us each): fill it once, then call elstm_step_call(&call) per frame with new values in call.x. */
typedef struct {
    const elstm_config *cfg;
    const elstm_weights *w;
    elstm_state *st;
    const float *x;         /* (input_size,) float frame in */
    float *y;               /* (output_size,) float frame out */
    int8_t *xq;             /* (input_size,) int8 scratch */
    int8_t *yq;             /* (output_size,) int8 scratch */
} elstm_call;

/* elstm_step_f32 on the bound arguments: 1 (state untouched) if x holds NaN or inf, else 0. */
int elstm_step_call(const elstm_call *call);

/* ELSTM_FORMAT_VERSION of this build (bindings check a prebuilt library with it). */
int elstm_format_version(void);

/* "avx2", "neon", "neon-sdot" or "portable": the dot-loop implementation this build uses. */
const char *elstm_dot_path(void);

#endif

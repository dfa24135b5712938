/* Float <-> int8 at the edges of the integer step (the only floating point in the runtime). */
#include <math.h>

#include "edgelstm.h"

/* TFLite AffineQuantize: round-half-away(v / scale) + zp, saturated; the quotient is float32, as in the
 * Numba kernel, and the rounding runs in double there too. */
int8_t elstm_quantize(float v, float scale, int32_t zp)
{
    float q = v / scale;
    double r = floor((double)fabsf(q) + 0.5);
    if (q < 0.0f) {
        r = -r;
    }
    r += (double)zp;
    if (r > 127.0) {
        r = 127.0;
    }
    if (r < -128.0) {
        r = -128.0;
    }
    return (int8_t)r;
}

float elstm_dequantize(int8_t q, float scale, int32_t zp)
{
    return (float)((int32_t)q - zp) * scale;
}

/* Float frame in, float frame out: returns 1 without touching the state if x holds NaN or inf.
 * xq (input_size,) and yq (output_size,) are caller-owned int8 buffers. */
int elstm_step_f32(const elstm_config *cfg, const elstm_weights *w, elstm_state *st, const float *x, float *y,
                   int8_t *xq, int8_t *yq)
{
    int32_t i;
    for (i = 0; i < cfg->input_size; ++i) {
        if (!(x[i] == x[i]) || x[i] - x[i] != 0.0f) {
            return 1;
        }
    }
    for (i = 0; i < cfg->input_size; ++i) {
        xq[i] = elstm_quantize(x[i], cfg->input_scale, cfg->input_zp);
    }
    elstm_step(cfg, w, st, xq, yq);
    for (i = 0; i < cfg->output_size; ++i) {
        y[i] = elstm_dequantize(yq[i], cfg->output_scale, cfg->output_zp);
    }
    return 0;
}

int elstm_step_call(const elstm_call *call)
{
    return elstm_step_f32(call->cfg, call->w, call->st, call->x, call->y, call->xq, call->yq);
}

int elstm_format_version(void)
{
    return ELSTM_FORMAT_VERSION;
}

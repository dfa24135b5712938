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

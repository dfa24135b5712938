/* src/softsqrt.h's elstm_sqrt_f32 against the C library's sqrtf (an FPU's correctly rounded square root) on
 * positive normal floats: argv[1] the step between the float bit patterns tried (1: all 2^31 - 2^23 of them),
 * plus +0. Prints "checked N mismatches M" and the first mismatch; exit status 1 if any. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "softsqrt.h"

int main(int argc, char **argv)
{
    unsigned long step = argc > 1 ? strtoul(argv[1], NULL, 10) : 1, checked = 0, bad = 0;
    uint64_t bits;
    if (step == 0) {
        return 2;
    }
    if (elstm_sqrt_f32(0.0f) != 0.0f) {
        ++bad;
    }
    for (bits = 0x00800000u; bits < 0x7F800000u; bits += step) {
        uint32_t b = (uint32_t)bits, got, want;
        float x, g, w;
        memcpy(&x, &b, sizeof x);
        g = elstm_sqrt_f32(x);
        w = sqrtf(x);
        memcpy(&got, &g, sizeof got);
        memcpy(&want, &w, sizeof want);
        if (got != want && bad++ == 0) {
            printf("first mismatch: x bits 0x%08x got 0x%08x want 0x%08x\n", (unsigned)b, (unsigned)got,
                   (unsigned)want);
        }
        ++checked;
    }
    printf("checked %lu mismatches %lu\n", checked + 1, bad);
    return bad != 0;
}

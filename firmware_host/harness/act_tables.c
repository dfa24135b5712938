/* Writes gemmlowp's logistic (Q3.12) and tanh (FixedPoint<int16, 0..6>) as computed by src/gemmlowp16.h for
 * all 65,536 int16 inputs (8 tables, native-endian int16, index = input + 32768) to the file argv[1] (or
 * stdout): the host harness compares them with quant/tables.py's tables, every entry. */
#include <stdio.h>

#include "gemmlowp16.h"

int main(int argc, char **argv)
{
    FILE *out = argc > 1 ? fopen(argv[1], "wb") : stdout;
    int32_t t, x;
    if (out == NULL) {
        return 2;
    }
    for (t = -1; t <= 6; ++t) {
        for (x = -32768; x <= 32767; ++x) {
            int16_t v = (int16_t)(t < 0 ? elstm_logistic16(x, 3) : elstm_tanh16(x, t));
            if (fwrite(&v, sizeof v, 1, out) != 1) {
                return 2;
            }
        }
    }
    return fclose(out) == 0 ? 0 : 2;
}

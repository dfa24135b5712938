/* Per-step latency of the C runtime on a bundle: cc -O2 -I BUNDLE step_bench.c BUNDLE/{model_data,edgelstm,elstm_io}.c */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>

#include "edgelstm.h"
#include "model_data.h"

int main(void)
{
    int16_t state[MODEL_N_STATE], frames[2 * MODEL_WIDTH], gates[MODEL_SCRATCH], aux[MODEL_SCRATCH];
    int32_t acc[MODEL_SCRATCH];
    int8_t x[MODEL_INPUT_SIZE], y[MODEL_OUTPUT_SIZE];
    elstm_state st;
    struct timespec t0, t1;
    long i, n = 200000, sink = 0;
    int j;
    st.state = state; st.frames = frames; st.gates = gates; st.acc = acc; st.aux = aux;
    elstm_init(&model_config, &model_weights, &st);
    for (j = 0; j < MODEL_INPUT_SIZE; ++j) x[j] = (int8_t)(j * 7 % 256 - 128);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; ++i) {
        x[i % MODEL_INPUT_SIZE] ^= (int8_t)(i & 15);
        elstm_step(&model_config, &model_weights, &st, x, y);
        sink += y[0];
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.4f %ld\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n / 1000.0, sink);
    return 0;
}

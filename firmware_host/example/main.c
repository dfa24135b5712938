/* Example streamer: reads frames of MODEL_INPUT_SIZE whitespace-separated floats from stdin, runs one
 * integer step per frame and prints MODEL_OUTPUT_SIZE outputs per line.
 *   ./streamer        dequantized float outputs (%.9g: exact float32 round trip)
 *   ./streamer -q     the int8 output codes
 * Exit status 0, or 2 with a message on stderr for a bad argument, bad model or a non-finite input. */
#include <stdio.h>
#include <string.h>

#include "edgelstm.h"
#include "model_data.h"

int main(int argc, char **argv)
{
    int16_t state[MODEL_N_STATE], frames[2 * MODEL_WIDTH], gates[MODEL_SCRATCH], aux[MODEL_AUX_LEN];
    int32_t acc[MODEL_ACC_LEN];
    int8_t xq[MODEL_INPUT_SIZE], yq[MODEL_OUTPUT_SIZE];
    elstm_state st;
    int print_codes = 0, i, status;
    long frame = 0;
    float v;

    if (argc == 2 && strcmp(argv[1], "-q") == 0) {
        print_codes = 1;
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [-q] < frames.txt\n", argv[0]);
        return 2;
    }
    st.state = state;
    st.frames = frames;
    st.gates = gates;
    st.acc = acc;
    st.aux = aux;
    status = elstm_init(&model_config, &model_weights, &st);
    if (status != ELSTM_OK) {
        fprintf(stderr, "streamer: model rejected (code %d)\n", status);
        return 2;
    }
    for (;;) {
        for (i = 0; i < MODEL_INPUT_SIZE; ++i) {
            int got = scanf("%f", &v);
            if (got != 1) {
                if (i == 0 && got == EOF) {
                    return 0;
                }
                fprintf(stderr, "streamer: frame %ld: expected %d numbers\n", frame, MODEL_INPUT_SIZE);
                return 2;
            }
            if (!(v == v) || v - v != 0.0f) {
                fprintf(stderr, "streamer: frame %ld: NaN or inf\n", frame);
                return 2;
            }
            xq[i] = elstm_quantize(v, model_config.input_scale, model_config.input_zp);
        }
        elstm_step(&model_config, &model_weights, &st, xq, yq);
        for (i = 0; i < MODEL_OUTPUT_SIZE; ++i) {
            if (print_codes) {
                printf(i ? " %d" : "%d", yq[i]);
            } else {
                printf(i ? " %.9g" : "%.9g",
                       (double)elstm_dequantize(yq[i], model_config.output_scale, model_config.output_zp));
            }
        }
        printf("\n");
        ++frame;
    }
}

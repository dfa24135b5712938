/* Test driver of the host harness: runs many models through the runtime in one process.
 * Reads a stream of cases (native-endian) from the file argv[1] (or stdin) and writes outputs to argv[2]
 * (or stdout). One case:
 *   int32 input_size, output_size, width, n_state, scratch, prog_len, w8_len, blob_len, input_zp, output_zp,
 *         frames, gates_len, acc_len, aux_len
 *   float32 input_scale, output_scale
 *   int32 prog[prog_len]; int8 w8[w8_len]; int16 blob[blob_len]; float32 x[frames * input_size]
 * Output per case: float32 y[frames * output_size]. The runtime itself allocates nothing; this driver
 * mallocs the per-case arrays because its model sizes vary at run time: gates, acc and aux of exactly the
 * elements the model's layers touch (edgelstm/program/c_program.py c_buffers; each <= scratch), so a sanitizer build
 * catches any access past them. */
#include <stdio.h>
#include <stdlib.h>

#include "edgelstm.h"

static int read_all(FILE *f, void *p, size_t size, size_t n)
{
    return fread(p, size, n, f) == n;
}

int main(int argc, char **argv)
{
    FILE *in = argc > 1 ? fopen(argv[1], "rb") : stdin;
    FILE *out = argc > 2 ? fopen(argv[2], "wb") : stdout;
    long cases = 0;
    if (in == NULL || out == NULL) {
        fprintf(stderr, "multi_runner: cannot open files\n");
        return 2;
    }
    for (;;) {
        int32_t hdr[14], t, i;
        float scales[2];
        elstm_config cfg;
        elstm_weights w;
        elstm_state st;
        int32_t *prog;
        int8_t *w8;
        int16_t *blob;
        float *x, *y;
        int8_t *xq, *yq;
        size_t got = fread(hdr, sizeof(int32_t), 14, in);
        if (got == 0) {
            break;
        }
        if (got != 14 || !read_all(in, scales, sizeof(float), 2)) {
            fprintf(stderr, "multi_runner: truncated case %ld\n", cases);
            return 2;
        }
        cfg.format_version = ELSTM_FORMAT_VERSION;
        cfg.input_size = hdr[0];
        cfg.output_size = hdr[1];
        cfg.width = hdr[2];
        cfg.n_state = hdr[3];
        cfg.scratch = hdr[4];
        cfg.prog_len = hdr[5];
        cfg.w8_len = hdr[6];
        cfg.blob_len = hdr[7];
        cfg.input_zp = hdr[8];
        cfg.output_zp = hdr[9];
        cfg.input_scale = scales[0];
        cfg.output_scale = scales[1];
        prog = malloc(sizeof(int32_t) * (size_t)cfg.prog_len);
        w8 = malloc((size_t)cfg.w8_len);
        blob = malloc(sizeof(int16_t) * (size_t)cfg.blob_len);
        x = malloc(sizeof(float) * (size_t)hdr[10] * (size_t)cfg.input_size);
        y = malloc(sizeof(float) * (size_t)hdr[10] * (size_t)cfg.output_size + 1);
        xq = malloc((size_t)cfg.input_size);
        yq = malloc((size_t)cfg.output_size);
        st.state = malloc(sizeof(int16_t) * (size_t)cfg.n_state);
        st.frames = malloc(sizeof(int16_t) * 2 * (size_t)cfg.width);
        st.gates = malloc(sizeof(int16_t) * (size_t)hdr[11]);
        st.acc = malloc(sizeof(int32_t) * (size_t)hdr[12]);
        st.aux = malloc(sizeof(int16_t) * (size_t)hdr[13]);
        if (!prog || !w8 || !blob || !x || !y || !xq || !yq || !st.state || !st.frames || !st.gates || !st.acc || !st.aux) {
            fprintf(stderr, "multi_runner: out of memory in case %ld\n", cases);
            return 2;
        }
        if (!read_all(in, prog, sizeof(int32_t), (size_t)cfg.prog_len)
            || !read_all(in, w8, 1, (size_t)cfg.w8_len)
            || !read_all(in, blob, sizeof(int16_t), (size_t)cfg.blob_len)
            || !read_all(in, x, sizeof(float), (size_t)hdr[10] * (size_t)cfg.input_size)) {
            fprintf(stderr, "multi_runner: truncated case %ld\n", cases);
            return 2;
        }
        w.prog = prog;
        w.w8 = w8;
        w.blob = blob;
        if (elstm_init(&cfg, &w, &st) != ELSTM_OK) {
            fprintf(stderr, "multi_runner: case %ld rejected\n", cases);
            return 2;
        }
        for (t = 0; t < hdr[10]; ++t) {
            for (i = 0; i < cfg.input_size; ++i) {
                xq[i] = elstm_quantize(x[t * cfg.input_size + i], cfg.input_scale, cfg.input_zp);
            }
            elstm_step(&cfg, &w, &st, xq, yq);
            for (i = 0; i < cfg.output_size; ++i) {
                y[t * cfg.output_size + i] = elstm_dequantize(yq[i], cfg.output_scale, cfg.output_zp);
            }
        }
        fwrite(y, sizeof(float), (size_t)hdr[10] * (size_t)cfg.output_size, out);
        free(prog); free(w8); free(blob); free(x); free(y); free(xq); free(yq);
        free(st.state); free(st.frames); free(st.gates); free(st.acc); free(st.aux);
        ++cases;
    }
    if (out != stdout) {
        fclose(out);
    }
    fprintf(stderr, "multi_runner: %ld cases, dot path %s\n", cases, elstm_dot_path());
    return 0;
}

/* Fuzz driver of the C runtime (tests/c_fuzzing.py writes its input; build it with ASan + UBSan, no recovery).
 * Feeds mutated programs to elstm_init and, when it accepts one, to elstm_step.
 *
 * argv: cases file, first case, progress file. The file (native-endian int32 unless said otherwise):
 *   n_bases, then per base: int32 input_size, output_size, width, n_state, scratch, prog_len, w8_len, blob_len,
 *     input_zp, output_zp, frames; float32 input_scale, output_scale; int32 prog[]; int8 w8[]; int16 blob[]
 *   then cases until the end: int32 case, base, n_cfg, n_edit; n_cfg (config field, value) pairs (fields 0..9
 *   in the order above, 11 / 12 the bits of input_scale / output_scale); n_edit (array 0 prog / 1 w8 / 2 blob,
 *   index, value) triples.
 * A case allocates every array at exactly the length its (mutated) config states, so a sanitizer sees any access
 * past it: prog, w8, blob, state (n_state), frames (2 * width), gates / acc / aux (scratch, the size edgelstm.h
 * asks for), x (input_size), y (output_size). A buffer size below 0 or above 2^26 elements gets a one-element
 * allocation instead (the runtime must reject such a config: anything else is reported by the sanitizers); a
 * case whose prog / w8 / blob would exceed 2^26 elements is skipped (the runtime cannot know how long the
 * caller's arrays really are, and their lengths have no limit). The last frame goes through elstm_step_f32.
 * Before each case its number (and the accepted / rejected counts so far) is written to the progress file,
 * so a sanitizer abort names its case; the parent restarts after it. Prints "accepted A rejected R skipped S" on
 * stdout at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelstm.h"

#define N_CFG 11
#define CAP (1L << 26)

typedef struct {
    int32_t cfg[N_CFG];
    float scales[2];
    int32_t *prog;
    int8_t *w8;
    int16_t *blob;
} base_t;

static int read_all(FILE *f, void *p, size_t size, long n)
{
    return n >= 0 && fread(p, size, (size_t)n, f) == (size_t)n;
}

/* n elements of size bytes, or one element when n is negative or absurd */
static void *alloc(long n, size_t size)
{
    return calloc(n >= 0 && n <= CAP ? (size_t)(n > 0 ? n : 1) : 1, size);
}

static long usable(long n)
{
    return n >= 0 && n <= CAP ? n : 1;
}

int main(int argc, char **argv)
{
    FILE *in, *progress;
    int32_t n_bases, k, head[4];
    base_t *bases;
    long first, accepted = 0, rejected = 0, skipped = 0;
    if (argc != 4 || (in = fopen(argv[1], "rb")) == NULL || (progress = fopen(argv[3], "w")) == NULL) {
        fprintf(stderr, "usage: fuzz_runner CASES FIRST PROGRESS\n");
        return 2;
    }
    first = atol(argv[2]);
    if (!read_all(in, &n_bases, 4, 1) || n_bases < 1 || n_bases > 1000) {
        return 2;
    }
    bases = calloc((size_t)n_bases, sizeof *bases);
    for (k = 0; k < n_bases; ++k) {
        base_t *b = &bases[k];
        if (!read_all(in, b->cfg, 4, N_CFG) || !read_all(in, b->scales, 4, 2)) {
            return 2;
        }
        b->prog = malloc(4 * (size_t)b->cfg[5] + 4);
        b->w8 = malloc((size_t)b->cfg[6] + 1);
        b->blob = malloc(2 * (size_t)b->cfg[7] + 2);
        if (!read_all(in, b->prog, 4, b->cfg[5]) || !read_all(in, b->w8, 1, b->cfg[6])
            || !read_all(in, b->blob, 2, b->cfg[7])) {
            return 2;
        }
    }
    while (fread(head, 4, 4, in) == 4) {
        int32_t pairs[2 * 64], triples[3 * 64], cfgv[N_CFG], i, t, c = head[0];
        base_t *b = &bases[head[1] < 0 || head[1] >= n_bases ? 0 : head[1]];
        elstm_config cfg;
        elstm_weights w;
        elstm_state st;
        int32_t *prog;
        int8_t *w8, *x, *y;
        float *xf, *yf;
        int16_t *blob;
        uint32_t rng = 2463534242u ^ (uint32_t)c;
        if (head[2] < 0 || head[2] > 64 || head[3] < 0 || head[3] > 64 || !read_all(in, pairs, 4, 2L * head[2])
            || !read_all(in, triples, 4, 3L * head[3])) {
            fprintf(stderr, "fuzz_runner: malformed case after %d\n", c);
            return 2;
        }
        if (c < first) {
            continue;
        }
        fseek(progress, 0, SEEK_SET);
        fprintf(progress, "%12d %12ld %12ld %12ld\n", c, accepted, rejected, skipped);
        fflush(progress);
        memcpy(cfgv, b->cfg, sizeof cfgv);
        memcpy(&cfg.input_scale, &b->scales[0], 4);
        memcpy(&cfg.output_scale, &b->scales[1], 4);
        for (i = 0; i < head[2]; ++i) {
            if (pairs[2 * i] >= 0 && pairs[2 * i] < N_CFG - 1) {
                cfgv[pairs[2 * i]] = pairs[2 * i + 1];
            } else if (pairs[2 * i] == N_CFG || pairs[2 * i] == N_CFG + 1) {
                memcpy(pairs[2 * i] == N_CFG ? &cfg.input_scale : &cfg.output_scale, &pairs[2 * i + 1], 4);
            }
        }
        if (cfgv[5] > CAP || cfgv[6] > CAP || cfgv[7] > CAP) {
            ++skipped;
            continue;
        }
        cfg.format_version = ELSTM_FORMAT_VERSION;
        cfg.input_size = cfgv[0];
        cfg.output_size = cfgv[1];
        cfg.width = cfgv[2];
        cfg.n_state = cfgv[3];
        cfg.scratch = cfgv[4];
        cfg.prog_len = cfgv[5];
        cfg.w8_len = cfgv[6];
        cfg.blob_len = cfgv[7];
        cfg.input_zp = cfgv[8];
        cfg.output_zp = cfgv[9];
        prog = alloc(cfg.prog_len, 4);
        w8 = alloc(cfg.w8_len, 1);
        blob = alloc(cfg.blob_len, 2);
        memcpy(prog, b->prog, 4 * (size_t)(usable(cfg.prog_len) < b->cfg[5] ? usable(cfg.prog_len) : b->cfg[5]));
        memcpy(w8, b->w8, (size_t)(usable(cfg.w8_len) < b->cfg[6] ? usable(cfg.w8_len) : b->cfg[6]));
        memcpy(blob, b->blob, 2 * (size_t)(usable(cfg.blob_len) < b->cfg[7] ? usable(cfg.blob_len) : b->cfg[7]));
        for (i = 0; i < head[3]; ++i) {
            int32_t a = triples[3 * i], at = triples[3 * i + 1], v = triples[3 * i + 2];
            if (at < 0) {
                continue;
            }
            if (a == 0 && at < usable(cfg.prog_len)) {
                prog[at] = v;
            } else if (a == 1 && at < usable(cfg.w8_len)) {
                w8[at] = (int8_t)v;
            } else if (a == 2 && at < usable(cfg.blob_len)) {
                blob[at] = (int16_t)v;
            }
        }
        w.prog = prog;
        w.w8 = w8;
        w.blob = blob;
        st.state = alloc(cfg.n_state, 2);
        st.frames = alloc(2L * cfg.width, 2);
        st.gates = alloc(cfg.scratch, 2);
        st.acc = alloc(cfg.scratch, 4);
        st.aux = alloc(cfg.scratch, 2);
        x = alloc(cfg.input_size, 1);
        y = alloc(cfg.output_size, 1);
        xf = alloc(cfg.input_size, 4);
        yf = alloc(cfg.output_size, 4);
        if (elstm_init(&cfg, &w, &st) == ELSTM_OK) {
            ++accepted;
            for (t = 0; t < cfgv[10]; ++t) {
                for (i = 0; i < usable(cfg.input_size); ++i) {   /* xorshift32 frames */
                    rng ^= rng << 13;
                    rng ^= rng >> 17;
                    rng ^= rng << 5;
                    x[i] = (int8_t)(rng >> 24);
                    xf[i] = (float)(int32_t)rng * 1e-9f;
                }
                if (t + 1 < cfgv[10]) {
                    elstm_step(&cfg, &w, &st, x, y);
                } else {
                    elstm_step_f32(&cfg, &w, &st, xf, yf, x, y);
                }
            }
        } else {
            ++rejected;
        }
        free(prog); free(w8); free(blob); free(x); free(y); free(xf); free(yf);
        free(st.state); free(st.frames); free(st.gates); free(st.acc); free(st.aux);
    }
    printf("accepted %ld rejected %ld skipped %ld\n", accepted, rejected, skipped);
    return 0;
}

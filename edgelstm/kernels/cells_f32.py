"""Float32 cell steps: the accuracy reference of the runtime (PyTorch/ONNX equations, canonical gate order).

Same driving convention as ``cells_int8``: flat float32 weight blob ``wf`` + int32 ``prog`` records with
offsets; state and scratch are float32 views of the caller's work buffer.  No allocation, no validation.
"""
import math

import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from .rawview import f32_from_bits
from ..program.layout import (ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH, FD_ACT, FD_B, FD_LEN, FD_W,  # noqa: F401
                               FL_B, FL_B2, FL_BPROJ, FL_CELL_CLIP, FL_LEN, FL_PEEP, FL_PROJ, FL_PROJ_CLIP, FL_STATE,
                               FL_WH, FL_WX, FLAG_PEEP, FLAG_PROJ, FLAG_RELU, FLAG_RESET_AFTER)


@njit(**NJIT_OPTS)
def _exp(x):
    """float32 e^x without a libm call, so loops over it vectorize (Cephes expf: x = n ln2 + r with a
    two-part ln2, a degree-7 polynomial for e^r, 2^n from its exponent bits; ~1-2 ulp).  x is kept in
    [-87.3, 88.3] (2^n stays a normal float); NaN passes through (the comparisons are false for NaN)."""
    if x > np.float32(88.3):
        x = np.float32(88.3)
    if x < np.float32(-87.3):
        x = np.float32(-87.3)
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(**NJIT_OPTS)
def _sigmoid(v):
    return np.float32(1.0) / (np.float32(1.0) + _exp(-v))


@njit(**NJIT_OPTS)
def _tanh(v):
    """tanh(v) = 1 - 2 / (e^(2v) + 1) with the vectorizable _exp (absolute error ~1e-7)."""
    return np.float32(1.0) - np.float32(2.0) / (_exp(np.float32(2.0) * v) + np.float32(1.0))


@njit(**NJIT_OPTS)
def _matvec_f32(wf, w_off, rows, cols, v, v_off, bias, b_off, out, o_off):
    """out[r] = sum_c W[r, c] v[c] (+ bias[b_off + r] if b_off >= 0), W stored TRANSPOSED (cols, rows).

    Column-by-column (axpy) order vectorizes across rows while every row still sums c = 0, 1, ... in
    sequence, so results equal the plain scalar dot product bit for bit (fastmath stays off)."""
    vv = v[v_off:v_off + cols]
    y = out[o_off:o_off + rows]
    y[:] = 0.0
    c = 0
    while c + 8 <= cols:
        # eight columns per pass over y, added one after the other (the same order as one column a pass, so
        # the same float32 sums), with an eighth of y's loads and stores (the pass was bound by them)
        # (one slice per column: indexing a slice with anything but the bare loop counter makes Numba emit a
        # wraparound check that stops vectorization when rows is only known at run time)
        o = w_off + c * rows
        w0, w1, w2, w3 = wf[o:o + rows], wf[o + rows:o + 2 * rows], wf[o + 2 * rows:o + 3 * rows], \
            wf[o + 3 * rows:o + 4 * rows]
        w4, w5, w6, w7 = wf[o + 4 * rows:o + 5 * rows], wf[o + 5 * rows:o + 6 * rows], \
            wf[o + 6 * rows:o + 7 * rows], wf[o + 7 * rows:o + 8 * rows]
        v0, v1, v2, v3 = vv[c], vv[c + 1], vv[c + 2], vv[c + 3]
        v4, v5, v6, v7 = vv[c + 4], vv[c + 5], vv[c + 6], vv[c + 7]
        for r in range(rows):
            y[r] = (((((((y[r] + w0[r] * v0) + w1[r] * v1) + w2[r] * v2) + w3[r] * v3) + w4[r] * v4)
                     + w5[r] * v5) + w6[r] * v6) + w7[r] * v7
        c += 8
    while c < cols:
        w = wf[w_off + c * rows:w_off + (c + 1) * rows]
        vc = vv[c]
        for r in range(rows):
            y[r] += w[r] * vc
        c += 1
    if b_off >= 0:
        b = bias[b_off:b_off + rows]
        for r in range(rows):
            y[r] += b[r]


@njit(**NJIT_OPTS)
def lstm_step_f32(prog, rec, flags, wf, x, x_off, n_in, state, s_off, hidden, n_rec, out, o_off, gates,
                  tmp):
    """state[s_off : s_off+R] = h, state[s_off+R : s_off+R+H] = c. Gates i, f, g, o."""
    H = hidden
    h_off = s_off
    c_off = s_off + n_rec
    _matvec_f32(wf, prog[rec + FL_WX], 4 * H, n_in, x, x_off, wf, prog[rec + FL_B], gates, 0)
    _matvec_f32(wf, prog[rec + FL_WH], 4 * H, n_rec, state, h_off, wf, -1, tmp, 0)
    for r in range(4 * H):
        gates[r] += tmp[r]
    # loops index slices with the bare loop counter, never ``state[c_off + r]`` (a wraparound check per
    # element kept the activation loops scalar when offsets are only known at run time: 2.4 vs 1.4 us), and
    # keep options in loops of their own
    c = state[c_off:c_off + H]
    gi, gf, gg, go = gates[:H], gates[H:2 * H], gates[2 * H:3 * H], gates[3 * H:4 * H]
    peep = max(prog[rec + FL_PEEP], 0)          # -1 (none): the slices are then never read
    p_i, p_f, p_o = wf[peep:peep + H], wf[peep + H:peep + 2 * H], wf[peep + 2 * H:peep + 3 * H]
    if flags & FLAG_PEEP:
        for r in range(H):
            gi[r] += p_i[r] * c[r]
            gf[r] += p_f[r] * c[r]
    cell_clip = prog[rec + FL_CELL_CLIP:rec + FL_CELL_CLIP + 1].view(np.float32)[0]
    for r in range(H):
        c[r] = _sigmoid(gf[r]) * c[r] + _sigmoid(gi[r]) * _tanh(gg[r])
    if cell_clip > 0:
        for r in range(H):
            c[r] = min(max(c[r], -cell_clip), cell_clip)
    if flags & FLAG_PEEP:
        for r in range(H):
            go[r] += p_o[r] * c[r]
    hid = tmp[:H]
    for r in range(H):
        hid[r] = _sigmoid(go[r]) * _tanh(c[r])
    h = state[h_off:h_off + n_rec]
    if flags & FLAG_PROJ:
        _matvec_f32(wf, prog[rec + FL_PROJ], n_rec, H, tmp, 0, wf, prog[rec + FL_BPROJ], state, h_off)
        proj_clip = prog[rec + FL_PROJ_CLIP:rec + FL_PROJ_CLIP + 1].view(np.float32)[0]
        if proj_clip > 0:
            for r in range(n_rec):
                h[r] = min(max(h[r], -proj_clip), proj_clip)
    else:
        h[:] = hid
    out[o_off:o_off + n_rec] = h


@njit(**NJIT_OPTS)
def gru_step_f32(prog, rec, flags, wf, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, tmp):
    """Gates r, z, n; b_x at FL_B, b_h at FL_B2. tmp holds the recurrent pre-activations (3H)."""
    H = hidden
    _matvec_f32(wf, prog[rec + FL_WX], 3 * H, n_in, x, x_off, wf, prog[rec + FL_B], gates, 0)
    # w_h is stored as two transposed blocks: [r; z] (2H rows) then n (H rows), 2H*H elements apart
    wh_n = prog[rec + FL_WH] + 2 * H * H
    _matvec_f32(wf, prog[rec + FL_WH], 2 * H, H, state, s_off, wf, prog[rec + FL_B2], tmp, 0)
    h = state[s_off:s_off + H]
    gr, gz, gn = gates[:H], gates[H:2 * H], gates[2 * H:3 * H]
    tr, tz, tn = tmp[:H], tmp[H:2 * H], tmp[2 * H:3 * H]
    if flags & FLAG_RESET_AFTER:
        _matvec_f32(wf, wh_n, H, H, state, s_off, wf, prog[rec + FL_B2] + 2 * H, tmp, 2 * H)
        for r in range(H):
            gz[r] = _sigmoid(gz[r] + tz[r])
            gn[r] = _tanh(gn[r] + _sigmoid(gr[r] + tr[r]) * tn[r])
    else:
        for r in range(H):
            gz[r] = _sigmoid(gz[r] + tz[r])
            tn[r] = _sigmoid(gr[r] + tr[r]) * h[r]
        _matvec_f32(wf, wh_n, H, H, tmp, 2 * H, wf, prog[rec + FL_B2] + 2 * H, tmp, 0)
        for r in range(H):
            gn[r] = _tanh(gn[r] + tr[r])
    for r in range(H):
        h[r] = (np.float32(1.0) - gz[r]) * gn[r] + gz[r] * h[r]
    out[o_off:o_off + H] = h


@njit(**NJIT_OPTS)
def rnn_step_f32(prog, rec, flags, wf, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, tmp):
    H = hidden
    _matvec_f32(wf, prog[rec + FL_WX], H, n_in, x, x_off, wf, prog[rec + FL_B], gates, 0)
    _matvec_f32(wf, prog[rec + FL_WH], H, H, state, s_off, wf, -1, tmp, 0)
    h = state[s_off:s_off + H]
    if flags & FLAG_RELU:
        for r in range(H):
            h[r] = max(gates[r] + tmp[r], np.float32(0.0))
    else:
        for r in range(H):
            h[r] = _tanh(gates[r] + tmp[r])
    out[o_off:o_off + H] = h


@njit(**NJIT_OPTS)
def dense_step_f32(prog, rec, wf, x, x_off, n_in, n_out, out, o_off):
    _matvec_f32(wf, prog[rec + FD_W], n_out, n_in, x, x_off, wf, prog[rec + FD_B], out, o_off)
    act = prog[rec + FD_ACT]
    if act == ACT_SIGMOID:
        for r in range(n_out):
            out[o_off + r] = _sigmoid(out[o_off + r])
    elif act == ACT_TANH:
        for r in range(n_out):
            out[o_off + r] = _tanh(out[o_off + r])
    elif act == ACT_RELU:
        for r in range(n_out):
            out[o_off + r] = max(out[o_off + r], np.float32(0.0))
    elif act == ACT_SOFTMAX:
        m = out[o_off]
        for r in range(n_out):
            m = max(m, out[o_off + r])
        total = np.float32(0.0)
        for r in range(n_out):
            e = np.float32(math.exp(out[o_off + r] - m))
            out[o_off + r] = e
            total += e
        for r in range(n_out):
            out[o_off + r] = out[o_off + r] / total
    # none: the logits are the output

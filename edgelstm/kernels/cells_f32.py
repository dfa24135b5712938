"""Float32 cell steps: the accuracy reference of the runtime (PyTorch/ONNX equations, canonical gate order).

Same driving convention as ``cells_int8``: flat float32 weight blob ``wf`` + int32 ``prog`` records with
offsets; state and scratch are float32 views of the caller's work buffer.  No allocation, no validation.
"""
import math

import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from .rawview import f32_from_bits
from .cells_int8 import ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH, FLAG_PEEP, FLAG_PROJ, \
    FLAG_RELU, FLAG_RESET_AFTER

# direction records (float)
FL_WX, FL_WH, FL_B, FL_B2, FL_PEEP, FL_PROJ, FL_BPROJ, FL_STATE = 0, 1, 2, 3, 4, 5, 6, 7
FL_CELL_CLIP, FL_PROJ_CLIP = 8, 9   # LSTM clip bounds as float32 bits (0.0 = none)
FL_LEN = 10
FD_W, FD_B, FD_ACT = 0, 1, 2
FD_LEN = 3


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
        w = wf[w_off + c * rows:w_off + (c + 8) * rows]
        v0, v1, v2, v3 = vv[c], vv[c + 1], vv[c + 2], vv[c + 3]
        v4, v5, v6, v7 = vv[c + 4], vv[c + 5], vv[c + 6], vv[c + 7]
        for r in range(rows):
            y[r] = (((((((y[r] + w[r] * v0) + w[rows + r] * v1) + w[2 * rows + r] * v2) + w[3 * rows + r] * v3)
                      + w[4 * rows + r] * v4) + w[5 * rows + r] * v5) + w[6 * rows + r] * v6) + w[7 * rows + r] * v7
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
    peep = prog[rec + FL_PEEP]
    if flags & FLAG_PEEP:
        for r in range(H):
            gates[r] += wf[peep + r] * state[c_off + r]
            gates[H + r] += wf[peep + H + r] * state[c_off + r]
    cell_clip = prog[rec + FL_CELL_CLIP:rec + FL_CELL_CLIP + 1].view(np.float32)[0]
    for r in range(H):
        i = _sigmoid(gates[r])
        f = _sigmoid(gates[H + r])
        g = _tanh(gates[2 * H + r])
        c = f * state[c_off + r] + i * g
        if cell_clip > 0:
            c = min(max(c, -cell_clip), cell_clip)
        state[c_off + r] = c
    for r in range(H):
        o_pre = gates[3 * H + r]
        if flags & FLAG_PEEP:
            o_pre += wf[peep + 2 * H + r] * state[c_off + r]
        tmp[r] = _sigmoid(o_pre) * _tanh(state[c_off + r])
    if flags & FLAG_PROJ:
        _matvec_f32(wf, prog[rec + FL_PROJ], n_rec, H, tmp, 0, wf, prog[rec + FL_BPROJ], state, h_off)
        proj_clip = prog[rec + FL_PROJ_CLIP:rec + FL_PROJ_CLIP + 1].view(np.float32)[0]
        if proj_clip > 0:
            for r in range(n_rec):
                state[h_off + r] = min(max(state[h_off + r], -proj_clip), proj_clip)
    else:
        for r in range(H):
            state[h_off + r] = tmp[r]
    for r in range(n_rec):
        out[o_off + r] = state[h_off + r]


@njit(**NJIT_OPTS)
def gru_step_f32(prog, rec, flags, wf, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, tmp):
    """Gates r, z, n; b_x at FL_B, b_h at FL_B2. tmp holds the recurrent pre-activations (3H)."""
    H = hidden
    _matvec_f32(wf, prog[rec + FL_WX], 3 * H, n_in, x, x_off, wf, prog[rec + FL_B], gates, 0)
    # w_h is stored as two transposed blocks: [r; z] (2H rows) then n (H rows), 2H*H elements apart
    wh_n = prog[rec + FL_WH] + 2 * H * H
    _matvec_f32(wf, prog[rec + FL_WH], 2 * H, H, state, s_off, wf, prog[rec + FL_B2], tmp, 0)
    if flags & FLAG_RESET_AFTER:
        _matvec_f32(wf, wh_n, H, H, state, s_off, wf, prog[rec + FL_B2] + 2 * H, tmp, 2 * H)
        for r in range(H):
            rg = _sigmoid(gates[r] + tmp[r])
            gates[H + r] = _sigmoid(gates[H + r] + tmp[H + r])
            gates[2 * H + r] = _tanh(gates[2 * H + r] + rg * tmp[2 * H + r])
    else:
        for r in range(H):
            gates[H + r] = _sigmoid(gates[H + r] + tmp[H + r])
            tmp[2 * H + r] = _sigmoid(gates[r] + tmp[r]) * state[s_off + r]
        _matvec_f32(wf, wh_n, H, H, tmp, 2 * H, wf, prog[rec + FL_B2] + 2 * H, tmp, 0)
        for r in range(H):
            gates[2 * H + r] = _tanh(gates[2 * H + r] + tmp[r])
    for r in range(H):
        z = gates[H + r]
        h = (np.float32(1.0) - z) * gates[2 * H + r] + z * state[s_off + r]
        state[s_off + r] = h
        out[o_off + r] = h


@njit(**NJIT_OPTS)
def rnn_step_f32(prog, rec, flags, wf, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, tmp):
    H = hidden
    _matvec_f32(wf, prog[rec + FL_WX], H, n_in, x, x_off, wf, prog[rec + FL_B], gates, 0)
    _matvec_f32(wf, prog[rec + FL_WH], H, H, state, s_off, wf, -1, tmp, 0)
    for r in range(H):
        a = gates[r] + tmp[r]
        if flags & FLAG_RELU:
            h = max(a, np.float32(0.0))
        else:
            h = _tanh(a)
        state[s_off + r] = h
        out[o_off + r] = h


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

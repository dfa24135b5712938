"""Integer-only cell steps (tflite-micro lstm_eval style): no allocation, no validation, no float.

Every function works on flat arrays plus integer offsets so that one jitted program can drive any stack of
layers (see ``program.py``).  Storage conventions:
  wq    int16  model constants: int8 weights widened to int16 (same values; the widened form lets LLVM
               emit pmaddwd), int16 peephole weights, and the gemmlowp activation tables
  prog  int32  zero-point-folded biases, (multiplier, shift) pairs, offsets, sizes
  vectors     int16 views holding int8 values (inputs, h) or int16 values (gates, cell, GRU state)
  acc   int32  matmul accumulators; dot loops write here in their own loop nest (vectorizes), the
               requantization epilogue runs in a second loop.

Arithmetic is TFLite's 8x8_16 LSTM (lstm_eval.cc, portable_tensor_utils.cc) for LSTM; GRU and RNN use
the same primitives as documented in the README's numerics contract.
"""
import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from .fixedpoint import mbqm, rdbpot, sat8, sat16, wrap32

# ---- record layouts in prog (named indices; Numba treats module globals as constants) ----
KIND_LSTM, KIND_GRU, KIND_RNN, KIND_DENSE = 0, 1, 2, 3
ACT_NONE, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH, ACT_RELU = 0, 1, 2, 3, 4

# layer header
L_KIND, L_IN, L_HID, L_OUT, L_NDIR, L_FLAGS, L_DIR0 = 0, 1, 2, 3, 4, 5, 6
L_DIRLEN = 7      # prog index holding the length of one direction record
L_HDR = 8         # direction d record starts at layer_off + L_HDR + d * prog[layer_off + L_DIRLEN]
FLAG_PEEP, FLAG_PROJ, FLAG_RESET_AFTER, FLAG_RELU = 1, 2, 4, 8

# LSTM direction record
LS_WX, LS_WH, LS_BX, LS_BH = 0, 1, 2, 3
LS_MX = 4          # 4 (mult, shift) pairs: 4..11
LS_MH = 12         # 12..19
LS_PEEP, LS_MP = 20, 21          # peephole weights (3, H) int16; 3 pairs 21..26
LS_PROJ, LS_BPROJ, LS_MPROJ = 27, 28, 29   # pair 29..30
LS_MHID, LS_HID_ZP, LS_OUT_ZP = 31, 33, 34  # pair 31..32
LS_CELL_EXP, LS_TANH_CELL, LS_STATE = 35, 36, 37
LS_SIG, LS_TANH3 = 38, 39
LS_LEN = 40

# GRU direction record
GR_WX, GR_WH, GR_BX, GR_BH = 0, 1, 2, 3
GR_MX, GR_MH = 4, 10       # 3 pairs each
GR_M16TO8, GR_OUT_ZP, GR_STATE, GR_SIG, GR_TANH3 = 16, 18, 19, 20, 21
GR_LEN = 22

# RNN direction record
RN_WX, RN_WH, RN_BX, RN_BH, RN_MX, RN_MH, RN_MOUT, RN_OUT_ZP, RN_STATE, RN_TANH3 = 0, 1, 2, 3, 4, 6, 8, 10, 11, 12
RN_LEN = 13

# Dense record
DN_W, DN_B, DN_M, DN_PRE_ZP, DN_ACT, DN_LUT = 0, 1, 2, 4, 5, 6
DN_LEN = 7


@njit(**NJIT_OPTS)
def _dot_rows(wq, w_off, rows, cols, v, v_off, acc):
    """acc[r] = sum_c wq[w_off + r*cols + c] * v[v_off + c]  (int32; the only loop nest with MACs)."""
    for r in range(rows):
        s = np.int32(0)
        base = w_off + r * cols
        for c in range(cols):
            s += np.int32(wq[base + c]) * np.int32(v[v_off + c])
        acc[r] = s


@njit(**NJIT_OPTS)
def _requant_acc16(acc, prog, b_off, m_off, n_blocks, block, gate, g_off):
    """TFLite MatrixBatchVectorMultiplyAccumulate epilogue for int16 outputs, per gate block:
    gate = sat16(mbqm(bias + acc) + gate).  Block g uses the (mult, shift) pair at prog[m_off + 2g]."""
    for g in range(n_blocks):
        mult = prog[m_off + 2 * g]
        shift = prog[m_off + 2 * g + 1]
        for r in range(g * block, (g + 1) * block):
            v = mbqm(wrap32(np.int64(acc[r]) + prog[b_off + r]), mult, shift)
            gate[g_off + r] = sat16(np.int64(v) + gate[g_off + r])


@njit(**NJIT_OPTS)
def _lut16(table, t_off, v):
    """gemmlowp int16 activation through its exhaustive 65,536-entry table (index raw + 32768)."""
    return table[t_off + np.int64(v) + 32768]


@njit(**NJIT_OPTS)
def lstm_gates_int8(prog, rec, wq, x, x_off, n_in, h8, h_off, n_rec, hidden, gates, acc):
    """Pre-activations of the 4 gates (i, f, g, o) from input and recurrent matmuls, Q3.12 int16."""
    H4 = 4 * hidden
    for r in range(H4):
        gates[r] = 0
    _dot_rows(wq, prog[rec + LS_WX], H4, n_in, x, x_off, acc)
    _requant_acc16(acc, prog, prog[rec + LS_BX], rec + LS_MX, 4, hidden, gates, 0)
    _dot_rows(wq, prog[rec + LS_WH], H4, n_rec, h8, h_off, acc)
    _requant_acc16(acc, prog, prog[rec + LS_BH], rec + LS_MH, 4, hidden, gates, 0)


@njit(**NJIT_OPTS)
def lstm_peephole_acc(prog, rec, wq, row, c16, c_off, hidden, gates, g_off):
    """TFLite VectorBatchVectorCwiseProductAccumulate: gate += mbqm(w_peep[row] * c) (saturating)."""
    p_off = prog[rec + LS_PEEP] + row * hidden
    mult = prog[rec + LS_MP + 2 * row]
    shift = prog[rec + LS_MP + 2 * row + 1]
    for r in range(hidden):
        v = mbqm(np.int32(wq[p_off + r]) * np.int32(c16[c_off + r]), mult, shift)
        gates[g_off + r] = sat16(np.int64(v) + gates[g_off + r])


@njit(**NJIT_OPTS)
def lstm_cell_update_int8(gates, c16, c_off, hidden, cell_exp):
    """TFLite UpdateLstmCellInteger (no CIFG, no clip): c = sat16(int16(rdbpot(f*c, 15)) +
    int16(rdbpot(i*g, 30 + cell_exp))); gates already hold sigmoid(i), sigmoid(f), tanh(g) in Q0.15."""
    H = hidden
    shift = 30 + cell_exp
    for r in range(H):
        fc = np.int16(rdbpot(np.int32(gates[H + r]) * np.int32(c16[c_off + r]), 15))
        ig = np.int16(rdbpot(np.int32(gates[r]) * np.int32(gates[2 * H + r]), shift))
        c16[c_off + r] = sat16(np.int64(fc) + np.int64(ig))


@njit(**NJIT_OPTS)
def lstm_step_int8(prog, rec, flags, wq, x, x_off, n_in, state, s_off, hidden, n_rec, out, o_off,
                   gates, acc, hid8):
    """One int8 LSTM step for one sequence. state[s_off : s_off+R] = h (int8 values),
    state[s_off+R : s_off+R+H] = c (int16). Writes h to out[o_off : o_off+R]."""
    H = hidden
    h_off = s_off
    c_off = s_off + n_rec
    sig = prog[rec + LS_SIG]
    tanh3 = prog[rec + LS_TANH3]
    lstm_gates_int8(prog, rec, wq, x, x_off, n_in, state, h_off, n_rec, H, gates, acc)
    if flags & FLAG_PEEP:
        lstm_peephole_acc(prog, rec, wq, 0, state, c_off, H, gates, 0)       # i uses c(t-1)
        lstm_peephole_acc(prog, rec, wq, 1, state, c_off, H, gates, H)       # f uses c(t-1)
    for r in range(2 * H):
        gates[r] = _lut16(wq, sig, gates[r])
    for r in range(2 * H, 3 * H):
        gates[r] = _lut16(wq, tanh3, gates[r])
    lstm_cell_update_int8(gates, state, c_off, H, prog[rec + LS_CELL_EXP])
    if flags & FLAG_PEEP:
        lstm_peephole_acc(prog, rec, wq, 2, state, c_off, H, gates, 3 * H)   # o uses c(t)
    for r in range(3 * H, 4 * H):
        gates[r] = _lut16(wq, sig, gates[r])
    # hidden = o * tanh(c): TFLite CalculateLstmOutputInteger8x8_16
    tanh_c = prog[rec + LS_TANH_CELL]
    m_hid = prog[rec + LS_MHID]
    s_hid = prog[rec + LS_MHID + 1]
    zp_hid = prog[rec + LS_HID_ZP]
    for r in range(H):
        t = np.int32(_lut16(wq, tanh_c, state[c_off + r]))
        v = mbqm(np.int32(gates[3 * H + r]) * t, m_hid, s_hid)
        hid8[r] = sat8(np.int64(v) + zp_hid)
    if flags & FLAG_PROJ:
        _dot_rows(wq, prog[rec + LS_PROJ], n_rec, H, hid8, 0, acc)
        b_off = prog[rec + LS_BPROJ]
        m_p = prog[rec + LS_MPROJ]
        s_p = prog[rec + LS_MPROJ + 1]
        zp_out = prog[rec + LS_OUT_ZP]
        for r in range(n_rec):
            v = mbqm(wrap32(np.int64(acc[r]) + prog[b_off + r]), m_p, s_p)
            state[h_off + r] = sat8(np.int64(v) + zp_out)
    else:
        for r in range(H):
            state[h_off + r] = hid8[r]
    for r in range(n_rec):
        out[o_off + r] = state[h_off + r]


@njit(**NJIT_OPTS)
def requantize_q15_to_int8(src, s_off, dst, d_off, n, mult, shift, zp):
    """int8 copy of a Q0.15 vector in a layer's output quantization: sat8(mbqm(v) + zp)."""
    for r in range(n):
        dst[d_off + r] = sat8(np.int64(mbqm(np.int32(src[s_off + r]), mult, shift)) + zp)


@njit(**NJIT_OPTS)
def gru_step_int8(prog, rec, flags, wq, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, acc,
                  tmp16):
    """One int8 GRU step. state[s_off : s_off+H] = h in Q0.15 (int16, the precise state),
    state[s_off+H : s_off+2H] = h requantized to the layer's int8 output (feeds the recurrent matmul).
    gates: r, z, n pre-activations; tmp16 (H): recurrent part of n (reset-after) or int8 r*h."""
    H = hidden
    h16 = s_off
    h8 = s_off + H
    sig = prog[rec + GR_SIG]
    tanh3 = prog[rec + GR_TANH3]
    m8 = prog[rec + GR_M16TO8]
    s8 = prog[rec + GR_M16TO8 + 1]
    zp = prog[rec + GR_OUT_ZP]
    for r in range(3 * H):
        gates[r] = 0
    _dot_rows(wq, prog[rec + GR_WX], 3 * H, n_in, x, x_off, acc)
    _requant_acc16(acc, prog, prog[rec + GR_BX], rec + GR_MX, 3, H, gates, 0)
    if flags & FLAG_RESET_AFTER:
        # all three recurrent rows at once; n's recurrent part stays separate until scaled by r
        for r in range(H):
            tmp16[r] = 0
        _dot_rows(wq, prog[rec + GR_WH], 3 * H, H, state, h8, acc)
        _requant_acc16(acc, prog, prog[rec + GR_BH], rec + GR_MH, 2, H, gates, 0)
        b_off = prog[rec + GR_BH]
        m_n = prog[rec + GR_MH + 4]
        s_n = prog[rec + GR_MH + 5]
        for r in range(H):
            v = mbqm(wrap32(np.int64(acc[2 * H + r]) + prog[b_off + 2 * H + r]), m_n, s_n)
            tmp16[r] = sat16(v)
        for r in range(2 * H):
            gates[r] = _lut16(wq, sig, gates[r])
        for r in range(H):
            rn = rdbpot(np.int32(gates[r]) * np.int32(tmp16[r]), 15)       # r * (U_n h + b_hn), Q3.12
            gates[2 * H + r] = sat16(np.int64(rn) + gates[2 * H + r])
    else:
        _dot_rows(wq, prog[rec + GR_WH], 2 * H, H, state, h8, acc)
        _requant_acc16(acc, prog, prog[rec + GR_BH], rec + GR_MH, 2, H, gates, 0)
        for r in range(2 * H):
            gates[r] = _lut16(wq, sig, gates[r])
        for r in range(H):
            rh = rdbpot(np.int32(gates[r]) * np.int32(state[h16 + r]), 15)  # r * h, Q0.15
            tmp16[r] = sat8(np.int64(mbqm(rh, m8, s8)) + zp)                 # int8, same quant as h
        _dot_rows(wq, prog[rec + GR_WH] + 2 * H * H, H, H, tmp16, 0, acc)
        b_off = prog[rec + GR_BH] + 2 * H
        m_n = prog[rec + GR_MH + 4]
        s_n = prog[rec + GR_MH + 5]
        for r in range(H):
            v = mbqm(wrap32(np.int64(acc[r]) + prog[b_off + r]), m_n, s_n)
            gates[2 * H + r] = sat16(np.int64(v) + gates[2 * H + r])
    for r in range(H):
        n = np.int32(_lut16(wq, tanh3, gates[2 * H + r]))
        z = np.int32(gates[H + r])
        # h' = z*h + (1-z)*n with 1 = 32767 in Q0.15 (TFLite's Sub1Vector convention)
        zh = rdbpot(z * np.int32(state[h16 + r]), 15)
        zn = rdbpot((32767 - z) * n, 15)
        h_new = sat16(np.int64(zh) + zn)
        state[h16 + r] = h_new
        hq = sat8(np.int64(mbqm(np.int32(h_new), m8, s8)) + zp)
        state[h8 + r] = hq
        out[o_off + r] = hq


@njit(**NJIT_OPTS)
def rnn_step_int8(prog, rec, flags, wq, x, x_off, n_in, state, s_off, hidden, out, o_off, gates, acc):
    """One int8 vanilla RNN step. Pre-activation int16 (Q3.12 for tanh, calibrated scale for relu);
    state[s_off : s_off+H] = h as int8 values (the layer output, like the LSTM's h)."""
    H = hidden
    for r in range(H):
        gates[r] = 0
    _dot_rows(wq, prog[rec + RN_WX], H, n_in, x, x_off, acc)
    _requant_acc16(acc, prog, prog[rec + RN_BX], rec + RN_MX, 1, H, gates, 0)
    _dot_rows(wq, prog[rec + RN_WH], H, H, state, s_off, acc)
    _requant_acc16(acc, prog, prog[rec + RN_BH], rec + RN_MH, 1, H, gates, 0)
    m = prog[rec + RN_MOUT]
    s = prog[rec + RN_MOUT + 1]
    zp = prog[rec + RN_OUT_ZP]
    if flags & FLAG_RELU:
        for r in range(H):
            a = max(np.int32(gates[r]), np.int32(0))
            state[s_off + r] = sat8(np.int64(mbqm(a, m, s)) + zp)
    else:
        tanh3 = prog[rec + RN_TANH3]
        for r in range(H):
            t = np.int32(_lut16(wq, tanh3, gates[r]))
            state[s_off + r] = sat8(np.int64(mbqm(t, m, s)) + zp)
    for r in range(H):
        out[o_off + r] = state[s_off + r]


@njit(**NJIT_OPTS)
def dense_step_int8(prog, rec, wq, x, x_off, n_in, n_out, out, o_off, acc):
    """int8 Dense: logits = sat8(mbqm(b + W x) + pre_zp), then the output activation:
    relu clamps at the zero point; sigmoid/tanh map through a 256-entry int8 table; softmax uses an
    exp table and integer division (all tables built once in prepare())."""
    _dot_rows(wq, prog[rec + DN_W], n_out, n_in, x, x_off, acc)
    b_off = prog[rec + DN_B]
    m = prog[rec + DN_M]
    s = prog[rec + DN_M + 1]
    zp = prog[rec + DN_PRE_ZP]
    act = prog[rec + DN_ACT]
    lut = prog[rec + DN_LUT]
    for r in range(n_out):
        acc[r] = sat8(np.int64(mbqm(wrap32(np.int64(acc[r]) + prog[b_off + r]), m, s)) + zp)
    if act == ACT_NONE:
        for r in range(n_out):
            out[o_off + r] = acc[r]
    elif act == ACT_RELU:
        for r in range(n_out):
            out[o_off + r] = max(acc[r], zp)
    elif act == ACT_SOFTMAX:
        q_max = np.int32(-128)
        for r in range(n_out):
            q_max = max(q_max, acc[r])
        total = np.int64(0)
        for r in range(n_out):
            total += prog[lut + q_max - acc[r]]
        for r in range(n_out):
            e = np.int64(prog[lut + q_max - acc[r]])
            # round(256 * e / total) - 128, output scale 1/256, zero point -128
            q = (512 * e + total) // (2 * total) - 128
            out[o_off + r] = sat8(q)
    else:  # sigmoid, tanh
        for r in range(n_out):
            out[o_off + r] = prog[lut + acc[r] + 128]

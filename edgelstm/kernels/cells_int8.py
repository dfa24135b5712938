"""Integer-only cell steps (tflite-micro lstm_eval style): no allocation, no validation, no float.

Every function works on flat arrays plus integer offsets so that one jitted program can drive any stack of
layers (see ``program.py``).  Storage conventions:
  wq    int16  model constants: int8 weights widened to int16 (same values; the widened form lets LLVM
               emit pmaddwd), int16 peephole weights, and the gemmlowp activation tables
  prog  int32  zero-point-folded biases, (multiplier, shift) pairs, offsets, sizes
  vectors     int16 views holding int8 values (inputs, h) or int16 values (gates, cell, GRU state)
  acc   int32  matmul accumulators; dot loops write here in their own loop nest (vectorizes), the
               requantization epilogue runs in a second loop.

Arithmetic is TFLite's 8x8_16 LSTM (lstm_eval.cc, portable_tensor_utils.cc) for LSTM and LiteRT's int8
FULLY_CONNECTED for Dense. int8 GRU and RNN layers run as int16 op graphs (edgelstm/program/cellgraph.py,
kernels/ops_int8.py).
"""
import numpy as np
from numba import njit

from ..config import INLINE_OPTS, NJIT_OPTS
from .fixedpoint import mbqm, rdbpot, sat8, sat16, wrap32
from .pairwise import _dot_blocks

from ..program.layout import (  # noqa: F401  (the record layout lives in program/layout.py, free of Numba)
    KIND_LSTM, KIND_GRU, KIND_RNN, KIND_DENSE, KINDS, ACT_NONE, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH, ACT_RELU,
    ACTIVATIONS, L_KIND, L_IN, L_HID, L_OUT, L_NDIR, L_FLAGS, L_DIRLEN, L_HDR, FLAG_PEEP, FLAG_PROJ,
    FLAG_RESET_AFTER, FLAG_RELU, FLAG_REVERSE, LS_WX, LS_WH, LS_BX, LS_BH, LS_MX, LS_MH, LS_PEEP, LS_MP, LS_PROJ,
    LS_BPROJ, LS_MPROJ, LS_MHID, LS_HID_ZP, LS_OUT_ZP, LS_CELL_EXP, LS_TANH_CELL, LS_STATE, LS_SIG, LS_TANH3,
    LS_CELL_CLIP, LS_PROJ_CLIP, LS_LEN, GR_WX, GR_WH, GR_BX, GR_BH, GR_MX, GR_MH, GR_M16TO8, GR_OUT_ZP,
    GR_STATE, GR_SIG, GR_TANH3, GR_LEN, RN_WX, RN_WH, RN_BX, RN_BH, RN_MX, RN_MH, RN_MOUT, RN_OUT_ZP,
    RN_STATE, RN_TANH3, RN_LEN, DN_W, DN_B, DN_M, DN_PRE_ZP, DN_ACT, DN_LUT, DN_LEN, PAD, BLOCK_ROWS, IXW,
    IX_SRC, IX_STATE, IX_OUT, IX_SCR,
)


@njit(**INLINE_OPTS)
def padded(n):
    return (n + PAD - 1) // PAD * PAD


@njit(**NJIT_OPTS)
def _dot_row_major(wq, w_off, rows, cols, v, v_off, acc, a_off):
    """acc[a_off + r] = sum_c W[r, c] * v[v_off + c], W = wq[w_off:] row-major as (rows, padded(cols)).
    Loops index slices with bare loop counters: an index like ``v[v_off + c]`` makes Numba emit a
    negative-index wraparound check that blocks vectorization (5x slower here)."""
    cp = padded(cols)
    out = acc[a_off:a_off + rows]
    if cp == PAD:
        # the common small-layer case with a literal trip count: LLVM drops the loop control (-28% here)
        vv = v[v_off:v_off + PAD]
        for r in range(rows):
            w = wq[w_off + r * PAD:w_off + (r + 1) * PAD]
            s = np.int32(0)
            for c in range(PAD):
                s += np.int32(w[c]) * np.int32(vv[c])
            out[r] = s
        return
    vv = v[v_off:v_off + cp]
    for r in range(rows):
        w = wq[w_off + r * cp:w_off + (r + 1) * cp]
        s = np.int32(0)
        for c in range(cp):
            s += np.int32(w[c]) * np.int32(vv[c])
        out[r] = s


@njit(**INLINE_OPTS)
def _dot_rows(wq, w_off, row0, rows, cols, unit, v, ix, col, add, nb, acc, scr):
    """The only MAC loop.  For each sequence n < nb, with its vector at v[ix[n * IXW + col] + add:]:
    acc[n * scr + r] = wrap32(sum_c W[row0 + r, c] * v[.. + c]) for r < rows (int32), W the matrix stored at
    wq[w_off:] (row0 a multiple of ``unit``).  ``unit`` is the row count of
    the stored matrix's sub-matrices (its layout key, ``layout.uses_blocks``): pairwise block layout and the
    vpmaddwd / smlal kernel (one pass over the weights for all nb vectors) when it is a multiple of
    BLOCK_ROWS, else the row-major loop per sequence."""
    # one argument-type tuple for every call site (int64 throughout): literal or int32 arguments would each
    # compile their own copy of the dot loops
    cp = np.int64(padded(cols))
    rows, cols, col, add, nb, scr = np.int64(rows), np.int64(cols), np.int64(col), np.int64(add), np.int64(nb), \
        np.int64(scr)
    if unit % BLOCK_ROWS == 0:
        _dot_blocks(wq, np.int64(2 * w_off + row0 * cp), rows, cp, cols, v, ix, col, add, nb, acc, scr)
        return
    for n in range(nb):
        _dot_row_major(wq, np.int64(w_off + row0 * cp), rows, cols, v, np.int64(ix[n * IXW + col] + add), acc,
                       n * scr)


@njit(**INLINE_OPTS)
def _mbqm_split(x, mult, left, right):
    """``fixedpoint.mbqm`` with the shift pre-split (left = max(shift, 0), right = max(-shift, 0)) and every
    branch written as a select, so loops calling it vectorize.  Multipliers from QuantizeMultiplier are
    never INT32_MIN, so SRDHM's saturation case cannot occur."""
    xs = np.int64(np.int32(np.int64(np.int32(x)) << left))           # wrap32(wrap32(x) << left)
    # SRDHM: (ab + nudge) / 2^31 with C truncation, nudge = 2^30 or 1 - 2^30 by the sign of ab, equals
    # floor((ab + 2^30) / 2^31) for every ab (for ab = -k < 0 both are -floor((k + 2^30 - 1) / 2^31)):
    # one add and one arithmetic shift, no select
    hi = (xs * mult + np.int64(1 << 30)) >> 31
    mask = (np.int64(1) << right) - 1
    return (hi >> right) + np.int64((hi & mask) > (mask >> 1) + ((hi >> 63) & 1))  # RDBPOT


@njit(**INLINE_OPTS)
def _shift_parts(shift):
    return np.int64(max(shift, 0)), np.int64(max(-shift, 0))


@njit(**INLINE_OPTS)
def _requant_acc16(acc, prog, b_off, m_off, n_blocks, block, gate, g_off, accumulate):
    """TFLite MatrixBatchVectorMultiplyAccumulate epilogue for int16 outputs, per gate block:
    gate = sat16(mbqm(wrap32(bias + acc)) + gate) (or + 0 for the first matmul into a gate:
    ``accumulate=False`` skips zero-filling the gates).  Block g uses the (mult, shift) pair at
    prog[m_off + 2g]; runs in its own loop after the dot loop so both vectorize."""
    for g in range(n_blocks):
        mult = np.int64(prog[m_off + 2 * g])
        left, right = _shift_parts(prog[m_off + 2 * g + 1])
        a = acc[g * block:(g + 1) * block]
        bias = prog[b_off + g * block:b_off + (g + 1) * block]
        out = gate[g_off + g * block:g_off + (g + 1) * block]
        if accumulate:
            for r in range(block):
                v = _mbqm_split(np.int64(a[r]) + np.int64(bias[r]), mult, left, right) + out[r]
                out[r] = min(max(v, -32768), 32767)
        else:
            for r in range(block):
                v = _mbqm_split(np.int64(a[r]) + np.int64(bias[r]), mult, left, right)
                out[r] = min(max(v, -32768), 32767)


@njit(**INLINE_OPTS)
def _lut16_inplace(table, t_off, v):
    """v[i] = gemmlowp activation(v[i]) through its exhaustive 65,536-entry table (index raw + 32768)."""
    tab = table[t_off:t_off + 65536]
    for i in range(v.size):
        v[i] = tab[np.uint32(np.int32(v[i]) + 32768)]


@njit(**INLINE_OPTS)
def lstm_peephole_acc(prog, rec, wq, row, c, hidden, gate):
    """TFLite VectorBatchVectorCwiseProductAccumulate: gate += mbqm(w_peep[row] * c) (saturating)."""
    p_off = prog[rec + LS_PEEP] + row * hidden
    w = wq[p_off:p_off + hidden]
    mult = prog[rec + LS_MP + 2 * row]
    shift = prog[rec + LS_MP + 2 * row + 1]
    for r in range(hidden):
        v = mbqm(np.int32(w[r]) * np.int32(c[r]), mult, shift)
        gate[r] = sat16(np.int64(v) + gate[r])


@njit(**INLINE_OPTS)
def lstm_cell_update_int8(gates, c16, c_off, hidden, cell_exp):
    """TFLite UpdateLstmCellInteger (no CIFG, no clip): c = sat16(int16(rdbpot(f*c, 15)) +
    int16(rdbpot(i*g, 30 + cell_exp))); gates already hold sigmoid(i), sigmoid(f), tanh(g) in Q0.15."""
    H = hidden
    shift = 30 + cell_exp
    i_g = gates[:H]
    f_g = gates[H:2 * H]
    g_g = gates[2 * H:3 * H]
    c = c16[c_off:c_off + H]
    for r in range(H):
        fc = np.int16(rdbpot(np.int32(f_g[r]) * np.int32(c[r]), np.int64(15)))  # one specialization
        ig = np.int16(rdbpot(np.int32(i_g[r]) * np.int32(g_g[r]), shift))
        c[r] = sat16(np.int64(fc) + np.int64(ig))


@njit(**NJIT_OPTS)
def lstm_step_int8(prog, rec, flags, wq, seq, n_in, state, hidden, n_rec, ix, nb, gates, acc, aux, scr, peep, proj):
    """One int8 LSTM step of nb sequences (offsets in ix, see layout.IX_*).  Sequence n: input at
    seq[ix[IX_SRC]:], state at s = ix[IX_STATE] + prog[rec + LS_STATE] (state[s : s+R] = h as int8 values,
    state[s+R : s+R+H] = c int16), h written to seq[ix[IX_OUT] : +R]; its gates / acc / aux (the int8
    hidden before the projection) start at n * scr.  The matmuls run for all nb sequences at once.  ``peep`` /
    ``proj``: None when no LSTM of the model has peepholes / a projection (those paths are then not compiled),
    else True (``flags`` decides)."""
    H = hidden
    H4 = 4 * H
    s_rec = prog[rec + LS_STATE]
    _dot_rows(wq, prog[rec + LS_WX], 0, H4, n_in, H4, seq, ix, IX_SRC, 0, nb, acc, scr)
    for n in range(nb):
        _requant_acc16(acc[n * scr:], prog, prog[rec + LS_BX], rec + LS_MX, 4, H, gates[n * scr:], 0, False)
    _dot_rows(wq, prog[rec + LS_WH], 0, H4, n_rec, H4, state, ix, IX_STATE, s_rec, nb, acc, scr)
    sig = prog[rec + LS_SIG]
    tanh3 = prog[rec + LS_TANH3]
    cell_exp = prog[rec + LS_CELL_EXP]
    clip = prog[rec + LS_CELL_CLIP]
    t_off = prog[rec + LS_TANH_CELL]
    tanh_c = wq[t_off:t_off + 65536]
    m_hid = np.int64(prog[rec + LS_MHID])
    left, right = _shift_parts(prog[rec + LS_MHID + 1])
    zp_hid = prog[rec + LS_HID_ZP]
    for n in range(nb):
        s_off = ix[n * IXW + IX_STATE] + s_rec
        gates_n = gates[n * scr:(n + 1) * scr]
        _requant_acc16(acc[n * scr:], prog, prog[rec + LS_BH], rec + LS_MH, 4, H, gates_n, 0, True)
        c = state[s_off + n_rec:s_off + n_rec + H]
        if peep is not None:
            if flags & FLAG_PEEP:
                lstm_peephole_acc(prog, rec, wq, 0, c, H, gates_n[:H])            # i uses c(t-1)
                lstm_peephole_acc(prog, rec, wq, 1, c, H, gates_n[H:2 * H])       # f uses c(t-1)
        _lut16_inplace(wq, sig, gates_n[:2 * H])
        _lut16_inplace(wq, tanh3, gates_n[2 * H:3 * H])
        lstm_cell_update_int8(gates_n, state, s_off + n_rec, H, cell_exp)
        if clip > 0:  # TFLite CwiseClipping after the cell update: c stays in [-clip, clip]
            for r in range(H):
                c[r] = min(max(np.int32(c[r]), -clip), clip)
        o = gates_n[3 * H:4 * H]
        if peep is not None:
            if flags & FLAG_PEEP:
                lstm_peephole_acc(prog, rec, wq, 2, c, H, o)                    # o uses c(t)
        _lut16_inplace(wq, sig, o)
        # hidden = o * tanh(c): TFLite CalculateLstmOutputInteger8x8_16.  The table lookup (a gather) runs in
        # its own loop, writing o * tanh(c) to the free accumulators, so the requantization loop vectorizes
        # (-8% per LSTM step here)
        hid = aux[n * scr:n * scr + H]
        prod = acc[n * scr:n * scr + H]
        for r in range(H):
            prod[r] = np.int32(o[r]) * np.int32(tanh_c[np.uint32(np.int32(c[r]) + 32768)])
        for r in range(H):
            v = _mbqm_split(np.int64(prod[r]), m_hid, left, right) + zp_hid
            hid[r] = min(max(v, -128), 127)
        if proj is None or not flags & FLAG_PROJ:
            # element loops, not slice assignments: those compile Numba's shape-mismatch error path (string
            # formatting, ~1.5 s of a first compile) for a mismatch that cannot happen
            o_off = ix[n * IXW + IX_OUT]
            for r in range(n_rec):
                state[s_off + r] = hid[r]
                seq[o_off + r] = hid[r]
    if proj is not None:
        if flags & FLAG_PROJ:
            _dot_rows(wq, prog[rec + LS_PROJ], 0, n_rec, H, n_rec, aux, ix, IX_SCR, 0, nb, acc, scr)
            b_off = prog[rec + LS_BPROJ]
            bias = prog[b_off:b_off + n_rec]
            m_p = prog[rec + LS_MPROJ]
            s_p = prog[rec + LS_MPROJ + 1]
            zp_out = prog[rec + LS_OUT_ZP]
            p_clip = prog[rec + LS_PROJ_CLIP]
            for n in range(nb):
                s_off = ix[n * IXW + IX_STATE] + s_rec
                h = state[s_off:s_off + n_rec]
                a = acc[n * scr:n * scr + n_rec]
                for r in range(n_rec):
                    v = mbqm(wrap32(np.int64(a[r]) + bias[r]), m_p, s_p)
                    h[r] = sat8(np.int64(v) + zp_out)
                if p_clip > 0:  # TFLite clips the int8 projection output around 0 (not around the zero point)
                    for r in range(n_rec):
                        h[r] = min(max(np.int32(h[r]), -p_clip), p_clip)
                o_off = ix[n * IXW + IX_OUT]
                for r in range(n_rec):
                    seq[o_off + r] = h[r]


@njit(**NJIT_OPTS)
def dense_step_int8(prog, rec, wq, seq, n_in, n_out, ix, nb, acc, scr, softmax):
    """int8 Dense = LiteRT's int8 FULLY_CONNECTED for nb sequences: per output channel r, logits[r] =
    sat8(((b[r] + W x)[r] * m[r] + 2^(n[r]-1)) >> n[r]) + pre_zp) (single rounding, 64-bit), then the
    output activation, written to seq[ix[IX_OUT]:] (``softmax`` None: no softmax Dense in the model, not compiled)"""
    _dot_rows(wq, prog[rec + DN_W], 0, n_out, n_in, n_out, seq, ix, IX_SRC, 0, nb, acc, scr)
    for n in range(nb):
        _dense_epilogue(prog, rec, acc[n * scr:n * scr + n_out], n_out, seq, ix[n * IXW + IX_OUT], softmax)


@njit(**INLINE_OPTS)
def _dense_epilogue(prog, rec, logits, n_out, out, o_off, softmax):
    """Requantization and activation of one sequence's Dense accumulators (in place in ``logits``):
    relu clamps at the zero point; sigmoid/tanh map through a 256-entry int8 table; softmax uses an
    exp table and integer division (all tables built once in prepare())."""
    b_off = prog[rec + DN_B]
    bias = prog[b_off:b_off + n_out]
    m_off = prog[rec + DN_M]
    mults = prog[m_off:m_off + 2 * n_out]
    zp = prog[rec + DN_PRE_ZP]
    act = prog[rec + DN_ACT]
    lut_off = prog[rec + DN_LUT]
    y = out[o_off:o_off + n_out]
    for r in range(n_out):
        total = np.int64(31 - mults[2 * r + 1])
        v = (wrap32(np.int64(logits[r]) + bias[r]) * np.int64(mults[2 * r]) + (np.int64(1) << (total - 1))) >> total
        logits[r] = sat8(v + zp)
    if act == ACT_NONE:
        for r in range(n_out):
            y[r] = logits[r]
    elif act == ACT_RELU:
        for r in range(n_out):
            y[r] = max(logits[r], zp)
    elif act == ACT_SOFTMAX:
        if softmax is not None:
            # LiteRT's int8 SOFTMAX exactly: a float32 exp table (built in prepare) and float32 arithmetic in
            # its order: the one float epilogue of the int8 path, kept because both LiteRT resolvers compute it so.
            # Every table index is clamped right where it is used: the logits live in scratch memory, and a
            # kernel must never read outside a table whatever that memory holds (no bounds checks in kernels).
            exp_table = prog[lut_off:lut_off + 256].view(np.float32)
            q_max = np.int32(-128)
            for r in range(n_out):
                q_max = max(q_max, logits[r])
            total = np.float32(0.0)
            for r in range(n_out):
                total = np.float32(total + exp_table[min(max(q_max - logits[r], 0), 255)])
            inv = np.float32(1.0) / np.float32(total * np.float32(0.00390625))
            for r in range(n_out):
                p = np.float64(np.float32(exp_table[min(max(q_max - logits[r], 0), 255)] * inv))
                q = np.floor(abs(p) + 0.5)                 # std::round: half away from zero
                if p < 0:
                    q = -q
                y[r] = sat8(np.int64(min(max(q, -1000.0), 1000.0)) - 128)
    else:  # sigmoid, tanh
        lut = prog[lut_off:lut_off + 256]
        for r in range(n_out):
            y[r] = lut[min(max(logits[r] + 128, 0), 255)]

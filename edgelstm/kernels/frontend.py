"""Front-end layer kernels (kinds "conv1d", and "pad" / "magnitude" / "activation" / "context" as map records; see
edgelstm/ir/frontend.py and the CV_ / MP_ records in program/layout.py).

A frame is (length, channels), channels last. A conv gathers each output position's window (K taps x Ig
channels, padding applied) into scratch and takes one dot product per output channel: for int8 the program's
dot-loop matrices (the pairwise vpmaddwd / smlal kernel when the output channels make whole blocks), then LiteRT's
per-channel requantization; for float32 an axpy over the output channels (each output still sums its terms in
order, so it equals the plain dot product bit for bit). Every offset was laid out and validated by prepare().
"""
import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from ..program.layout import (ACT_RELU, ACT_RELU6, ACT_SIGMOID, ACT_TANH, CV_ACT, CV_B, CV_CIN, CV_COUT, CV_DIL, CV_HI,
                              CV_K, CV_LEN_IN, CV_LO, CV_LOUT, CV_LUT, CV_M, CV_MULT, CV_PADL, CV_REFLECT, CV_ROWS, CV_STRIDE,
                              CV_W, CV_ZP_IN, CV_ZP_OUT, IX_OUT, IX_SRC, IX_STATE, IXW, MAP_ACTIVATION,
                              MAP_MAGNITUDE, MAP_PAD, MP_N_IN, MP_N_OUT, MP_OP, MP_TABLE)
from .cells_f32 import _sigmoid, _tanh
from .cells_int8 import _mbqm_split, _shift_parts, padded
from .fblocks import LANES, _fblock1, _fblock2, _fblock3, _fblock4
from .pairwise import GROUP, ROWS, _pmadd_block, _pmadd_group


@njit(**NJIT_OPTS)
def _source_position(p, length, reflect):
    """The input position that padded position ``p`` (relative to the unpadded start) reads, or -1 for a zero
    pad. Reflection does not repeat the edge (torch's / ONNX's "reflect"); prepare() keeps pads < length."""
    if 0 <= p < length:
        return p
    if not reflect:
        return -1
    return -p if p < 0 else 2 * (length - 1) - p


@njit(**NJIT_OPTS)
def _gather_window(x, x_off, C, length, first, K, dil, reflect, pad_value, win, w_off):
    """win[w_off + k * C + c] = x_pad[first + k * dil, c] for k < K, c < C: the taps inside the frame as one
    contiguous copy when dil = 1 (a window of 256 one-channel taps was 1,024 tiny copies), the rest tap by tap."""
    k_lo, k_hi = 0, 0
    if dil == 1:
        k_lo = min(max(-first, 0), K)
        k_hi = max(min(length - first, K), k_lo)
        src = x[x_off + (first + k_lo) * C:x_off + (first + k_hi) * C]
        dst = win[w_off + k_lo * C:w_off + k_hi * C]
        for i in range(src.size):
            dst[i] = src[i]
    for k in range(K):
        if k_lo <= k < k_hi:
            continue
        p = _source_position(first + k * dil, length, reflect)
        dst = win[w_off + k * C:w_off + (k + 1) * C]
        if p < 0:
            dst[:] = pad_value
        else:
            src = x[x_off + p * C:x_off + (p + 1) * C]
            for c in range(C):
                dst[c] = src[c]


@njit(**NJIT_OPTS)
def _dot_blocks_strided(wq, w_byte, rows, cp, cols, v, v0, v_stride, npos, acc, a0, a_stride):
    """acc[a0 + p * a_stride + r] = sum_c W[r, c] * v[v0 + p * v_stride + c] for p < npos: ``_dot_blocks`` over
    vectors at a fixed stride (a conv's gathered windows) instead of the sequences' offset table."""
    npairs = (cols + 1) // 2
    stride = cp * ROWS
    nblocks = rows // ROWS
    b = 0
    while b + GROUP <= nblocks:
        for p in range(npos):
            _pmadd_group(wq, w_byte + b * stride, stride, v, v0 + p * v_stride, npairs, acc, a0 + p * a_stride + b * ROWS)
        b += GROUP
    while b < nblocks:
        for p in range(npos):
            _pmadd_block(wq, w_byte + b * stride, stride, v, v0 + p * v_stride, npairs, acc, a0 + p * a_stride + b * ROWS)
        b += 1


# ------------------------------------------------------------------------------------------------- int8

@njit(**NJIT_OPTS)
def conv_step_int8(prog, rec, wq, seq, ix, nb, acc, aux, scr):
    """int8 Conv1D (LiteRT's CONV_2D / DEPTHWISE_CONV_2D int8, per-channel) for nb sequences."""
    L = prog[rec + CV_LEN_IN]
    C = prog[rec + CV_CIN]
    O = prog[rec + CV_COUT]
    K = prog[rec + CV_K]
    stride = prog[rec + CV_STRIDE]
    dil = prog[rec + CV_DIL]
    pl = prog[rec + CV_PADL]
    reflect = prog[rec + CV_REFLECT] != 0
    mult = prog[rec + CV_MULT]
    Lo = prog[rec + CV_LOUT]
    w_off = prog[rec + CV_W]
    zp_in = prog[rec + CV_ZP_IN]
    for n in range(nb):
        xo = ix[n * IXW + IX_SRC]
        a0 = n * scr
        if mult == 0:
            KC = K * C
            cp = padded(KC)
            for l in range(Lo):
                w0 = a0 + l * cp
                _gather_window(seq, xo, C, L, l * stride - pl, K, dil, reflect, zp_in, aux, w0)
                aux[w0 + KC:w0 + cp] = 0
            rows = prog[rec + CV_ROWS]       # O rounded up to whole blocks (zero rows)
            _dot_blocks_strided(wq, 2 * w_off, rows, cp, KC, aux, a0, cp, Lo, acc, a0, rows)
            _conv_epilogue_int8(prog, rec, acc, a0, rows, Lo, O, seq, ix[n * IXW + IX_OUT])
        else:   # depthwise: output channel o reads input channel o // mult
            for l in range(Lo):
                first = l * stride - pl
                for o in range(O):
                    c = o // mult
                    w = wq[w_off + o * K:w_off + (o + 1) * K]
                    s = np.int32(0)
                    for k in range(K):
                        p = _source_position(first + k * dil, L, reflect)
                        v = zp_in if p < 0 else np.int32(seq[xo + p * C + c])
                        s += np.int32(w[k]) * v
                    acc[a0 + l * O + o] = s
            _conv_epilogue_int8(prog, rec, acc, a0, O, Lo, O, seq, ix[n * IXW + IX_OUT])


@njit(**NJIT_OPTS)
def _conv_epilogue_int8(prog, rec, acc, a0, a_stride, Lo, O, out, o_off):
    """Per output channel: requantize (bias with the input zero point folded in, LiteRT's per-channel
    multiplier), add the output zero point, clamp to the fused activation's range; a fused sigmoid / tanh then
    maps through its 256-entry table. Position l's accumulators start at a0 + l * a_stride."""
    bias = prog[prog[rec + CV_B]:prog[rec + CV_B] + O]
    m = prog[prog[rec + CV_M]:prog[rec + CV_M] + 2 * O]
    zp = prog[rec + CV_ZP_OUT]
    lo = prog[rec + CV_LO]
    hi = prog[rec + CV_HI]
    lut_off = prog[rec + CV_LUT]
    n = Lo * O
    y = out[o_off:o_off + n]
    for l in range(Lo):
        a = acc[a0 + l * a_stride:a0 + l * a_stride + O]
        yl = y[l * O:(l + 1) * O]
        for o in range(O):
            left, right = _shift_parts(m[2 * o + 1])
            v = _mbqm_split(np.int64(a[o]) + bias[o], np.int64(m[2 * o]), left, right) + zp
            yl[o] = min(max(v, lo), hi)
    if lut_off >= 0:
        lut = prog[lut_off:lut_off + 256]
        for i in range(n):
            y[i] = lut[min(max(np.int32(y[i]) + 128, 0), 255)]


@njit(**NJIT_OPTS)
def map_step_int8(prog, rec, wq, seq, ix, nb, state):
    """Pad / magnitude / activation / context on int8 frames (stored as int16 elements) for nb sequences."""
    op = prog[rec + MP_OP]
    n_in = prog[rec + MP_N_IN]
    n_out = prog[rec + MP_N_OUT]
    for n in range(nb):
        xo = ix[n * IXW + IX_SRC]
        oo = ix[n * IXW + IX_OUT]
        if op == MAP_PAD:
            _pad(prog, rec, seq, xo, seq, oo)
        elif op == MAP_MAGNITUDE:      # LiteRT's float32 island, as the exhaustive pair table prepare() built
            L = prog[rec + 3]
            C = prog[rec + 4]
            table = wq[prog[rec + MP_TABLE]:prog[rec + MP_TABLE] + 65536]
            for l in range(L):
                a = seq[xo + l * 2 * C:xo + l * 2 * C + C]
                b = seq[xo + l * 2 * C + C:xo + (l + 1) * 2 * C]
                y = seq[oo + l * C:oo + (l + 1) * C]
                for c in range(C):
                    y[c] = table[(np.int32(a[c]) + 128) * 256 + np.int32(b[c]) + 128]
        elif op == MAP_ACTIVATION:
            lut = prog[prog[rec + 3]:prog[rec + 3] + 256]
            for i in range(n_in):
                seq[oo + i] = lut[min(max(np.int32(seq[xo + i]) + 128, 0), 255)]
        else:
            _context(prog, rec, seq, xo, n_in, n_out, seq, oo, state, ix[n * IXW + IX_STATE])


@njit(**NJIT_OPTS)
def _pad(prog, rec, x, xo, out, oo):
    L = prog[rec + 3]
    C = prog[rec + 4]
    left = prog[rec + 5]
    right = prog[rec + 6]
    reflect = prog[rec + 7] != 0
    _gather_window(x, xo, C, L, -left, L + left + right, 1, reflect, prog[rec + 8], out, oo)


@njit(**NJIT_OPTS)
def _context(prog, rec, x, xo, n_in, n_out, out, oo, state, s_base):
    """out = [ctx, x]; then ctx = the last K values of out (the stream so far)."""
    K = prog[rec + 3]
    ctx = state[s_base + prog[rec + 4]:s_base + prog[rec + 4] + K]
    y = out[oo:oo + n_out]
    for i in range(K):
        y[i] = ctx[i]
    for i in range(n_in):
        y[K + i] = x[xo + i]
    for i in range(K):
        ctx[i] = y[n_in + i]


# ------------------------------------------------------------------------------------------------ float32

@njit(**NJIT_OPTS)
def _activate_f32(v, act):
    if act == ACT_RELU:
        return max(v, np.float32(0.0))
    if act == ACT_RELU6:
        return min(max(v, np.float32(0.0)), np.float32(6.0))
    if act == ACT_SIGMOID:
        return _sigmoid(v)
    if act == ACT_TANH:
        return _tanh(v)
    return v


@njit(**NJIT_OPTS)
def conv_step_f32(prog, rec, wf, seq, ix, nb, gates, aux, scr):
    """float32 Conv1D for nb sequences. A full conv gathers every output position's window into aux, then runs
    blocks of 16 output channels over up to 4 positions at a time with the accumulators in registers
    (fblocks.py), into gates (bias first, then the terms in order); a depthwise conv sums its K taps directly."""
    L = prog[rec + CV_LEN_IN]
    C = prog[rec + CV_CIN]
    O = prog[rec + CV_COUT]
    K = prog[rec + CV_K]
    stride = prog[rec + CV_STRIDE]
    dil = prog[rec + CV_DIL]
    pl = prog[rec + CV_PADL]
    reflect = prog[rec + CV_REFLECT] != 0
    mult = prog[rec + CV_MULT]
    Lo = prog[rec + CV_LOUT]
    rows = prog[rec + CV_ROWS]
    w_off = prog[rec + CV_W]
    act = prog[rec + CV_ACT]
    KC = K * C
    for n in range(nb):
        xo = ix[n * IXW + IX_SRC]
        oo = ix[n * IXW + IX_OUT]
        a0 = n * scr
        if mult == 0:
            bias = wf[prog[rec + CV_B]:prog[rec + CV_B] + rows]
            for l in range(Lo):
                _gather_window(seq, xo, C, L, l * stride - pl, K, dil, reflect, np.float32(0.0), aux, a0 + l * KC)
                g = gates[a0 + l * rows:a0 + (l + 1) * rows]
                for o in range(rows):
                    g[o] = bias[o]
            for blk in range(rows // LANES):
                wb = w_off + blk * KC * LANES
                l = 0
                while l + 4 <= Lo:
                    _fblock4(wf, wb, KC, aux, a0 + l * KC, KC, gates, a0 + l * rows + blk * LANES, rows)
                    l += 4
                if Lo - l == 3:
                    _fblock3(wf, wb, KC, aux, a0 + l * KC, KC, gates, a0 + l * rows + blk * LANES, rows)
                elif Lo - l == 2:
                    _fblock2(wf, wb, KC, aux, a0 + l * KC, KC, gates, a0 + l * rows + blk * LANES, rows)
                elif Lo - l == 1:
                    _fblock1(wf, wb, KC, aux, a0 + l * KC, KC, gates, a0 + l * rows + blk * LANES, rows)
            for l in range(Lo):
                g = gates[a0 + l * rows:a0 + l * rows + O]
                y = seq[oo + l * O:oo + (l + 1) * O]
                for o in range(O):
                    y[o] = _activate_f32(g[o], act)
            continue
        bias = wf[prog[rec + CV_B]:prog[rec + CV_B] + O]
        for l in range(Lo):
            y = seq[oo + l * O:oo + (l + 1) * O]
            first = l * stride - pl
            for o in range(O):
                c = o // mult
                w = wf[w_off + o * K:w_off + (o + 1) * K]
                s = bias[o]
                for k in range(K):
                    p = _source_position(first + k * dil, L, reflect)
                    if p >= 0:
                        s += w[k] * seq[xo + p * C + c]
                y[o] = _activate_f32(s, act)


@njit(**NJIT_OPTS)
def map_step_f32(prog, rec, seq, ix, nb, state):
    """Float32 twin of map_step_int8."""
    op = prog[rec + MP_OP]
    n_in = prog[rec + MP_N_IN]
    n_out = prog[rec + MP_N_OUT]
    for n in range(nb):
        xo = ix[n * IXW + IX_SRC]
        oo = ix[n * IXW + IX_OUT]
        if op == MAP_PAD:
            _pad(prog, rec, seq, xo, seq, oo)
        elif op == MAP_MAGNITUDE:
            L = prog[rec + 3]
            C = prog[rec + 4]
            for l in range(L):
                for c in range(C):
                    a = seq[xo + l * 2 * C + c]
                    b = seq[xo + l * 2 * C + C + c]
                    seq[oo + l * C + c] = np.sqrt(a * a + b * b)
        elif op == MAP_ACTIVATION:
            act = prog[rec + 3]
            for i in range(n_in):
                seq[oo + i] = _activate_f32(seq[xo + i], act)
        else:
            _context(prog, rec, seq, xo, n_in, n_out, seq, oo, state, ix[n * IXW + IX_STATE])

"""TFLite builtin int8 ops and the int8 op-graph layer step (layer kind "ops", see edgelstm/ir/opgraph.py).

Every op is bit-exact with LiteRT's reference kernels (tests/test_opgraph.py runs converter-made graphs and
single-op files in LiteRT itself). ``graph_step_int8`` is called by the program interpreter
(program._cell_int8) for a KIND_OPS layer: it runs the layer's op records over an int16 arena holding int8
values (the program's gates scratch), reading the layer input from ``seq`` and the recurrent state from
``state``, and writing the output and the new state back. Private kernels take arrays and scalars only; every
offset was validated and laid out by program.opgraph.prepare_record (no bounds checks here, no allocation).

Op records (OPK_REC int32 each; a = input arena offset, o = output arena offset, n = elements):
  FC      [OPK_FC, x, K, zp_in, w_off (weight blob), N, b_off (prog, -1 none), m_off (prog: N (mult, shift)
           pairs), 0, zp_out, lo, hi, o]      per-channel, single rounding (LiteRT's int8 FULLY_CONNECTED, as measured)
  CONV16  the FC fields (zero points 0) + [13] blocks: int16 input, int64 accumulator, LiteRT's int64
           MultiplyByQuantizedMultiplier (multiplier rounded to 16 bits, one rounding); int16 output; the
           weights are a dot-loop matrix (padded columns; pairwise block layout in the JIT blob when blocks = 1)
  ACT16   [OPK_ACT16, n, a, 0, o, tanh, mult, left_shift, t_off (prog: 256-entry uint16 sigmoid table),
           k_off (kernel blob: the exhaustive 65,536-entry int16 table)]  LiteRT's int16 LOGISTIC / TANH reference
           kernels (scale, then interpolate t_off's table; the C runtime does that, the JIT looks up k_off)
  ADD/SUB [op, n, a, b, o, zp_a, m_a, s_a, zp_b, m_b, s_b, left_shift, m_out, s_out, zp_out, lo, hi]
  MUL     [OPK_MUL, n, a, b, o, zp_a, zp_b, m, s, zp_out, lo, hi]
  REQUANT [OPK_REQUANT, n, a, 0, o, zp_in, m, s, zp_out, lo, hi]     QUANTIZE int8->int8, RELU
  LUT     [OPK_LUT, n, a, 0, o, t_off (weight blob, 256 entries)]    LOGISTIC, TANH, DEQUANTIZE->QUANTIZE
  COPY    [OPK_COPY, n, a, 0, o]                                      RESHAPE, SPLIT, CONCATENATION parts
"""
import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from .cells_int8 import _mbqm_split, _shift_parts, padded
from .fixedpoint import wrap32
from .pairwise import GROUP, ROWS, _pmadd_block, _pmadd_group
from ..program.layout import (OG_CONST_REC, OG_CONSTS, OG_NCONST, OG_NOPS, OG_NSTATE, OG_NX, OG_NY, OG_OPS, OG_STATE,
                     OG_STATE_REC, OG_STATES, OG_X, OG_Y, OPK_ACT16, OPK_ADD, OPK_CONV16, OPK_COPY, OPK_FC, OPK_LUT,
                     OPK_MUL, OPK_REC, OPK_REQUANT, OPK_SUB)


@njit(**NJIT_OPTS)
def _clamp(v, lo, hi):
    if v < lo:
        return np.int64(lo)
    if v > hi:
        return np.int64(hi)
    return v


@njit(**NJIT_OPTS)
def _fully_connected(arena, x, K, zp_in, wq, w_off, N, prog, b_off, m_off, zp_out, lo, hi, o):
    """out[n] = clamp(((acc * m[n] + 2^(t-1)) >> t) + zp_out), t = 31 - shift[n],
    acc = wrap32(bias[n] + sum_k (x[k] - zp_in) * w[n, k])."""
    X = arena[x:x + K]
    for n in range(N):
        acc = np.int64(0) if b_off < 0 else np.int64(prog[b_off + n])
        W = wq[w_off + n * K:w_off + (n + 1) * K]
        for k in range(K):
            acc += (np.int64(X[k]) - zp_in) * np.int64(W[k])
        t = np.int64(31 - prog[m_off + 2 * n + 1])
        v = (wrap32(acc) * np.int64(prog[m_off + 2 * n]) + (np.int64(1) << (t - 1))) >> t
        arena[o + n] = _clamp(v + zp_out, lo, hi)


@njit(**NJIT_OPTS)
def _conv16(arena, x, K, wq, w_off, N, prog, b_off, m_off, lo, hi, o, blocks, acc32):
    """out[n] = clamp(int32((acc * m16 + 2^(t-1)) >> t)), t = 15 - shift[n], m16 = the multiplier rounded to 16
    bits, acc = bias[n] + sum_k x[k] * w[n, k] in int64 (LiteRT's 16x8 conv: reference_integer_ops::ConvPerChannel
    with its int64 MultiplyByQuantizedMultiplier). The weights are a dot-loop matrix at w_off (columns padded):
    in the pairwise block layout when ``blocks`` (prepare: N whole blocks, K <= 512 so the int32 pair sums of
    int16 x int8 products cannot wrap), else row-major, summed in int64."""
    cp = padded(K)
    if blocks:
        npairs = (K + 1) // 2
        stride = cp * ROWS
        b = 0
        while b + GROUP <= N // ROWS:
            _pmadd_group(wq, 2 * w_off + b * stride, stride, arena, x, npairs, acc32, b * ROWS)
            b += GROUP
        while b < N // ROWS:
            _pmadd_block(wq, 2 * w_off + b * stride, stride, arena, x, npairs, acc32, b * ROWS)
            b += 1
    mults = prog[m_off:m_off + 2 * N]
    O = arena[o:o + N]
    if not blocks:
        X = arena[x:x + K]
        for n in range(N):                 # row-major int64 sums (the exact form for any K)
            W = wq[w_off + n * cp:w_off + n * cp + K]
            acc = np.int64(0) if b_off < 0 else np.int64(prog[b_off + n])
            for k in range(K):
                acc += np.int64(X[k]) * np.int64(W[k])
            O[n] = min(max(_mbqm64(acc, mults[2 * n], mults[2 * n + 1]), lo), hi)
        return
    S = acc32[:N]
    for n in range(N):                     # the epilogue in its own loop over slices (vectorizes)
        acc = np.int64(S[n]) + (np.int64(0) if b_off < 0 else np.int64(prog[b_off + n]))
        O[n] = min(max(_mbqm64(acc, mults[2 * n], mults[2 * n + 1]), lo), hi)


@njit(**NJIT_OPTS)
def _mbqm64(acc, mult, shift):
    """LiteRT's int64 MultiplyByQuantizedMultiplier: the multiplier rounded to 16 bits (0x7FFF if that would
    overflow), one rounding shift by 15 - shift, the result returned as int32 (truncated)."""
    m = np.int64(mult)
    m16 = (m + 32768) >> 16 if m < 0x7FFF0000 else np.int64(0x7FFF)
    t = np.int64(15) - shift
    return np.int64(np.int32((acc * m16 + (np.int64(1) << (t - 1))) >> t))


@njit(**NJIT_OPTS)
def _act16(arena, n, a, o, wq, t_off):
    """int16 LOGISTIC / TANH (LiteRT's reference kernels) through the op's exhaustive table, built with the JIT blob
    (quant.ops_prepare.act16_table): entry raw + 32768, always inside the table whatever the arena holds."""
    tab = wq[t_off:t_off + 65536]
    A, O = arena[a:a + n], arena[o:o + n]
    for i in range(n):
        O[i] = tab[np.uint32(np.int32(A[i]) + 32768)]


@njit(**NJIT_OPTS)
def _add_sub(arena, n, a, b, o, zp_a, m_a, s_a, zp_b, m_b, s_b, left_shift, m_out, s_out, zp_out, lo, hi,
             subtract):
    """reference_integer_ops::Add / sub.cc: inputs << left_shift, rescaled to twice the larger input scale,
    summed (or subtracted), rescaled to the output. Branch-free MBQM over slices indexed by bare loop
    counters, so the loop vectorizes (cells_int8._mbqm_split)."""
    one = np.int64(1) << np.int64(left_shift)
    la, ra = _shift_parts(s_a)
    lb, rb = _shift_parts(s_b)
    lo_, ro = _shift_parts(s_out)
    ma, mb, mo = np.int64(m_a), np.int64(m_b), np.int64(m_out)
    sign = np.int64(-1) if subtract else np.int64(1)
    A, B, O = arena[a:a + n], arena[b:b + n], arena[o:o + n]
    for i in range(n):
        u = _mbqm_split((np.int64(A[i]) - zp_a) * one, ma, la, ra)
        v = _mbqm_split((np.int64(B[i]) - zp_b) * one, mb, lb, rb)
        O[i] = min(max(_mbqm_split(u + sign * v, mo, lo_, ro) + zp_out, lo), hi)


@njit(**NJIT_OPTS)
def _mul(arena, n, a, b, o, zp_a, zp_b, m, s, zp_out, lo, hi):
    """reference_integer_ops::Mul: clamp(mbqm((a - zp_a) * (b - zp_b), m, s) + zp_out)."""
    left, right = _shift_parts(s)
    m64 = np.int64(m)
    A, B, O = arena[a:a + n], arena[b:b + n], arena[o:o + n]
    for i in range(n):
        p = (np.int64(A[i]) - zp_a) * (np.int64(B[i]) - zp_b)
        O[i] = min(max(_mbqm_split(p, m64, left, right) + zp_out, lo), hi)


@njit(**NJIT_OPTS)
def _requantize(arena, n, a, o, zp_in, m, s, zp_out, lo, hi):
    """QUANTIZE int8 / int16 -> int8 / int16 (Requantize) and RELU int8:
    clamp(mbqm(x - zp_in, m, s) + zp_out, lo, hi)."""
    left, right = _shift_parts(s)
    m64 = np.int64(m)
    A, O = arena[a:a + n], arena[o:o + n]
    for i in range(n):
        O[i] = min(max(_mbqm_split(np.int64(A[i]) - zp_in, m64, left, right) + zp_out, lo), hi)


@njit(**NJIT_OPTS)
def _lookup(arena, n, a, o, wq, t_off):
    """A 256-entry int8 table (LiteRT's LUTPopulate for LOGISTIC / TANH; a float island as a table). The index
    is clamped where it is used: the arena is scratch memory and a table read must never leave the table."""
    tab = wq[t_off:t_off + 256]
    A, O = arena[a:a + n], arena[o:o + n]
    for i in range(n):
        O[i] = tab[min(max(np.int64(A[i]) + 128, 0), 255)]


@njit(**NJIT_OPTS)
def _run_ops_int8(prog, wq, arena, first, n_ops, acc32):
    for i in range(n_ops):
        r = first + i * OPK_REC
        op = prog[r]
        if op == OPK_FC:
            _fully_connected(arena, prog[r + 1], prog[r + 2], prog[r + 3], wq, prog[r + 4], prog[r + 5], prog,
                             prog[r + 6], prog[r + 7], prog[r + 9], prog[r + 10], prog[r + 11], prog[r + 12])
        elif op == OPK_CONV16:
            _conv16(arena, prog[r + 1], prog[r + 2], wq, prog[r + 4], prog[r + 5], prog, prog[r + 6], prog[r + 7],
                    prog[r + 10], prog[r + 11], prog[r + 12], prog[r + 13], acc32)
        elif op == OPK_ACT16:
            _act16(arena, prog[r + 1], prog[r + 2], prog[r + 4], wq, prog[r + 9])
        elif op == OPK_ADD or op == OPK_SUB:
            _add_sub(arena, prog[r + 1], prog[r + 2], prog[r + 3], prog[r + 4], prog[r + 5], prog[r + 6],
                     prog[r + 7], prog[r + 8], prog[r + 9], prog[r + 10], prog[r + 11], prog[r + 12], prog[r + 13],
                     prog[r + 14], prog[r + 15], prog[r + 16], op == OPK_SUB)
        elif op == OPK_MUL:
            _mul(arena, prog[r + 1], prog[r + 2], prog[r + 3], prog[r + 4], prog[r + 5], prog[r + 6], prog[r + 7],
                 prog[r + 8], prog[r + 9], prog[r + 10], prog[r + 11])
        elif op == OPK_REQUANT:
            _requantize(arena, prog[r + 1], prog[r + 2], prog[r + 4], prog[r + 5], prog[r + 6], prog[r + 7],
                        prog[r + 8], prog[r + 9], prog[r + 10])
        elif op == OPK_LUT:
            _lookup(arena, prog[r + 1], prog[r + 2], prog[r + 4], wq, prog[r + 5])
        elif op == OPK_COPY:
            n = prog[r + 1]
            A, O = arena[prog[r + 2]:prog[r + 2] + n], arena[prog[r + 4]:prog[r + 4] + n]
            for k in range(n):
                O[k] = A[k]


@njit(**NJIT_OPTS)
def _copy(dst, d, src, s, n):
    """dst[d:d+n] = src[s:s+n] over slices indexed by a bare counter (``dst[d + k]`` indexing made Numba emit
    a wraparound check per element that kept these copies scalar: 0.33 of a 2.6 us GRU step here)."""
    D, S = dst[d:d + n], src[s:s + n]
    for k in range(n):
        D[k] = S[k]


@njit(**NJIT_OPTS)
def graph_io_in(prog, rec, w, seq, xo, state, s_off, arena):
    """Constant tensors (from the weight blob ``w``), the layer input and the state tensors into the arena
    (shared by both dtypes; the arena is scratch shared with other layers, so constants are copied each step)."""
    consts = prog[rec + OG_CONSTS]
    for i in range(prog[rec + OG_NCONST]):
        c = consts + i * OG_CONST_REC
        _copy(arena, prog[c], w, prog[c + 2], prog[c + 1])
    _copy(arena, prog[rec + OG_X], seq, xo, prog[rec + OG_NX])
    base = s_off + prog[rec + OG_STATE]
    st = prog[rec + OG_STATES]
    for i in range(prog[rec + OG_NSTATE]):
        e = st + i * OG_STATE_REC
        _copy(arena, prog[e], state, base + prog[e + 3], prog[e + 2])


@njit(**NJIT_OPTS)
def graph_io_out(prog, rec, w, seq, oo, state, s_off, arena):
    """The output tensor into seq[oo:] and the state outputs back into the state block: a copy, or (int8, when
    the state output's quantization differs from the state input's) a 256-entry table in ``w`` (shared by both
    dtypes; float graphs have no tables)."""
    _copy(seq, oo, arena, prog[rec + OG_Y], prog[rec + OG_NY])
    base = s_off + prog[rec + OG_STATE]
    st = prog[rec + OG_STATES]
    for i in range(prog[rec + OG_NSTATE]):
        e = st + i * OG_STATE_REC
        a, so, n, lut = prog[e + 1], base + prog[e + 3], prog[e + 2], prog[e + 4]
        if lut < 0:
            _copy(state, so, arena, a, n)
        else:
            A, S = arena[a:a + n], state[so:so + n]
            for k in range(n):
                S[k] = w[lut + min(max(np.int64(A[k]) + 128, 0), 255)]


@njit(**NJIT_OPTS)
def graph_step_int8(prog, rec, wq, seq, xo, state, s_off, oo, arena, acc32):
    """One step of an int8 op-graph layer: output to seq[oo:], new state written back (acc32: int32 scratch of
    the program's accumulators, for the pairwise conv sums)."""
    graph_io_in(prog, rec, wq, seq, xo, state, s_off, arena)
    _run_ops_int8(prog, wq, arena, prog[rec + OG_OPS], prog[rec + OG_NOPS], acc32)
    graph_io_out(prog, rec, wq, seq, oo, state, s_off, arena)

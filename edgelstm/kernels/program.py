"""One jitted call runs a whole layer stack over (B, T) frames: a tiny interpreter over ``prog`` records.

Why one call: Numba dispatch costs ~340 ns plus ~65 ns per array argument here, so a streaming step passes
exactly five arrays (x, y, prog, weights, work) whatever the depth of the model.

``prog`` global header (int32):
  [0] layers  [1] input size F  [2] output size O  [3] max feature width W
  [4] input zero point  [5] output zero point  [6] input scale (float32 bits)  [7] output scale (bits)
  [16 + k] prog offset of layer k's record (see cells_int8 L_* indices)
``work`` (uint8 bytes) starts with an int32 header:
  [0] lengths offset (bytes)  [1] state offset  [2] state elements per sequence  [3] seq-buffer offset
  [4] elements per seq buffer (T * W)  [5] gates offset  [6] acc offset  [7] aux offset
  [8] scratch elements (max gate rows)
Element type of state/seq/gates/aux is int16 for the int8 program, float32 for the float program.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..config import NJIT_OPTS
from .cells_f32 import FL_STATE, dense_step_f32, gru_step_f32, lstm_step_f32, rnn_step_f32
from .layout import KIND_OPS
from .ops_f32 import graph_step_f32
from .ops_int8 import graph_step_int8
from .cells_int8 import (FLAG_REVERSE, GR_STATE, KIND_DENSE, KIND_GRU, KIND_LSTM, L_DIRLEN, L_FLAGS, L_HDR,
                         L_HID, L_IN, L_KIND, L_NDIR, L_OUT, LS_STATE, PAD, RN_STATE, dense_step_int8, gru_step_int8,
                         lstm_step_int8, rnn_step_int8)

from .layout import (  # noqa: F401
    G_LAYERS, G_IN, G_OUT, G_WIDTH, G_IN_ZP, G_OUT_ZP, G_IN_SCALE, G_OUT_SCALE,
    G_LAYER0, W_LENGTHS, W_STATE, W_STATE_N, W_SEQ, W_SEQ_N, W_GATES, W_ACC,
    W_AUX, W_SCRATCH_N, WORK_HEADER_BYTES,
)


@njit(**NJIT_OPTS)
def _quantize_input(v, scale, zp):
    """TFLite AffineQuantize: round-half-away(v / scale) + zp, saturated to int8.  Stays in floating point
    until after the clamp: Numba's math.floor returns int64, which wrapped to -2^63 for |v / scale| >= 2^63
    and flipped the sign of huge inputs."""
    q = v / scale
    r = np.floor(abs(q) + 0.5)
    if q < 0:
        r = -r
    r += zp
    if r > 127.0:
        r = 127.0
    if r < -128.0:
        r = -128.0
    return np.int16(r)


@njit(**NJIT_OPTS)
def _has_non_finite(x, lengths, F):
    """Checked before any state changes, so a rejected frame loses nothing (returns status, no raise)."""
    for b in range(x.shape[0]):
        for t in range(lengths[b]):
            for f in range(F):
                if not np.isfinite(x[b, t, f]):
                    return True
    return False


@njit(**NJIT_OPTS)
def _cell_int8(kind, prog, rec, flags, wq, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, acc, aux):
    """One step of one layer direction, int8 (dispatch on the layer kind)."""
    if kind == KIND_LSTM:
        lstm_step_int8(prog, rec, flags, wq, seq, xo, n_in, state, s_base + prog[rec + LS_STATE], hid, n_out,
                       seq, oo, gates, acc, aux)
    elif kind == KIND_GRU:
        gru_step_int8(prog, rec, flags, wq, seq, xo, n_in, state, s_base + prog[rec + GR_STATE], hid, seq, oo,
                      gates, acc, aux)
    elif kind == KIND_DENSE:
        dense_step_int8(prog, rec, wq, seq, xo, n_in, n_out, seq, oo, acc)
    elif kind == KIND_OPS:   # a graph of TFLite int8 ops; its tensors live in the gates scratch
        graph_step_int8(prog, rec, wq, seq, xo, state, s_base, oo, gates)
    else:
        rnn_step_int8(prog, rec, flags, wq, seq, xo, n_in, state, s_base + prog[rec + RN_STATE], hid, seq, oo,
                      gates, acc)


@njit(**NJIT_OPTS)
def _cell_f32(kind, prog, rec, flags, wf, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, tmp, aux):
    """One step of one layer direction, float32 (same signature as _cell_int8; aux unused)."""
    if kind == KIND_DENSE:
        dense_step_f32(prog, rec, wf, seq, xo, n_in, n_out, seq, oo)
        return
    if kind == KIND_OPS:
        graph_step_f32(prog, rec, wf, seq, xo, state, s_base, oo, gates)
        return
    so = s_base + prog[rec + FL_STATE]
    if kind == KIND_LSTM:
        lstm_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, n_out, seq, oo, gates, tmp)
    elif kind == KIND_GRU:
        gru_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, seq, oo, gates, tmp)
    else:
        rnn_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, seq, oo, gates, tmp)


def _cell(kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, acc, aux):
    """Resolved at compile time by the weight blob's dtype: int16 blob -> int8 cells, float32 -> float."""
    raise NotImplementedError("only callable from jitted code")


@overload(_cell)
def _cell_by_dtype(kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, acc,
                   aux):
    # a compile-time choice keeps one driver for both paths and, unlike passing the cell function as an
    # argument, keeps the kernels cacheable on disk
    if weights.dtype == types.int16:
        return lambda kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, \
            acc, aux: _cell_int8(kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo,
                                 gates, acc, aux)
    return lambda kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo, gates, \
        acc, aux: _cell_f32(kind, prog, rec, flags, weights, seq, xo, n_in, state, s_base, hid, n_out, oo,
                            gates, acc, aux)


@njit(**NJIT_OPTS)
def _run_sequence(prog, weights, seq, n_seq, n, state, s_base, gates, acc, aux):
    """Run the layer stack over one sequence of n frames staged at seq[0:]; layers ping-pong between
    seq[0:] and seq[n_seq:]. Returns the offset of the last layer's output frames."""
    src = 0
    dst = n_seq
    width = prog[G_IN]
    for k in range(prog[G_LAYERS]):
        lo = prog[G_LAYER0 + k]
        kind = prog[lo + L_KIND]
        n_in = prog[lo + L_IN]
        hid = prog[lo + L_HID]
        n_out = prog[lo + L_OUT]
        n_dir = prog[lo + L_NDIR]
        flags = prog[lo + L_FLAGS]
        out_w = n_out * n_dir
        for d in range(n_dir):
            rec = lo + L_HDR + d * prog[lo + L_DIRLEN]
            backward = d == 1 or (flags & FLAG_REVERSE) != 0
            for i in range(n):
                t = n - 1 - i if backward else i   # backward: the sequence's own valid steps, reversed
                _cell(kind, prog, rec, flags, weights, seq, src + t * width, n_in, state, s_base, hid, n_out,
                      dst + t * out_w + d * n_out, gates, acc, aux)
        src, dst = dst, src
        width = out_w
    return src


@njit(**NJIT_OPTS)
def forward_int8(x, y, prog, wq, work):
    """x (B, T, F) float32 -> y (B, T, O) float32 through the int8 program; state updated in place.
    Returns 0, or 1 without touching anything if x holds NaN/inf (the wrapper raises InputError)."""
    hdr = work[:WORK_HEADER_BYTES].view(np.int32)
    B, T, F = x.shape
    O = prog[G_OUT]
    lengths = work[hdr[W_LENGTHS]:hdr[W_LENGTHS] + 4 * B].view(np.int32)
    if _has_non_finite(x, lengths, F):
        return 1
    n_state = hdr[W_STATE_N]
    n_seq = hdr[W_SEQ_N]
    n_scr = hdr[W_SCRATCH_N]
    state = work[hdr[W_STATE]:hdr[W_STATE] + 2 * (n_state * B + PAD)].view(np.int16)
    seq = work[hdr[W_SEQ]:hdr[W_SEQ] + 4 * n_seq].view(np.int16)
    gates = work[hdr[W_GATES]:hdr[W_GATES] + 2 * n_scr].view(np.int16)
    acc = work[hdr[W_ACC]:hdr[W_ACC] + 4 * n_scr].view(np.int32)
    aux = work[hdr[W_AUX]:hdr[W_AUX] + 2 * n_scr].view(np.int16)
    in_zp = prog[G_IN_ZP]
    out_zp = prog[G_OUT_ZP]
    in_scale = prog[G_IN_SCALE:G_IN_SCALE + 1].view(np.float32)[0]
    out_scale = prog[G_OUT_SCALE:G_OUT_SCALE + 1].view(np.float32)[0]
    for b in range(B):
        n = lengths[b]
        staged = seq[:n * F]
        xb = x[b]
        for t in range(n):
            for f in range(F):
                staged[t * F + f] = _quantize_input(xb[t, f], in_scale, in_zp)
        src = _run_sequence(prog, wq, seq, n_seq, n, state, b * n_state, gates, acc, aux)
        out = seq[src:src + n * O]
        yb = y[b]
        for t in range(n):
            for o in range(O):
                yb[t, o] = np.float32(np.int32(out[t * O + o]) - out_zp) * out_scale
        yb[n:] = 0.0
    return 0


@njit(**NJIT_OPTS)
def forward_f32(x, y, prog, wf, work):
    """Float32 twin of forward_int8 (same prog/work conventions, float32 elements, no quantization).
    Returns 0, 1 for NaN/inf in x (nothing touched), or 2 when the model itself produced NaN/inf."""
    hdr = work[:WORK_HEADER_BYTES].view(np.int32)
    B, T, F = x.shape
    O = prog[G_OUT]
    lengths = work[hdr[W_LENGTHS]:hdr[W_LENGTHS] + 4 * B].view(np.int32)
    if _has_non_finite(x, lengths, F):
        return 1
    n_state = hdr[W_STATE_N]
    n_seq = hdr[W_SEQ_N]
    n_scr = hdr[W_SCRATCH_N]
    state = work[hdr[W_STATE]:hdr[W_STATE] + 4 * (n_state * B + PAD)].view(np.float32)
    seq = work[hdr[W_SEQ]:hdr[W_SEQ] + 8 * n_seq].view(np.float32)
    gates = work[hdr[W_GATES]:hdr[W_GATES] + 4 * n_scr].view(np.float32)
    tmp = work[hdr[W_ACC]:hdr[W_ACC] + 4 * n_scr].view(np.float32)
    status = 0
    for b in range(B):
        n = lengths[b]
        seq[:n * F] = x[b, :n].ravel()
        src = _run_sequence(prog, wf, seq, n_seq, n, state, b * n_state, gates, tmp, tmp)
        out = seq[src:src + n * O]
        yb = y[b]
        for t in range(n):
            for o in range(O):
                v = out[t * O + o]
                if not np.isfinite(v):  # float32 overflow inside the model: never return it silently
                    status = 2
                yb[t, o] = v
        yb[n:] = 0.0
    return status


@njit(**NJIT_OPTS)
def step_int8(x, y, prog, wq, work):
    """Streaming entry: one frame x (F,) -> y (O,), no copies (the caller skips a 3-D staging buffer)."""
    hdr = work[:WORK_HEADER_BYTES].view(np.int32)
    work[hdr[W_LENGTHS]:hdr[W_LENGTHS] + 4].view(np.int32)[0] = 1
    return forward_int8(x.reshape((1, 1, x.shape[0])), y.reshape((1, 1, y.shape[0])), prog, wq, work)


@njit(**NJIT_OPTS)
def step_f32(x, y, prog, wf, work):
    """Float twin of step_int8."""
    hdr = work[:WORK_HEADER_BYTES].view(np.int32)
    work[hdr[W_LENGTHS]:hdr[W_LENGTHS] + 4].view(np.int32)[0] = 1
    return forward_f32(x.reshape((1, 1, x.shape[0])), y.reshape((1, 1, y.shape[0])), prog, wf, work)

"""One jitted call runs a whole layer stack over (B, T) frames: a tiny interpreter over ``prog`` records.

Why one call: Numba dispatch costs ~200 ns plus ~40-75 ns per array argument here, so a streaming step passes
exactly three arrays (x, the model blob = prog + weights, the work buffer, which also holds the step's
output) whatever the depth of the model, and typed views of the buffers are made with ``rawview`` (~1 ns,
where ``ndarray.view`` cost ~20 ns each).

``prog`` global header (int32):
  [0] layers  [1] input size F  [2] output size O  [3] max feature width W
  [4] input zero point  [5] output zero point  [6] input scale (float32 bits)  [7] output scale (bits)
  [16 + k] prog offset of layer k's record (see cells_int8 L_* indices)
``model`` (uint8, ``Prepared.kernel_blob``): a copy of prog with [8] = byte offset of the kernel weights,
which follow it.
``work`` (uint8 bytes) starts with an int32 header:
  [0] lengths offset (bytes)  [1] state offset  [2] state elements per sequence  [3] seq-buffer offset
  [4] elements per seq buffer (B * chunk * W + PAD)  [5] gates offset  [6] acc offset  [7] aux offset
  [8] scratch elements per sequence (gates, acc, aux each hold B of them)  [9] offset table (ix) offset
  [10] chunk frames  [11] sequences B  [12] step output offset (B * O float32)
Element type of state/seq/gates/aux is int16 for the int8 program, float32 for the float program.
"""

import functools
from types import SimpleNamespace as types_ns

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..config import NJIT_OPTS
from .cells_f32 import FL_STATE, dense_step_f32, gru_step_f32, lstm_step_f32, rnn_step_f32
from ..program.layout import ACT_SOFTMAX, DN_ACT, FLAG_PEEP, FLAG_PROJ, KIND_CONV, KIND_MAP, KIND_OPS, KIND_RNN
from .frontend import conv_step_f32, conv_step_int8, map_step_f32, map_step_int8
from .ops_f32 import graph_step_f32
from .ops_int8 import graph_step_int8
from .cells_int8 import (FLAG_REVERSE, IX_OUT, IX_SCR, IX_SRC, IX_STATE, IXW, KIND_DENSE, KIND_GRU, KIND_LSTM,
                         L_DIRLEN, L_FLAGS, L_HDR, L_HID, L_IN, L_KIND, L_NDIR, L_OUT, PAD, dense_step_int8,
                         lstm_step_int8)

from .rawview import view_f32, view_i16, view_i32
from ..program.layout import (  # noqa: F401
    G_LAYERS, G_IN, G_OUT, G_WIDTH, G_IN_ZP, G_OUT_ZP, G_IN_SCALE, G_OUT_SCALE,
    G_LAYER0, W_LENGTHS, W_STATE, W_STATE_N, W_SEQ, W_SEQ_N, W_GATES, W_ACC,
    W_AUX, W_SCRATCH_N, W_IX, W_CHUNK, W_BATCH, W_Y, WORK_HEADER_BYTES, G_KW_OFF,
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


# Which layer kinds a program uses is known before its first call (``kind_marker``), and the driver is compiled
# for that set only: a kind the model lacks is never typed, lowered or optimized (an LSTM tagger does not
# compile the conv, map and op-graph kernels).  The set reaches the cell dispatch as one argument per kind,
# ``True`` or ``None``, constants of the entry closure (``_entries``): Numba prunes ``if k is not None`` branches
# on such constants before typing, and keys its disk cache on a closure's constants.  Everything between an
# entry and the cell steps is inline="always": each separately compiled level re-optimizes and re-emits
# the machine code of everything below it (~7 s of CPU per level here, five levels, for the bundled tagger).
# After the kinds, three features of the int8 cells, pruned the same way when no layer has them: an LSTM with
# peepholes, an LSTM with a projection, a softmax Dense (the tagger needs none: ~2 s of a first compile here).
FEAT_PEEP, FEAT_PROJ, FEAT_SOFTMAX = KIND_MAP + 1, KIND_MAP + 2, KIND_MAP + 3
ALL_KINDS = (True,) * (FEAT_SOFTMAX + 1)


def kind_marker(prog, *, quantized: bool = False) -> tuple:
    """The kinds and int8 cell features a program's records use: True at index KIND_x / FEAT_x for a used one,
    None for an absent one.  The features are read from int8 records only (``quantized``); a float program's
    records have another layout, and its cells take no features (all True)."""
    used = set() if quantized else {FEAT_PEEP, FEAT_PROJ, FEAT_SOFTMAX}
    for k in range(int(prog[G_LAYERS])):
        lo = int(prog[G_LAYER0 + k])
        kind, flags = int(prog[lo + L_KIND]), int(prog[lo + L_FLAGS])
        used.add(kind)
        if not quantized:
            continue
        if kind == KIND_LSTM:
            used.update(f for f, bit in ((FEAT_PEEP, FLAG_PEEP), (FEAT_PROJ, FLAG_PROJ)) if flags & bit)
        elif kind == KIND_DENSE:
            recs = (lo + L_HDR + d * int(prog[lo + L_DIRLEN]) for d in range(int(prog[lo + L_NDIR])))
            if any(int(prog[rec + DN_ACT]) == ACT_SOFTMAX for rec in recs):
                used.add(FEAT_SOFTMAX)
    return tuple(True if k in used else None for k in range(len(ALL_KINDS)))


@njit(inline="always")
def _cell_int8(kind, prog, rec, flags, wq, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux, scr,
               lstm, dense, ops, conv, map_, feats):
    """One step of one layer direction for nb sequences, int8 (dispatch on the layer kind; a kind whose flag
    is None is pruned at compile time)."""
    if kind == KIND_LSTM:
        if lstm is not None:
            lstm_step_int8(prog, rec, flags, wq, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux, scr,
                           feats[0], feats[1])
    elif kind == KIND_DENSE:
        if dense is not None:
            dense_step_int8(prog, rec, wq, seq, n_in, n_out, ix, nb, acc, scr, feats[2])
    elif kind == KIND_CONV:
        if conv is not None:
            conv_step_int8(prog, rec, wq, seq, ix, nb, acc, aux, scr)
    elif kind == KIND_MAP:
        if map_ is not None:
            map_step_int8(prog, rec, wq, seq, ix, nb, state)
    elif ops is not None:   # KIND_OPS, which int8 GRU / RNN layers are lowered to: one sequence after the other
        for n in range(nb):
            graph_step_int8(prog, rec, wq, seq, ix[n * IXW + IX_SRC], state, ix[n * IXW + IX_STATE],
                            ix[n * IXW + IX_OUT], gates, acc)


@njit(inline="always")
def _cell_f32(kind, prog, rec, flags, wf, seq, n_in, state, hid, n_out, ix, nb, gates, tmp, aux, scr,
              lstm, gru, rnn, dense, ops, conv, map_):
    """Float32 twin of _cell_int8 (aux: a conv's window): one sequence after the other, each with the same
    scratch, so every sequence's arithmetic is exactly that of a lone stream."""
    if kind == KIND_CONV:
        if conv is not None:
            conv_step_f32(prog, rec, wf, seq, ix, nb, gates, aux, scr)
        return
    if kind == KIND_MAP:
        if map_ is not None:
            map_step_f32(prog, rec, seq, ix, nb, state)
        return
    for n in range(nb):
        xo = ix[n * IXW + IX_SRC]
        oo = ix[n * IXW + IX_OUT]
        so = ix[n * IXW + IX_STATE] + prog[rec + FL_STATE]
        if kind == KIND_DENSE:
            if dense is not None:
                dense_step_f32(prog, rec, wf, seq, xo, n_in, n_out, seq, oo)
        elif kind == KIND_OPS:
            if ops is not None:
                graph_step_f32(prog, rec, wf, seq, xo, state, ix[n * IXW + IX_STATE], oo, gates)
        elif kind == KIND_LSTM:
            if lstm is not None:
                lstm_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, n_out, seq, oo, gates, tmp)
        elif kind == KIND_GRU:
            if gru is not None:
                gru_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, seq, oo, gates, tmp)
        elif rnn is not None:
            rnn_step_f32(prog, rec, flags, wf, seq, xo, n_in, state, so, hid, seq, oo, gates, tmp)


@njit(inline="always")
def _cell(kind, prog, rec, flags, weights, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux, scr,
          int8, lstm, gru, rnn, dense, ops, conv, map_, feats):
    """int8 cells for the int8 entries (int8 True), float32 cells for the float ones (int8 None)."""
    if int8 is not None:
        _cell_int8(kind, prog, rec, flags, weights, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux, scr,
                   lstm, dense, ops, conv, map_, feats)
    else:
        _cell_f32(kind, prog, rec, flags, weights, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux, scr,
                  lstm, gru, rnn, dense, ops, conv, map_)


@njit(inline="always")
def _run_chunk(prog, weights, seq, n_seq, t0, tc, chunk, lengths, B, state, n_state, gates, acc, aux, scr, ix,
               int8, lstm, gru, rnn, dense, ops, conv, map_, feats):
    """Run the layer stack over frames t0 .. t0+tc-1 of B sequences, staged at seq[0:] (frame i of sequence b
    at (b * chunk + i) * width); layers ping-pong between seq[0:] and seq[n_seq:].  Layer by layer, and
    inside a layer step by step, every sequence still running at that step goes through ONE cell call (the
    matmuls read the weights once for all of them).  A backward direction walks each sequence's own valid
    steps in reverse; it needs the whole sequence in one chunk (t0 = 0, tc = T: the runtime sizes it so).
    Returns the offset of the last layer's output frames."""
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
            for i in range(tc):
                nb = np.int64(0)      # not a literal 0: the cell steps would compile once more for Literal[int](0)
                for b in range(B):
                    left = lengths[b] - t0          # this sequence's frames from t0 on
                    if i < left:
                        f = b * chunk + (left - 1 - i if backward else i)
                        ix[nb * IXW + IX_SRC] = src + f * width
                        ix[nb * IXW + IX_STATE] = b * n_state
                        ix[nb * IXW + IX_OUT] = dst + f * out_w + d * n_out
                        ix[nb * IXW + IX_SCR] = nb * scr
                        nb += 1
                if nb > 0:
                    _cell(kind, prog, rec, flags, weights, seq, n_in, state, hid, n_out, ix, nb, gates, acc, aux,
                          scr, int8, lstm, gru, rnn, dense, ops, conv, map_, feats)
        src, dst = dst, src
        width = out_w
    return src


@njit(**NJIT_OPTS)
def _unpack_model(model):
    """prog (int32) and the weight blob's bytes offset from the JIT model blob (see layout.G_KW_OFF)."""
    kw = view_i32(model, 0, G_LAYER0)[G_KW_OFF]
    return view_i32(model, 0, kw // 4), kw


def _views(work, hdr, B, weights):
    """state, sequence buffers, gates, accumulators, aux of a work buffer for B sequences: int16 elements
    (int32 accumulators) for the int8 program, float32 for the float program."""
    raise NotImplementedError("only callable from jitted code")


@overload(_views)
def _views_by_dtype(work, hdr, B, weights):
    elem, wide = (view_i16, view_i32) if weights.dtype == types.int16 else (view_f32, view_f32)

    def views(work, hdr, B, weights):
        scr = hdr[W_SCRATCH_N] * B
        return (elem(work, hdr[W_STATE], hdr[W_STATE_N] * B + PAD), elem(work, hdr[W_SEQ], 2 * hdr[W_SEQ_N]),
                elem(work, hdr[W_GATES], scr), wide(work, hdr[W_ACC], scr), elem(work, hdr[W_AUX], scr))
    return views


def _stage(staged, xb, t0, n, F, prog, weights):
    """Frames t0 .. t0+n-1 of one sequence into the first layer's input buffer."""
    raise NotImplementedError("only callable from jitted code")


@overload(_stage)
def _stage_by_dtype(staged, xb, t0, n, F, prog, weights):
    if weights.dtype == types.int16:
        def quantize(staged, xb, t0, n, F, prog, weights):
            in_zp = prog[G_IN_ZP]
            in_scale = view_f32(prog, 4 * G_IN_SCALE, 1)[0]
            for i in range(n):
                for f in range(F):
                    staged[i * F + f] = _quantize_input(xb[t0 + i, f], in_scale, in_zp)
        return quantize

    def copy(staged, xb, t0, n, F, prog, weights):
        for i in range(n):
            for f in range(F):
                staged[i * F + f] = xb[t0 + i, f]
    return copy


def _emit(yb, out, t0, n, tc, O, prog, weights):
    """The last layer's frames t0 .. t0+n-1 into y (zeros up to t0+tc); returns a status (see forward)."""
    raise NotImplementedError("only callable from jitted code")


@overload(_emit)
def _emit_by_dtype(yb, out, t0, n, tc, O, prog, weights):
    if weights.dtype == types.int16:
        def dequantize(yb, out, t0, n, tc, O, prog, weights):
            out_zp = prog[G_OUT_ZP]
            out_scale = view_f32(prog, 4 * G_OUT_SCALE, 1)[0]
            for i in range(n):
                for o in range(O):
                    yb[t0 + i, o] = np.float32(np.int32(out[i * O + o]) - out_zp) * out_scale
            yb[t0 + n:t0 + tc] = 0.0
            return 0
        return dequantize

    def copy(yb, out, t0, n, tc, O, prog, weights):
        status = 0
        for i in range(n):
            for o in range(O):
                v = out[i * O + o]
                if not np.isfinite(v):  # float32 overflow inside the model: never return it silently
                    status = 2
                yb[t0 + i, o] = v
        yb[t0 + n:t0 + tc] = 0.0
        return status
    return copy


@njit(inline="always")
def _forward(x, y, prog, weights, work, int8, lstm, gru, rnn, dense, ops, conv, map_, feats):
    """x (B, T, F) float32 -> y (B, T, O) float32 through the program (int8 or float32 by the weights' dtype);
    state updated in place.  Works through T in chunks of ``work``'s chunk frames (bounded working memory
    for any T).  Returns 0; 1 without touching anything if x holds NaN/inf (the wrapper raises InputError);
    2 when a float model itself produced NaN/inf."""
    hdr = view_i32(work, 0, WORK_HEADER_BYTES // 4)
    B, T, F = x.shape
    O = prog[G_OUT]
    lengths = view_i32(work, hdr[W_LENGTHS], B)
    if _has_non_finite(x, lengths, F):
        return 1
    n_state = hdr[W_STATE_N]
    n_seq = hdr[W_SEQ_N]
    scr = hdr[W_SCRATCH_N]
    chunk = hdr[W_CHUNK]
    state, seq, gates, acc, aux = _views(work, hdr, B, weights)
    ix = view_i32(work, hdr[W_IX], IXW * B)
    status = 0
    for t0 in range(0, T, chunk):
        tc = min(chunk, T - t0)
        for b in range(B):
            n = min(max(lengths[b] - t0, 0), tc)
            _stage(seq[b * chunk * F:(b * chunk + n) * F], x[b], t0, n, F, prog, weights)
        src = _run_chunk(prog, weights, seq, n_seq, t0, tc, chunk, lengths, B, state, n_state, gates, acc, aux,
                         scr, ix, int8, lstm, gru, rnn, dense, ops, conv, map_, feats)
        for b in range(B):
            n = min(max(lengths[b] - t0, 0), tc)
            status |= _emit(y[b], seq[src + b * chunk * O:src + (b * chunk + n) * O], t0, n, tc, O, prog,
                            weights)
    return status


@njit(inline="always")
def _step(x, prog, weights, work, int8, lstm, gru, rnn, dense, ops, conv, map_, feats):
    """One step of each of the B sequences the work buffer holds: x (F,) or (B, F); the outputs (B, O) float32
    land in work's W_Y region."""
    hdr = view_i32(work, 0, WORK_HEADER_BYTES // 4)
    F = x.shape[-1]
    B = x.size // F
    O = np.int64(prog[G_OUT])
    view_i32(work, hdr[W_LENGTHS], B)[:] = 1
    y = view_f32(work, hdr[W_Y], B * O)
    return _forward(x.reshape((B, 1, F)), y.reshape((B, 1, O)), prog, weights, work, int8, lstm, gru, rnn, dense,
                    ops, conv, map_, feats)


def _entries(kinds):
    """The four entry points compiled for the kind set ``kinds`` (see kind_marker): its flags are constants of
    these closures, which Numba's disk cache keys on."""
    lstm, gru, rnn, dense, ops, conv, map_ = kinds[:KIND_MAP + 1]
    feats = kinds[KIND_MAP + 1:]

    @njit(**NJIT_OPTS)
    def forward_int8(x, y, model, work):
        """x (B, T, F) float32 -> y (B, T, O) float32 through the int8 program (model: the JIT model blob)."""
        prog, kw = _unpack_model(model)
        return _forward(x, y, prog, view_i16(model, kw, (model.size - kw) // 2), work, True,
                  lstm, gru, rnn, dense, ops, conv, map_, feats)

    @njit(**NJIT_OPTS)
    def forward_f32(x, y, model, work):
        """Float32 twin of forward_int8."""
        prog, kw = _unpack_model(model)
        return _forward(x, y, prog, view_f32(model, kw, (model.size - kw) // 4), work, None,
                  lstm, gru, rnn, dense, ops, conv, map_, feats)

    @njit(**NJIT_OPTS)
    def step_int8(x, model, work):
        """Streaming entry, three arrays per call: x (F,) or (B, F), one step of each of the B sequences the
        work buffer holds; the outputs (B, O) float32 land in work's W_Y region (the Stream's output buffer
        is a numpy view of it), so nothing is copied or allocated."""
        prog, kw = _unpack_model(model)
        return _step(x, prog, view_i16(model, kw, (model.size - kw) // 2), work, True,
               lstm, gru, rnn, dense, ops, conv, map_, feats)

    @njit(**NJIT_OPTS)
    def step_f32(x, model, work):
        """Float twin of step_int8."""
        prog, kw = _unpack_model(model)
        return _step(x, prog, view_f32(model, kw, (model.size - kw) // 4), work, None,
               lstm, gru, rnn, dense, ops, conv, map_, feats)

    return types_ns(forward_int8=forward_int8, forward_f32=forward_f32, step_int8=step_int8, step_f32=step_f32)


@functools.lru_cache(maxsize=None)
def entries(kinds: tuple = ALL_KINDS):
    """The entry points (forward_int8, forward_f32, step_int8, step_f32) for a kind set: one set of
    dispatchers per set, so a process that runs two models of one kind set compiles once."""
    return _entries(kinds)


def kernels_for(prog, *, quantized: bool = False):
    """The entry points specialized to the layer kinds (and, int8, the cell features) of ``prog`` (the runtime's
    choice)."""
    return entries(kind_marker(prog, quantized=quantized))


# every kind: the generic entry points (tests and tools that call the kernels directly)
forward_int8, forward_f32, step_int8, step_f32 = (lambda e: (e.forward_int8, e.forward_f32, e.step_int8,
                                                             e.step_f32))(entries())

"""Issue 10's fast paths, bit for bit: the pairwise block matvec, many streams per call (``model.streams``),
batched and chunked ``run`` / ``step_many``, bounded working memory, no allocation per step."""
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
import naive
from conftest import bytes_allocated_by
from edgelstm.program import work as program_work
from edgelstm.kernels import cells_int8
from edgelstm.program import layout

DATA = Path(__file__).resolve().parents[1] / "edgelstm" / "data"
I = 24

# hidden sizes on both sides of the layout rule (pairwise blocks iff the sub-matrix rows are a multiple of 16)
STACKS = [
    [{"kind": "lstm", "hidden_size": 32}, {"kind": "dense", "output_size": 16, "activation": "sigmoid"}],
    [{"kind": "lstm", "hidden_size": 20, "peephole": True, "proj_size": 16},
     {"kind": "dense", "output_size": 5, "activation": "softmax"}],
    [{"kind": "gru", "hidden_size": 48, "reset_after": True}, {"kind": "gru", "hidden_size": 16,
                                                               "reset_after": False}],
    [{"kind": "gru", "hidden_size": 24, "reset_after": False}, {"kind": "dense", "output_size": 3}],
    [{"kind": "rnn", "hidden_size": 64, "nonlinearity": "tanh"}, {"kind": "rnn", "hidden_size": 16,
                                                                   "nonlinearity": "relu"}],
]


def _models(k):
    spec = el.random_model(STACKS[k], input_size=I, seed=100 + k, scale=0.4)
    rng = np.random.default_rng(k)
    calib = np.cumsum(rng.standard_normal((2, 60, I)) * 0.4, axis=1).astype(np.float32)
    f32 = el.Model(spec)
    return f32, el.quantize(f32, calibration=calib, progress=False)


@pytest.fixture(scope="module", params=range(len(STACKS)))
def pair(request):
    return _models(request.param)


def _frames(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.standard_normal(shape) * 0.5, axis=-2) * 1.5).astype(np.float32)


# ------------------------------------------------------------------ the pairwise block matvec


def _block_dot(W, V, unit, row0=0, rows=None):
    """_dot_rows over prepare()'s layout: W (R, cols) ints, V (nb, cols) ints -> (nb, rows) int32 of rows
    row0 .. row0+rows of W (and what it wrote past them)."""
    R, cols = W.shape
    rows = R - row0 if rows is None else rows
    cp = int(cells_int8.padded(cols))
    a = np.zeros((R, cp), np.int16)
    a[:, :cols] = W
    wq = layout.pack_blocks(a) if layout.uses_blocks(unit) else a.ravel()
    nb = V.shape[0]
    v = np.zeros(nb * (cp + 8) + layout.BLOCK_ROWS * 8, np.int16)
    ix = np.zeros(nb * layout.IXW, np.int32)
    for n in range(nb):                      # vectors at scattered offsets, as the driver lays them out
        ix[n * layout.IXW + layout.IX_SRC] = n * (cp + 8) + 3
        v[n * (cp + 8) + 3:n * (cp + 8) + 3 + cols] = V[n]
    scr = rows + 5
    acc = np.full(nb * scr, 7, np.int32)
    cells_int8._dot_rows(wq, 0, row0, rows, cols, unit, v, ix, layout.IX_SRC, 0, nb, acc, scr)
    return acc.reshape(nb, scr)[:, :rows], acc.reshape(nb, scr)[:, rows:]


@pytest.mark.parametrize("rows,cols,unit,nb", [(16, 1, 16, 1), (64, 40, 64, 1), (256, 64, 256, 3),
                                               (256, 104, 256, 5), (48, 33, 16, 2), (80, 17, 16, 16),
                                               (24, 7, 8, 2), (1024, 256, 1024, 2)])
def test_dot_rows_equals_naive(rows, cols, unit, nb):
    rng = np.random.default_rng(rows + cols)
    W = rng.integers(-128, 128, (rows, cols))
    V = rng.integers(-128, 128, (nb, cols))
    got, tail = _block_dot(W, V, unit)
    np.testing.assert_array_equal(got, naive.vwrap32(naive._i64(V) @ naive._i64(W).T))
    assert (tail == 7).all()                 # nothing written past the rows asked for


@pytest.mark.parametrize("H,cols", [(16, 40), (32, 7), (8, 40), (24, 64), (48, 130)])
def test_dot_rows_on_gru_submatrices(H, cols):
    # prepare() stores a (3H, cols) GRU matrix in one layout by uses_blocks(H); the kernel reads the 2H r,z
    # rows from row 0 and the H n rows from row 2H with the same rule
    rng = np.random.default_rng(H)
    W = rng.integers(-128, 128, (3 * H, cols))
    V = rng.integers(-128, 128, (3, cols))
    for row0, rows in ((0, 3 * H), (0, 2 * H), (2 * H, H)):
        got, tail = _block_dot(W, V, H, row0, rows)
        np.testing.assert_array_equal(got, naive.vwrap32(naive._i64(V) @ naive._i64(W[row0:row0 + rows]).T))
        assert (tail == 7).all()


def test_dot_rows_wraps_extremes_like_int32():
    # int8 weights (what the blob holds) times int16 vectors: 512 products of -128 * -32768 sum to 2**31,
    # so the running sum wraps exactly as wrap32 says
    W = np.full((64, 512), -128, dtype=np.int64)
    W[1::2] = 127
    V = np.full((2, 512), -32768, dtype=np.int64)
    V[1, ::3] = 32767
    got, _ = _block_dot(W, V, 64)
    np.testing.assert_array_equal(got, naive.vwrap32(V @ W.T))


@pytest.mark.parametrize("k,want_packed", [(0, 2), (1, 1), (2, 2), (3, 0), (4, 2)])
def test_c_runtime_blob_stays_row_major(k, want_packed):
    _, q = _models(k)
    prep = q._prep
    # same offsets; beyond the C runtime's blob the JIT copy holds only the ACT16 ops' 65,536-entry tables
    tables = set()
    for i in range(len(q.spec.layers)):
        lo = int(prep.prog[layout.G_LAYER0 + i])
        if prep.prog[lo + layout.L_KIND] == layout.KIND_OPS:
            rec = lo + layout.L_HDR
            first = int(prep.prog[rec + layout.OG_OPS])
            for j in range(int(prep.prog[rec + layout.OG_NOPS])):
                r = first + j * layout.OPK_REC
                if prep.prog[r] == layout.OPK_ACT16:
                    tables.add(int(prep.prog[r + 9]))
    assert sorted(tables) == [prep.weights.size + 65536 * i for i in range(len(tables))]
    assert prep.kernel_weights.size == prep.weights.size + 65536 * len(tables)
    packed = 0
    for k, layer in enumerate(q.spec.layers):
        lo = int(prep.prog[layout.G_LAYER0 + k])
        rec = lo + layout.L_HDR
        if layer.kind == "dense":
            off, w = int(prep.prog[rec + layout.DN_W]), q.quant.layers[k][0]["w"]
            unit = w.shape[0]
        elif layer.kind == "lstm":
            off, w = int(prep.prog[rec + layout.LS_WX]), q.quant.layers[k][0]["w_x"]
            unit = w.shape[0]
        else:   # an int16 cell graph: its first CONV16 op is the x conv of the first H rows of w_x
            r = int(prep.prog[rec + layout.OG_OPS + 0])
            r = next(r + i * layout.OPK_REC for i in range(int(prep.prog[rec + layout.OG_NOPS]))
                     if prep.prog[r + i * layout.OPK_REC] == layout.OPK_CONV16)
            off, w = int(prep.prog[r + 4]), q.quant.layers[k][0]["w_x"][:layer.hidden_size]
            unit = layer.hidden_size if prep.prog[r + 13] else 1
        rows, cols = w.shape
        cp = int(cells_int8.padded(cols))
        c_side = prep.weights[off:off + rows * cp].reshape(rows, cp)
        np.testing.assert_array_equal(c_side[:, :cols], w)              # what the C runtime reads
        jit_side = prep.kernel_weights[off:off + rows * cp]
        if layout.uses_blocks(unit):
            np.testing.assert_array_equal(jit_side, layout.pack_blocks(c_side))
            packed += 1
        else:
            np.testing.assert_array_equal(jit_side, c_side.ravel())
    assert packed == want_packed


# ------------------------------------------------------------------ many streams per call


@pytest.mark.parametrize("which", ["int8", "f32"])
def test_streams_equal_independent_streams(pair, which):
    f32, q = pair
    m = q if which == "int8" else f32
    n, T = 5, 40
    X = _frames((T, n, I), seed=3)
    ss = m.streams(n)
    lone = [m.stream() for _ in range(n)]
    for t in range(T):
        Y = ss.step(X[t])
        want = np.stack([s.step(X[t, i]) for i, s in enumerate(lone)])
        assert np.array_equal(Y.view(np.int32), want.view(np.int32)), t
    st = ss.state
    for i, s in enumerate(lone):              # state with a leading n axis, row i = stream i
        for layer_b, layer_1 in zip(st, s.state):
            for db, d1 in zip(layer_b, layer_1):
                for name in d1:
                    assert np.array_equal(db[name][i], d1[name]), name
    # state round trip and reset act on all n streams at once
    ss2 = m.streams(n)
    ss2.state = st
    np.testing.assert_array_equal(ss2.step(X[0]), ss.step(X[0]))
    ss.reset()
    fresh = m.streams(n)
    np.testing.assert_array_equal(ss.step(X[1]), fresh.step(X[1]))


def test_streams_int8_equal_naive(pair):
    _, q = pair
    X = _frames((7, 30, I), seed=9)                          # (n, T, F)
    ss = q.streams(7)
    Y = np.stack([ss.step(np.ascontiguousarray(X[:, t])).copy() for t in range(30)], axis=1)
    Yr, _ = naive.ref_forward_int8(q.spec, q.quant, X)
    np.testing.assert_array_equal(Y, Yr)


def test_streams_bad_input_is_an_input_error(pair):
    _, q = pair
    ss = q.streams(3)
    for bad in (np.zeros((2, I), np.float32), np.zeros((3, I + 1), np.float32), np.zeros(I, np.float32),
                np.zeros((3, I), np.int32), "x", None, np.zeros((3, 1, I), np.float32)):
        with pytest.raises(el.InputError):
            ss.step(bad)
    X = np.zeros((3, I))
    X[1, 2] = np.nan
    ones = np.ones((3, I), np.float32)
    ref = q.streams(3)
    ss.reset()
    ss.step(ones)
    ref.step(ones)
    with pytest.raises(el.InputError, match="NaN"):
        ss.step(X)                          # refused before any state changed
    np.testing.assert_array_equal(ss.step(ones), ref.step(ones))
    for n in (0, -1, 2.0, True, "3"):
        with pytest.raises(el.InputError):
            q.streams(n)
    assert len(q.streams(4)) == 4


def test_streams_step_allocates_nothing(pair):
    _, q = pair
    ss = q.streams(16)
    X = _frames((16, I), seed=1)
    y1 = ss.step(X)
    assert ss.step(X) is y1
    grown = bytes_allocated_by(lambda: ss.step(X), 2000)
    assert grown < 2048, f"Streams.step allocated {grown} bytes over 2000 calls"


# ------------------------------------------------------------------ batched and chunked run / step_many


def test_batched_run_with_lengths_equals_single_runs_and_naive(pair):
    f32, q = pair
    X = _frames((6, 50, I), seed=5)
    lengths = np.array([50, 1, 17, 50, 33, 2])
    for m in (q, f32):
        Y, st = m.run(X, lengths=lengths, return_state=True)
        for b in range(6):
            Yb, sb = m.run(X[b, :lengths[b]], return_state=True)
            assert np.array_equal(Y[b, :lengths[b]].view(np.int32), Yb.view(np.int32))
            assert not Y[b, lengths[b]:].any()
            for layer_b, layer_1 in zip(st, sb):
                for db, d1 in zip(layer_b, layer_1):
                    for name in d1:
                        assert np.array_equal(db[name][b], d1[name])
    Yr, _ = naive.ref_forward_int8(q.spec, q.quant, X, lengths=lengths)
    np.testing.assert_array_equal(q.run(X, lengths=lengths), Yr)


def test_chunked_equals_unchunked(pair, monkeypatch):
    f32, q = pair
    X = _frames((3, 300, I), seed=6)
    lengths = np.array([300, 123, 7])
    want = {id(m): (m.run(X, lengths=lengths), m.stream().step_many(X[0])) for m in (q, f32)}
    monkeypatch.setattr(program_work, "CHUNK_BYTES", 4 * 64 * 9)     # a few frames per chunk
    for m in (q, f32):
        assert program_work.chunk_frames(m._prep, 3, 300) < 20
        Y = m.run(X, lengths=lengths)
        s = m.stream()
        Ys = np.concatenate([s.step_many(X[0, :150]), s.step_many(X[0, 150:])])
        assert np.array_equal(Y.view(np.int32), want[id(m)][0].view(np.int32))
        assert np.array_equal(Ys.view(np.int32), want[id(m)][1].view(np.int32))
    Yr, _ = naive.ref_forward_int8(q.spec, q.quant, X, lengths=lengths)
    np.testing.assert_array_equal(q.run(X, lengths=lengths), Yr)


def test_bidirectional_is_not_chunked(monkeypatch):
    spec = el.random_model([{"kind": "gru", "hidden_size": 16, "bidirectional": True}], input_size=I, seed=1)
    X = _frames((2, 90, I), seed=2)
    q = el.quantize(el.Model(spec), calibration=X, progress=False)
    monkeypatch.setattr(program_work, "CHUNK_BYTES", 512)
    assert program_work.chunk_frames(q._prep, 2, 90) == 90
    np.testing.assert_array_equal(q.run(X, lengths=[90, 40]),
                                  naive.ref_forward_int8(q.spec, q.quant, X, lengths=np.array([90, 40]))[0])


def _traced_peak(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, out


@pytest.mark.parametrize("name", ["tagger_lstm_int8.elstm", "tagger_gru_int8.elstm", "audio_tagger.elstm",
                                  "tagger_lstm.elstm"])
def test_working_memory_does_not_grow_with_T(name):
    m = el.load(DATA / name)
    for T in (1000, 100_000):
        X = _frames((T, m.input_size), seed=T)
        s = m.stream()
        s.step_many(X[:10])
        m.run(X[:10])
        out_bytes = T * m.output_size * 4
        peak_run, _ = _traced_peak(lambda: m.run(X))
        peak_many, _ = _traced_peak(lambda: s.step_many(X))
        # beyond the (T, O) output: <= 1 MiB, whatever T
        assert peak_run - out_bytes <= 2**20, (name, T, peak_run - out_bytes)
        assert peak_many - out_bytes <= 2**20, (name, T, peak_many - out_bytes)


# ------------------------------------------------------------------ the vectorizable requantization


def test_branch_free_mbqm_equals_reference():
    """cells_int8._mbqm_split (SRDHM as one add and shift, RDBPOT with selects) against naive.ref_mbqm on edge
    and random inputs, every shift the runtime allows; x as the kernels pass it (int64 of acc + bias)."""
    from numba import njit
    split = njit(cells_int8._mbqm_split.py_func)

    @njit
    def run(xs, m, left, right, out):
        for i in range(xs.size):
            out[i] = split(xs[i], m, left, right)

    rng = np.random.default_rng(0)
    edge = np.array([0, 1, -1, 2, -2, 2**30, -2**30, 2**30 + 1, -2**30 - 1, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
                     2**32 - 1, 12345, -12345], np.int64)
    xs = np.concatenate([edge, rng.integers(-2**32, 2**32, 400), rng.integers(-2**16, 2**16, 200)])
    out = np.empty(xs.size, np.int64)
    for shift in range(-31, 32):
        for m in ((1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))):
            run(xs, np.int64(m), np.int64(max(shift, 0)), np.int64(max(-shift, 0)), out)
            want = [naive.ref_mbqm(naive._fx_i32(int(x)), m, shift) for x in xs]
            assert out.tolist() == want, (shift, m)


def test_kernels_run_without_the_gil():
    """While one thread is inside a long step_many, the main thread keeps running Python (the kernel released
    the GIL); with the GIL held the counter would stay near zero until the call returned."""
    import threading
    m = el.load(DATA / "tagger_lstm_int8.elstm")
    X = _frames((60_000, m.input_size), seed=4)
    s = m.stream()
    s.step_many(X[:10])
    t = threading.Thread(target=s.step_many, args=(X,))
    count = 0
    t.start()
    while t.is_alive():
        count += 1
    t.join()
    assert count > 10_000, count

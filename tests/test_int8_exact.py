"""The int8 runtime equals the NUMERICS.md contract bit for bit.

The reference is ``naive.ref_forward_int8`` (tests/naive.py), an independent numpy-int64 implementation
written from NUMERICS.md alone.  Here it is compared with the Numba program (``Model.run``), with the
streaming API, and stage by stage with the kernels in ``edgelstm.kernels.cells_int8`` / ``fixedpoint``.

The full randomized sweep is marked ``slow`` and only runs when selected (``-m slow``) or with
EDGELSTM_SLOW=1; the default run keeps a fast subset with short sequences.
"""
import copy
import os

import numpy as np
import pytest

import edgelstm as el
import naive
from edgelstm.kernels import cells_int8, fixedpoint
from edgelstm.ir.model import ACTIVATIONS
from edgelstm.quant.params import QuantParams

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1

# first-layer features cycled by case number so every one appears in the fast subset too
FEATURES = [
    {"kind": "lstm"},
    {"kind": "lstm", "peephole": True},
    {"kind": "lstm", "proj": True},
    {"kind": "lstm", "peephole": True, "proj": True, "bidirectional": True},
    {"kind": "lstm", "bidirectional": True},
    {"kind": "gru", "reset_after": True},
    {"kind": "gru", "reset_after": False},
    {"kind": "gru", "reset_after": True, "bidirectional": True},
    {"kind": "gru", "reset_after": False, "bidirectional": True},
    {"kind": "rnn", "nonlinearity": "tanh"},
    {"kind": "rnn", "nonlinearity": "relu"},
    {"kind": "rnn", "nonlinearity": "relu", "bidirectional": True},
    {"kind": "rnn", "nonlinearity": "tanh", "bidirectional": True},
]


@pytest.fixture
def slow_selected(request):
    if "slow" not in (request.config.option.markexpr or "") and not os.environ.get("EDGELSTM_SLOW"):
        pytest.skip("slow sweep: select it with -m slow (or EDGELSTM_SLOW=1)")


# ---------------------------------------------------------------------------------------------------
# random cases
# ---------------------------------------------------------------------------------------------------

def _random_layer(rng, forced=None, *, max_hidden=48, allow_bidir=True):
    f = dict(forced) if forced else {"kind": str(rng.choice(["lstm", "gru", "rnn"]))}
    kind = f["kind"]
    H = int(rng.integers(1, max_hidden + 1))
    d = {"kind": kind, "hidden_size": H,
         "bidirectional": bool(f.get("bidirectional", allow_bidir and rng.random() < 0.3))}
    if not allow_bidir:
        d["bidirectional"] = False
    elif not d["bidirectional"] and rng.random() < 0.15:
        d["reverse"] = True   # ONNX direction="reverse": one backward direction
    if kind == "lstm":
        d["peephole"] = bool(f.get("peephole", rng.random() < 0.4))
        proj = f.get("proj", rng.random() < 0.3)
        if proj:
            if H < 2:
                d["hidden_size"] = H = int(rng.integers(2, max_hidden + 1))
            d["proj_size"] = int(rng.integers(1, H))
            if rng.random() < 0.4:  # small enough to bite: projection outputs are O(0.1..1)
                d["proj_clip"] = float(10.0 ** rng.uniform(-1.5, 0.3))
        if rng.random() < 0.4:      # from always-clipping to rarely (|c| reaches a few units here)
            d["cell_clip"] = float(10.0 ** rng.uniform(-1.5, 0.7))
    elif kind == "gru":
        d["reset_after"] = bool(f.get("reset_after", rng.random() < 0.5))
    else:
        d["nonlinearity"] = f.get("nonlinearity", str(rng.choice(["tanh", "relu"])))
    return d


def random_layers(rng, case, *, max_hidden=48, allow_bidir=True):
    n = int(rng.integers(1, 4))
    layers = [_random_layer(rng, FEATURES[case % len(FEATURES)], max_hidden=max_hidden,
                            allow_bidir=allow_bidir)]
    layers += [_random_layer(rng, max_hidden=max_hidden, allow_bidir=allow_bidir) for _ in range(n - 1)]
    rng.shuffle(layers)
    if not allow_bidir:
        for d in layers:
            d["bidirectional"] = False
    if rng.random() < 0.6:
        layers.append({"kind": "dense", "output_size": int(rng.integers(1, 13)),
                       "activation": ACTIVATIONS[(case // len(FEATURES) + case) % len(ACTIVATIONS)]})
    return layers


def _data(rng, shape, scale, offset):
    return (scale * (rng.standard_normal(shape) + offset)).astype(np.float32)


def _rescale(a, lo, hi, rng):
    """Multiply float32 scales by a random factor in [10^lo, 10^hi], kept inside the valid scale range."""
    f = 10.0 ** rng.uniform(lo, hi, size=np.shape(a))
    return np.clip(np.asarray(a, np.float64) * f, 1e-9, 1e5).astype(np.float32)


def perturb_quant(spec, qp: QuantParams, rng) -> QuantParams:
    """A valid but aggressive variant: shrunk/grown activation and weight scales (values clip, multipliers
    above 1 need left shifts), random zero points and cell exponents, huge biases (int32 wrap)."""
    qp = QuantParams(act=list(qp.act), layers=copy.deepcopy(qp.layers))
    L = len(spec.layers)
    for k in range(L + 1):
        if k and spec.layers[k - 1].kind == "dense":
            continue                        # a Dense layer's output quantization is fixed by its kind
        if rng.random() < 0.6:
            s, z = qp.act[k]
            s = float(_rescale(s, -1.5, 0.3, rng))
            z = int(rng.integers(-128, 128)) if rng.random() < 0.5 else z
            qp.act[k] = (s, z)
    for k, layer in enumerate(spec.layers):
        for p in qp.layers[k]:
            for name in list(p):
                a = p[name]
                if layer.kind in ("gru", "rnn") and name.endswith("_scale"):
                    # int16 cell graphs: keep every conv multiplier inside LiteRT's shift range [-31, 7]
                    if rng.random() < 0.3:
                        p[name] = _rescale(a, -0.3, 0.5, rng) if name == "graph_scale" else _rescale(a, -1.0, 0.3, rng)
                elif name.endswith("_scale") and name != "hidden_scale" and rng.random() < 0.3:
                    p[name] = _rescale(a, -1.0, 2.5, rng)
                elif name in ("hidden_scale", "pre_scale") and rng.random() < 0.5:
                    p[name] = _rescale(a, -1.5, 0.5, rng)
                elif name in ("hidden_zp", "pre_zp") and rng.random() < 0.5:
                    p[name] = rng.integers(-128, 128, size=a.shape).astype(np.int32)
                elif name == "cell_exp" and rng.random() < 0.6:
                    p[name] = np.array([rng.integers(-15, -8)], np.int32)
                elif name.startswith("b") and rng.random() < 0.25:
                    big = a.astype(np.float64) * 10.0 ** rng.uniform(1, 6) + rng.integers(
                        I32_MIN, I32_MAX, size=a.shape) * (rng.random() < 0.5)
                    p[name] = np.clip(big, I32_MIN, I32_MAX).astype(np.int32)
                elif name in ("w_x", "w_h", "w", "w_proj") and rng.random() < 0.15:
                    p[name] = rng.choice(np.array([-127, 127, 0, 1, -1], np.int8), size=a.shape)
                elif name == "w_peep" and rng.random() < 0.3:
                    p[name] = rng.choice(np.array([-32767, 32767, 0, 1, -1], np.int16), size=a.shape)
        if layer.kind == "dense" and layer.activation in ("none", "relu"):
            p = qp.layers[k][0]
            qp.act[k + 1] = (float(p["pre_scale"][0]), int(p["pre_zp"][0]))
    return qp


def random_state(spec, rng, B):
    """A random, valid int8-model state with a leading batch axis."""
    st = []
    for layer in spec.layers:
        if layer.kind == "dense":
            st.append([{}])
            continue
        dirs = []
        for _ in range(2 if layer.bidirectional else 1):
            if layer.kind == "lstm":
                dirs.append({"h": rng.integers(-128, 128, (B, layer.recurrent_size)).astype(np.int8),
                             "c": rng.integers(-32768, 32768, (B, layer.hidden_size)).astype(np.int16)})
            else:                           # GRU / RNN: the int16 state of their cell graphs
                dirs.append({"h": rng.integers(-32768, 32768, (B, layer.hidden_size)).astype(np.int16)})
        st.append(dirs)
    return st


def make_case(case, *, max_T, seed_base, allow_bidir=True):
    rng = np.random.default_rng([seed_base, case])
    layers = random_layers(rng, case, allow_bidir=allow_bidir)
    I = int(rng.integers(1, 41))
    # a relu RNN with recurrent spectral radius > 1 explodes in float (quantize then rightly refuses scales
    # beyond 1e6), so stacks holding one get smaller weights
    relu = any(d.get("nonlinearity") == "relu" for d in layers)
    w_scale = 10.0 ** (rng.uniform(-0.9, -0.35) if relu else rng.uniform(-0.7, 0.5))
    spec = el.random_model(layers, input_size=I, seed=int(rng.integers(1 << 30)), scale=float(w_scale))
    scale = float(10.0 ** rng.uniform(-2, 1.5))
    offset = float(rng.uniform(-2, 2)) if rng.random() < 0.5 else 0.0
    calib = _data(rng, (int(rng.integers(1, 4)), int(rng.integers(5, 40)), I), scale, offset)
    model = el.quantize(el.Model(spec), calibration=calib, progress=False)
    quant = model.quant
    perturbed = rng.random() < 0.35
    if perturbed:
        quant = perturb_quant(spec, quant, rng)
        model = el.Model(spec, quant)
    B = int(rng.integers(1, 5)) if rng.random() < 0.85 else int(rng.integers(16, 65))   # wide: cheap volume
    T = int(rng.integers(1, max_T + 1))
    X = _data(rng, (B, T, I), scale * float(10.0 ** rng.uniform(-0.3, 0.7)), offset)
    if rng.random() < 0.5:
        lengths = rng.integers(1, T + 1, B)
        lengths[rng.integers(B)] = T
    else:
        lengths = None
    init = random_state(spec, rng, B) if rng.random() < 0.3 else None
    desc = dict(case=case, layers=layers, input_size=I, B=B, T=T, lengths=None if lengths is None
                else lengths.tolist(), perturbed=perturbed, initial_state=init is not None)
    return spec, quant, model, X, lengths, init, desc


# ---------------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------------

def assert_same_outputs(Y, Yr, desc):
    assert Y.dtype == Yr.dtype and Y.shape == Yr.shape, (Y.dtype, Yr.dtype, Y.shape, Yr.shape, desc)
    if not np.array_equal(Y, Yr):
        bad = np.argwhere(Y != Yr)
        order = np.lexsort((bad[:, 2], bad[:, 0], bad[:, 1]))          # earliest time step first
        b, t, o = bad[order[0]]
        raise AssertionError(f"Y mismatch at b={b} t={t} o={o}: runtime {Y[b, t, o]!r} ref {Yr[b, t, o]!r}; "
                             f"{len(bad)} differing values; runtime row {Y[b, t]} ref row {Yr[b, t]}; {desc}")


def assert_same_state(st, sr, desc):
    assert len(st) == len(sr), desc
    for k, (a, b) in enumerate(zip(st, sr)):
        assert len(a) == len(b), (k, desc)
        for d, (da, db) in enumerate(zip(a, b)):
            assert set(da) == set(db), (k, d, sorted(da), sorted(db), desc)
            for n in db:
                x, y = np.asarray(da[n]), np.asarray(db[n])
                assert x.dtype == y.dtype and x.shape == y.shape, (k, d, n, x.dtype, y.dtype, x.shape, y.shape)
                assert np.array_equal(x, y), f"state[{k}][{d}][{n}] differs:\n{x}\nref\n{y}\n{desc}"


def run_case(case, *, max_T, seed_base):
    spec, quant, model, X, lengths, init, desc = make_case(case, max_T=max_T, seed_base=seed_base)
    Y, st = model.run(X, lengths=lengths, initial_state=init, return_state=True)
    Yr, sr = naive.ref_forward_int8(spec, quant, X, lengths=lengths, initial_state=init)
    assert_same_outputs(Y, Yr, desc)
    assert_same_state(st, sr, desc)


# ---------------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", range(40))
def test_int8_run_equals_reference_fast(case):
    run_case(case, max_T=40, seed_base=1)


@pytest.mark.slow
@pytest.mark.parametrize("case", range(320))
def test_int8_run_equals_reference_sweep(case, slow_selected):
    run_case(case, max_T=500, seed_base=2)


def test_reference_is_not_vacuous():
    """The fast subset reaches rails: some outputs saturate, lengths cut sequences, perturbed cases exist."""
    hit_rail = perturbed = cut = 0
    for case in range(40):
        spec, quant, model, X, lengths, init, desc = make_case(case, max_T=40, seed_base=1)
        Yr, _ = naive.ref_forward_int8(spec, quant, X, lengths=lengths, initial_state=init)
        s, z = quant.act[-1]
        q = np.round(Yr / np.float32(s)) + z
        hit_rail += bool(np.any(q <= -128) or np.any(q >= 127))
        perturbed += desc["perturbed"]
        cut += lengths is not None and bool(np.any(np.asarray(lengths) < desc["T"]))
    assert hit_rail >= 5 and perturbed >= 5 and cut >= 5, (hit_rail, perturbed, cut)


# ---------------------------------------------------------------------------------------------------
# the reference's own vectorized primitives and stages equal their scalar definitions
# ---------------------------------------------------------------------------------------------------

def _edge_i32(rng, n):
    edges = np.array([I32_MIN, I32_MIN + 1, -(1 << 30), -1, 0, 1, (1 << 30), I32_MAX - 1, I32_MAX], np.int64)
    return np.concatenate([edges, rng.integers(I32_MIN, I32_MAX, n, endpoint=True),
                           rng.integers(-70000, 70000, n)])


def test_vectorized_primitives_equal_scalar_references():
    rng = np.random.default_rng(7)
    x = _edge_i32(rng, 1500)
    m = np.concatenate([[I32_MIN, I32_MAX, 1 << 30, 0], rng.integers(1 << 30, 1 << 31, x.size - 4)])
    rng.shuffle(m)
    s = rng.integers(-31, 32, x.size)
    e = rng.integers(0, 32, x.size)
    assert naive.vsrdhm(x, m).tolist() == [naive.ref_srdhm32(int(a), int(b)) for a, b in zip(x, m)]
    assert naive.vsrdhm(I32_MIN, I32_MIN) == I32_MAX
    assert naive.vrdbpot(x, e).tolist() == [naive.ref_rdbpot(int(a), int(b)) for a, b in zip(x, e)]
    assert naive.vmbqm(x, m, s).tolist() == [naive.ref_mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s)]
    big = np.array([2 ** 40 + 5, -(2 ** 40) - 5, 2 ** 31, -(2 ** 31) - 1])
    assert naive.vwrap32(big).tolist() == [naive._fx_i32(int(v)) for v in big]


def test_ref_matmul_into_gate_equals_scalar_definition():
    rng = np.random.default_rng(8)
    for _ in range(20):
        rows, cols, B = (int(v) for v in rng.integers(1, 9, 3))
        W = rng.integers(-127, 128, (rows, cols))
        v = rng.integers(-128, 128, (B, cols))
        bias = rng.integers(I32_MIN, I32_MAX, rows, endpoint=True)
        gate = rng.integers(-32768, 32768, (B, rows))
        m = rng.integers(1 << 30, 1 << 31, rows)
        s = rng.integers(-20, 12, rows)
        got = naive.ref_matmul_into_gate(gate, W, bias, v, m, s)
        for b in range(B):
            for r in range(rows):
                acc = naive._fx_i32(int(bias[r]) + sum(int(W[r, c]) * int(v[b, c]) for c in range(cols)))
                want = min(32767, max(-32768, naive.ref_mbqm(acc, int(m[r]), int(s[r])) + int(gate[b, r])))
                assert got[b, r] == want


# ---------------------------------------------------------------------------------------------------
# per-stage tests against the kernels
# ---------------------------------------------------------------------------------------------------

def test_fixedpoint_kernel_primitives_equal_reference():
    rng = np.random.default_rng(9)
    x = _edge_i32(rng, 800)
    m = rng.integers(1 << 30, 1 << 31, x.size)
    m[:3] = [I32_MAX, 1 << 30, 0]
    s = rng.integers(-31, 31, x.size)
    e = rng.integers(0, 32, x.size)
    assert [fixedpoint.mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s)] == naive.vmbqm(x, m, s).tolist()
    assert [fixedpoint.rdbpot(int(a), int(b)) for a, b in zip(x, e)] == naive.vrdbpot(x, e).tolist()
    y = np.concatenate([x, [-129, -128, 127, 128, -32769, -32768, 32767, 32768]])
    assert [fixedpoint.sat8(int(a)) for a in y] == naive.vsat8(y).tolist()
    assert [fixedpoint.sat16(int(a)) for a in y] == naive.vsat16(y).tolist()


def _cell_inputs(rng):
    """(i, f, g, c) columns: an edge-value cross product plus random values in the sigmoid/tanh ranges."""
    sig_edges = [0, 1, 16384, 32766, 32767]
    tanh_edges = [-32768, -32767, -1, 0, 1, 32767]
    c_edges = [-32768, -32767, -1, 0, 1, 32766, 32767]
    grid = np.array(np.meshgrid(sig_edges, sig_edges, tanh_edges, c_edges, indexing="ij")).reshape(4, -1)
    n = 3000
    rnd = np.stack([rng.integers(0, 32768, n), rng.integers(0, 32768, n),
                    rng.integers(-32768, 32768, n), rng.integers(-32768, 32768, n)])
    return np.concatenate([grid, rnd], axis=1)


@pytest.mark.parametrize("cell_exp", range(-15, -8))
def test_lstm_cell_update_kernel_equals_reference(cell_exp):
    rng = np.random.default_rng(100 + cell_exp)
    i, f, g, c = _cell_inputs(rng)
    H = i.size
    gates = np.concatenate([i, f, g, rng.integers(0, 32768, H)]).astype(np.int16)
    off = 3
    c16 = rng.integers(-32768, 32768, H + 2 * off).astype(np.int16)
    c16[off:off + H] = c
    before = c16.copy()
    cells_int8.lstm_cell_update_int8(gates, c16, off, H, cell_exp)
    want = naive.ref_lstm_cell_update(i, f, g, c, cell_exp)
    assert np.array_equal(c16[off:off + H].astype(np.int64), want), cell_exp
    assert np.array_equal(c16[:off], before[:off]) and np.array_equal(c16[off + H:], before[off + H:])


def test_lstm_cell_update_int16_truncation_outside_gate_range():
    """Whole int16 domain for i, f (not just sigmoid outputs): f = c = -32768 gives RDBPOT(2^30, 15) = 32768,
    which the int16 cast turns into -32768 (TFLite's CwiseMul)."""
    rng = np.random.default_rng(5)
    n = 4000
    i, f, g, c = (rng.integers(-32768, 32768, n) for _ in range(4))
    i[:4], f[:4], g[:4], c[:4] = [-32768] * 4, [-32768] * 4, [-32768] * 4, [-32768, 32767, 0, -32768]
    for e in (-15, -12, -9):
        gates = np.concatenate([i, f, g, np.zeros(n)]).astype(np.int16)
        c16 = c.astype(np.int16)
        cells_int8.lstm_cell_update_int8(gates, c16, 0, n, e)
        assert np.array_equal(c16.astype(np.int64), naive.ref_lstm_cell_update(i, f, g, c, e)), e
    assert naive.ref_lstm_cell_update([0], [-32768], [0], [-32768], -15)[0] == -32768


def test_ref_lstm_hidden_and_tables_basic_properties():
    # tanh(0) = 0, o = 32767 (one): hid8 is the zero point whatever the scale
    m = naive.ref_qm(np.float32(np.float32(np.float32(2.0 ** -15) / np.float32(0.01)) * np.float32(2.0 ** -15)))
    assert naive.ref_lstm_hidden([32767], [0], -12, m, 7).tolist() == [7]
    T = naive.ref_dense_table(naive._sigmoid64, 0.05, 3, 1.0 / 256, -128)
    assert T[3 + 128] == 0 and T.min() >= -128 and T.max() <= 127 and np.all(np.diff(T) >= 0)
    E = naive.ref_softmax_exp_table(0.1)
    assert E[0] == 1.0 and E.dtype == np.float32 and np.all(np.diff(E) <= 0)
    out = naive.ref_softmax(np.array([[5, 5, 5, 5]]), E)                # uniform over 4 -> 0.25 -> -64
    assert out.tolist() == [[-64] * 4]


# ---------------------------------------------------------------------------------------------------
# streaming equals whole-sequence run
# ---------------------------------------------------------------------------------------------------

def _stream_case(case, T=60):
    spec, quant, model, X, lengths, init, desc = make_case(case, max_T=T, seed_base=3, allow_bidir=False)
    rng = np.random.default_rng([4, case])
    X = _data(rng, (T, spec.input_size), float(np.abs(X).max() + 1e-3) / 2, 0.0)
    return spec, quant, model, X, desc


def _chunks(rng, T):
    cuts, t = [], 0
    while t < T:
        n = int(rng.integers(1, 9))
        cuts.append((t, min(T, t + n)))
        t += n
    return cuts


def _state_equal(a, b):
    return all(set(da) == set(db) and all(np.asarray(da[n]).dtype == np.asarray(db[n]).dtype and
                                          np.array_equal(da[n], db[n]) for n in da)
               for la, lb in zip(a, b) for da, db in zip(la, lb)) and len(a) == len(b)


@pytest.mark.parametrize("case", range(8))
def test_int8_streaming_equals_run_bit_for_bit(case):
    spec, quant, model, X, desc = _stream_case(case)
    T = X.shape[0]
    rng = np.random.default_rng([5, case])
    Y = model.run(X)
    Yr, _ = naive.ref_forward_int8(spec, quant, X[None])
    assert np.array_equal(Y, Yr[0]), desc

    s = model.stream()                                    # frame by frame
    got = np.stack([s.step(x).copy() for x in X])
    assert got.dtype == Y.dtype and np.array_equal(got, Y), desc
    _, st_run = model.run(X, return_state=True)
    assert _state_equal(s.state, st_run), desc

    s = model.stream()                                    # step_many in random chunks
    got = np.concatenate([s.step_many(X[a:b]) for a, b in _chunks(rng, T)])
    assert np.array_equal(got, Y), desc

    s = model.stream()                                    # mixed step / step_many
    parts = []
    for a, b in _chunks(rng, T):
        if rng.random() < 0.5:
            parts.extend(s.step(x).copy()[None] for x in X[a:b])
        else:
            parts.append(s.step_many(X[a:b]))
    assert np.array_equal(np.concatenate(parts), Y), desc

    cut = int(rng.integers(1, T))                         # state handed over to a NEW stream mid-sequence
    s1 = model.stream()
    first = s1.step_many(X[:cut])
    st = s1.state
    s2 = model.stream()
    s2.state = st
    rest = np.stack([s2.step(x).copy() for x in X[cut:]])
    assert np.array_equal(np.concatenate([first, rest]), Y), desc
    # the read-back state is a copy: stepping s1 further must not change it, and s1 continues identically
    st_before = copy.deepcopy(st)
    assert np.array_equal(s1.step_many(X[cut:]), Y[cut:]), desc
    assert _state_equal(st, st_before)

    # the state read mid-sequence equals the reference's final state on the prefix
    _, sr = naive.ref_forward_int8(spec, quant, X[None, :cut])
    batched = [[{n: np.asarray(a)[None] for n, a in d.items()} for d in layer] for layer in st]
    assert _state_equal(batched, sr), desc


@pytest.mark.parametrize("case", range(4))
def test_int8_interleaved_streams_are_independent_and_reset_is_fresh(case):
    spec, quant, model, X, desc = _stream_case(case + 20)
    rng = np.random.default_rng([6, case])
    X2 = _data(rng, X.shape, float(np.abs(X).max() + 1e-3) / 3, 0.5)
    Y1, Y2 = model.run(X), model.run(X2)
    a, b = model.stream(), model.stream()
    o1, o2 = [], []
    for t in range(X.shape[0]):
        o1.append(a.step(X[t]).copy())
        o2.append(b.step(X2[t]).copy())
    assert np.array_equal(np.stack(o1), Y1) and np.array_equal(np.stack(o2), Y2), desc

    a.reset()
    fresh = model.stream()
    assert _state_equal(a.state, fresh.state)
    assert _state_equal([[{n: v[0] for n, v in d.items()} for d in layer] for layer in model.zero_state(batch=1)],
                        fresh.state)
    assert np.array_equal(a.step_many(X2), Y2) and np.array_equal(fresh.step_many(X2), Y2), desc


@pytest.mark.parametrize("case", range(6))
def test_float_chunked_streaming_equals_run(case):
    rng = np.random.default_rng([7, case])
    layers = random_layers(rng, case, max_hidden=24, allow_bidir=False)
    I = int(rng.integers(1, 20))
    spec = el.random_model(layers, input_size=I, seed=case)
    model = el.Model(spec)
    X = rng.standard_normal((80, I)).astype(np.float32)
    Y = model.run(X)
    s = model.stream()
    got = np.concatenate([s.step_many(X[a:b]) if b - a > 1 else s.step(X[a]).copy()[None]
                          for a, b in _chunks(rng, X.shape[0])])
    np.testing.assert_allclose(got, Y, rtol=0, atol=1e-6)
    cut = 37
    s1 = model.stream()
    s1.step_many(X[:cut])
    s2 = model.stream()
    s2.state = s1.state
    np.testing.assert_allclose(s2.step_many(X[cut:]), Y[cut:], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# high-volume probes: rare rounding paths (float32 effective scales, softmax/sigmoid tables, input ties)
# ---------------------------------------------------------------------------------------------------
# A multiplier computed in float64 instead of float32 differs by ~2^-24 relative, which flips an int8
# output only near a rounding boundary; stateless Dense stacks let us compare ~10^5-10^6 values cheaply.

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", range(3))
def test_dense_high_volume_equals_reference(activation, seed):
    rng = np.random.default_rng([10, seed, ACTIVATIONS.index(activation)])
    I, O = int(rng.integers(1, 41)), int(rng.integers(2, 17))
    spec = el.random_model([{"kind": "dense", "output_size": O, "activation": activation}], input_size=I,
                           seed=seed, scale=float(10.0 ** rng.uniform(-0.5, 0.5)))
    scale, offset = float(10.0 ** rng.uniform(-2, 1)), float(rng.uniform(-1, 1))
    model = el.quantize(el.Model(spec), calibration=_data(rng, (2, 50, I), scale, offset), progress=False)
    quant = model.quant
    if seed:
        quant = perturb_quant(spec, quant, rng)
        model = el.Model(spec, quant)
    X = _data(rng, (16, 1000, I), scale * 1.5, offset)
    Yr, _ = naive.ref_forward_int8(spec, quant, X)
    assert_same_outputs(model.run(X), Yr, dict(activation=activation, seed=seed, I=I, O=O))


def test_input_quantization_ties_round_half_away():
    """x = (k + 1/2) * s_in exactly: round half away from zero, then + zp, then sat8. Observed through an
    identity Dense layer (w = 127 * I at scale 1/127, logits in the input quantization)."""
    I = 8
    spec = el.random_model([{"kind": "dense", "output_size": I, "activation": "none"}], input_size=I)
    s, zp = 2.0 ** -4, 3
    w_scale = np.float32(1 / 127)
    eff = naive.ref_eff_scale(w_scale, s, s)
    assert naive.ref_qm(eff) == naive.ref_qm(np.float32(1 / 127))     # float32 chain is exact here
    quant = QuantParams(act=[(s, zp), (s, zp)], layers=[[{
        "w": (127 * np.eye(I)).astype(np.int8), "w_scale": np.full(I, w_scale, np.float32),
        "b": np.zeros(I, np.int32), "pre_scale": np.array([s], np.float32), "pre_zp": np.array([zp], np.int32)}]])
    model = el.Model(spec, quant)
    k = np.arange(-140, 140)
    X = ((k + 0.5) * s).astype(np.float32)
    X = np.concatenate([X, -X, k * s]).reshape(-1, 1).repeat(I, axis=1)[None]
    Yr, _ = naive.ref_forward_int8(spec, quant, X)
    v = X[0, :, 0].astype(np.float64) / s
    want_q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, -128, 127)
    assert np.array_equal(Yr[0, :, 0], ((want_q - zp) * s).astype(np.float32))   # the reference itself
    assert_same_outputs(model.run(X), Yr, "input ties")


def _f32_chain_differs(rng, eff_target):
    """(w_scale, s_in, s_out) with w_scale * s_in / s_out near eff_target whose float32 effective scale
    quantizes to another multiplier than the exact float64 value would (so a runtime computing eff in
    float64 gets different integers)."""
    while True:
        w, s_in = (np.float32(10.0 ** rng.uniform(-3, -0.5)) for _ in range(2))
        s_out = np.float32(w * s_in / eff_target * rng.uniform(0.9, 1.1))
        m32 = naive.ref_qm(naive.ref_eff_scale(w, s_in, s_out))
        m64 = naive.ref_quantize_multiplier(float(w) * float(s_in) / float(s_out))
        if m32[1] == m64[1] and abs(m32[0] - m64[0]) >= 100:
            return w, s_in, s_out, m64


def _probe_model(kind, n, w_scale, s_a, s_b, bias):
    """A layer whose every output row r is sat8(MBQM(bias[r], m) + 0) with m = QM(eff(w_scale, s_a, s_b)):
    all matmul weights are 0, so the accumulator is the bias alone.
      dense:    eff(w_scale, s_in, pre_scale)
      lstm+proj: eff(w_proj_scale, hidden_scale, s_out)  (with w_proj = 0, h = sat8(MBQM(b_proj) + zp_out))
    Returns (spec, quant, the multiplier's index path in ref_prepare)."""
    f32 = lambda v: np.array([v], np.float32)
    if kind == "dense":
        spec = el.random_model([{"kind": "dense", "output_size": n, "activation": "none"}], input_size=2)
        q = {"w": np.zeros((n, 2), np.int8), "w_scale": np.full(n, w_scale, np.float32), "b": bias.astype(np.int32),
             "pre_scale": f32(s_b), "pre_zp": np.array([0], np.int32)}
        return spec, QuantParams(act=[(float(s_a), 0), (float(s_b), 0)], layers=[[q]]), "m"
    H, P = n + 1, n
    spec = el.random_model([{"kind": "lstm", "hidden_size": H, "proj_size": P}], input_size=2)
    q = {"w_x": np.zeros((4 * H, 2), np.int8), "w_x_scale": np.full(4, 0.01, np.float32),
         "w_h": np.zeros((4 * H, P), np.int8), "w_h_scale": np.full(4, 0.01, np.float32),
         "b": np.zeros(4 * H, np.int32), "cell_exp": np.array([-11], np.int32),
         "w_proj": np.zeros((P, H), np.int8), "w_proj_scale": f32(w_scale), "b_proj": bias.astype(np.int32),
         "hidden_scale": f32(s_a), "hidden_zp": np.array([0], np.int32)}
    return spec, QuantParams(act=[(0.05, 0), (float(s_b), 0)], layers=[[q]]), "m_proj"


@pytest.mark.parametrize("seed", range(3))
def test_dense_follows_litert_fully_connected_double_scale_and_single_rounding(seed):
    """Dense = LiteRT's int8 FULLY_CONNECTED: per channel, a double effective scale and single-rounding
    requantization (measured on both LiteRT resolvers). Accumulators sit exactly where the float32 chain's
    multiplier, or double rounding, would give other integers."""
    rng = np.random.default_rng([12, seed])
    acc = np.arange(1, 1_200_000, dtype=np.int64)
    hits = []
    while len(hits) < 3:
        w_scale, s_a, s_b, _ = _f32_chain_differs(rng, 1e-4)
        m64 = naive.ref_quantize_multiplier(float(np.float32(s_a)) * float(w_scale) / float(np.float32(s_b)))
        m32 = naive.ref_qm(naive.ref_eff_scale(w_scale, s_a, s_b))
        hits = acc[naive.ref_mbqm_single(acc, *m64) != naive.ref_mbqm_single(acc, *m32)]
    hits = np.concatenate([hits, -hits])
    n = min(6, hits.size)
    spec, quant, _ = _probe_model("dense", n, w_scale, s_a, s_b, rng.choice(hits, n, replace=False))
    model = el.Model(spec, quant)
    X = rng.standard_normal((2, 3, 2)).astype(np.float32)
    prep = naive.ref_prepare(spec, quant)
    assert prep[0]["dirs"][0]["m_fc"] == [m64] * n
    Yr, _ = naive.ref_forward_int8(spec, quant, X, prep=prep)
    assert_same_outputs(model.run(X), Yr, dict(seed=seed, scales=(w_scale, s_a, s_b), m64=m64))
    prep[0]["dirs"][0]["m_fc"] = [m32] * n          # sensitive: the float32 chain gives other outputs
    assert not np.array_equal(naive.ref_forward_int8(spec, quant, X, prep=prep)[0], Yr)


@pytest.mark.parametrize("kind", ["lstm_proj"])
@pytest.mark.parametrize("seed", range(3))
def test_float32_effective_scale_probe(kind, seed):
    """Accumulators placed exactly where the float32 effective multiplier (NUMERICS.md evaluation order)
    and the exact float64 one round differently: the runtime must follow the float32 order."""
    rng = np.random.default_rng([11, seed, len(kind)])
    acc = np.arange(1, 1_200_000, dtype=np.int64)          # outputs <= 120
    hits = []
    while len(hits) < 3:
        w_scale, s_a, s_b, m64 = _f32_chain_differs(rng, 1e-4)
        m32 = naive.ref_qm(naive.ref_eff_scale(w_scale, s_a, s_b))
        hits = acc[naive.vmbqm(acc, *m32) != naive.vmbqm(acc, *m64)]
    hits = np.concatenate([hits, -hits])
    n = min(6, hits.size)
    spec, quant, name = _probe_model(kind, n, w_scale, s_a, s_b, rng.choice(hits, n, replace=False))
    model = el.Model(spec, quant)
    X = rng.standard_normal((2, 3, 2)).astype(np.float32)
    prep = naive.ref_prepare(spec, quant)
    assert prep[0]["dirs"][0][name] == m32
    Yr, _ = naive.ref_forward_int8(spec, quant, X, prep=prep)
    assert_same_outputs(model.run(X), Yr, dict(kind=kind, seed=seed, scales=(w_scale, s_a, s_b), m32=m32))
    prep[0]["dirs"][0][name] = m64                  # the probe is sensitive: a float64 multiplier differs
    assert not np.array_equal(naive.ref_forward_int8(spec, quant, X, prep=prep)[0], Yr)

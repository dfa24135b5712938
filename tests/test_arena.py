"""The op-graph arena layout (program.opgraph.prepare_record): tensors share arena elements by lifetime.

Every layout is checked from the op records themselves (the offsets the Numba and C kernels read), by a
symbolic run of the graph over the arena: each element remembers which (tensor, element) last wrote it; every
op must find its inputs' elements still holding them, must not write over its own inputs, and at the step end
y and the state outputs must still be in place. Graphs: the 20 converter-made cell graphs (int8 and float),
edgelstm's int8 GRU / RNN cell graphs (random layers, both GRU variants, both RNN nonlinearities, stacked and
bidirectional), and random op graphs with constants, several states, element-range COPYs (split / concat), FCs
and y shared with a state output. The random graphs also run through the int8 / float kernels: the lifetime
layout and one slot per tensor give the same outputs and states."""
import os

import numpy as np
import pytest

import edgelstm as el
import edgelstm.program.opgraph as og
from edgelstm.program.cellgraph import cell_graph
from edgelstm.program import layout as L
from edgelstm.ir.opgraph import BINARY, OpGraph, validate_opgraph
from edgelstm.program.builder import Builder
from edgelstm.program.opgraph import prepare_record

CELLS = os.path.join(os.path.dirname(__file__), "fixtures", "tflite_cells")
CELL_NAMES = sorted(f[:-len("_int8.tflite")] for f in os.listdir(CELLS) if f.endswith("_int8.tflite"))


def _accesses(T, op, r):
    """(reads, write) of one op record: reads [(tensor, first element, arena offset, n)], write likewise."""
    name, a, b, out, _, p0, p1, p2 = op
    if name in ("FULLY_CONNECTED", "CONV_2D"):
        return [(a, 0, int(r[1]), T[a][0])], (out, 0, int(r[12]), T[out][0])
    if name in BINARY:
        n = int(r[1])
        return [(a, 0, int(r[2]), n), (b, 0, int(r[3]), n)], (out, 0, int(r[4]), n)
    n = int(r[1])
    assert n == (p2 or T[out][0])
    return [(a, p0, int(r[2]), n)], (out, p1, int(r[4]), n)


def check_layout(g: OpGraph, prog, rec: int, arena_size: int) -> None:
    """Raise AssertionError if the records of graph ``g`` (its direction record at prog[rec]) let a live tensor
    be overwritten, an op write over its inputs, or a tensor leave the arena."""
    T = g.tensors
    owner = np.full((arena_size, 2), -1, np.int64)     # (tensor, element) each arena element holds
    base = {}

    def place(t, first, off, n):
        assert 0 <= off and off + n <= arena_size, f"tensor {t} [{off}, {off + n}) outside the arena {arena_size}"
        b0 = off - first
        assert base.setdefault(t, b0) == b0, f"tensor {t} at two arena offsets"
        return np.arange(off, off + n), np.arange(first, first + n)

    def write(t, first, off, n):
        cells, elems = place(t, first, off, n)
        owner[cells, 0], owner[cells, 1] = t, elems

    def holds(t, first, off, n, what):
        cells, elems = place(t, first, off, n)
        bad = (owner[cells, 0] != t) | (owner[cells, 1] != elems)
        assert not bad.any(), f"{what}: tensor {t} element {elems[bad][0]} overwritten by tensor " \
                              f"{owner[cells[bad][0], 0]}"

    # step start (graph_io_in): constants, x, state inputs
    cs = int(prog[rec + L.OG_CONSTS])
    consts = [i for i, t in enumerate(T) if t[3] is not None]
    assert int(prog[rec + L.OG_NCONST]) == len(consts)
    for k, t in enumerate(consts):
        c = cs + k * L.OG_CONST_REC
        assert int(prog[c + 1]) == T[t][0]
        write(t, 0, int(prog[c]), T[t][0])
    assert int(prog[rec + L.OG_NX]) == T[g.x][0]
    write(g.x, 0, int(prog[rec + L.OG_X]), T[g.x][0])
    st = int(prog[rec + L.OG_STATES])
    for k, (si, _) in enumerate(g.state):
        write(si, 0, int(prog[st + k * L.OG_STATE_REC]), T[si][0])
    for k, (si, _) in enumerate(g.state):      # nothing of the copy-in clobbered another input
        holds(si, 0, int(prog[st + k * L.OG_STATE_REC]), T[si][0], "step start")
    holds(g.x, 0, int(prog[rec + L.OG_X]), T[g.x][0], "step start")
    for k, t in enumerate(consts):
        holds(t, 0, int(prog[cs + k * L.OG_CONST_REC]), T[t][0], "step start")
    first = int(prog[rec + L.OG_OPS])
    assert int(prog[rec + L.OG_NOPS]) == len(g.ops)
    for k, op in enumerate(g.ops):
        r = prog[first + k * L.OPK_REC:first + (k + 1) * L.OPK_REC]
        reads, (out, p1, o, n) = _accesses(T, op, r)
        for t, p0, a, m in reads:
            holds(t, p0, a, m, f"op {k} {op[0]}")
            if t != out:
                assert o + n <= a or a + m <= o, f"op {k} {op[0]}: output [{o}, {o + n}) overlaps input {t} " \
                                                 f"[{a}, {a + m})"
        write(out, p1, o, n)
    # step end (graph_io_out): y and the state outputs
    holds(g.y, 0, int(prog[rec + L.OG_Y]), T[g.y][0], "step end (y)")
    for k, (_, so) in enumerate(g.state):
        holds(so, 0, int(prog[st + k * L.OG_STATE_REC + 1]), T[so][0], "step end (state)")


def peak_live(g: OpGraph) -> int:
    """The most elements live at one time (a lower bound of any arena), from the same lifetime rules."""
    n = len(g.ops)
    lo, hi = {}, {}
    keep = {g.x} | {si for si, _ in g.state} | {i for i, t in enumerate(g.tensors) if t[3] is not None}
    for t in keep:
        lo[t], hi[t] = -1, n
    for k, (_, a, b, out, *_r) in enumerate(g.ops):
        for t in (a, b, out):
            if t >= 0:
                lo.setdefault(t, k)
                hi[t] = max(hi.get(t, k), k)
    for t in {g.y} | {so for _, so in g.state}:
        hi[t] = n
    return max(sum(g.tensors[t][0] for t in lo if lo[t] <= k <= hi[t]) for k in range(-1, n + 1))


def _layers(model):
    """(graph, direction record offset) of every op-graph direction of a prepared model."""
    prog, out = model._prep.prog, []
    for k, layer in enumerate(model.spec.layers):
        lo = int(prog[L.G_LAYER0 + k])
        if int(prog[lo + L.L_KIND]) != L.KIND_OPS:
            continue
        for d in range(int(prog[lo + L.L_NDIR])):
            rec = lo + L.L_HDR + d * int(prog[lo + L.L_DIRLEN])
            if layer.kind == "ops":
                g = layer
            else:
                g, _ = cell_graph(layer, model.quant.layers[k][d], model.quant.act[k], model.quant.act[k + 1])
            out.append((g, rec))
    return out


@pytest.mark.parametrize("suffix", ["int8", "f32"])
def test_converter_cell_graphs_arena_layout(suffix):
    from edgelstm.export import from_tflite
    for name in CELL_NAMES:
        model = from_tflite(os.path.join(CELLS, f"{name}_{suffix}.tflite"))
        (g, rec), = _layers(model)
        check_layout(g, model._prep.prog, rec, model._prep.scratch)
        assert model._prep.scratch < sum(t[0] for t in g.tensors) + 2 * L.PAD, name


def _cell_model(layers, I, seed):
    spec = el.random_model(layers, input_size=I, seed=seed, scale=0.5)
    rng = np.random.default_rng(seed)
    return el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 30, I)).astype(np.float32),
                       progress=False)


CELL_KINDS = [{"kind": "gru", "reset_after": True}, {"kind": "gru", "reset_after": False},
              {"kind": "rnn", "nonlinearity": "tanh"}, {"kind": "rnn", "nonlinearity": "relu"}]


@pytest.mark.parametrize("seed", range(6))
def test_int8_cell_graphs_arena_layout(seed):
    rng = np.random.default_rng(seed)
    a, b = (CELL_KINDS[int(i)] for i in rng.integers(0, 4, 2))
    H1, H2, I = (int(v) for v in rng.integers(2, 70, 3))
    layers = [{**a, "hidden_size": H1, "bidirectional": bool(seed % 2)}, {**b, "hidden_size": H2}]
    model = _cell_model(layers, I, seed)
    got = _layers(model)
    assert len(got) == 3 if seed % 2 else 2
    for g, rec in got:
        check_layout(g, model._prep.prog, rec, model._prep.scratch)
        # the greedy placement reaches the lower bound on these graphs: the arena is the peak of live elements
        assert og._arena_offsets(g)[1] == peak_live(g)


def test_gru_tagger_arena_shrinks():
    """The GRU tagger's int16 cell graph: 1,232 elements one slot per tensor, 488 by lifetime (the peak)."""
    from edgelstm.data import __path__ as data_path
    model = el.load(os.path.join(list(data_path)[0], "tagger_gru_int8.elstm"))
    (g, rec), = _layers(model)
    check_layout(g, model._prep.prog, rec, model._prep.scratch)
    assert sum(t[0] for t in g.tensors) == 1232
    assert og._arena_offsets(g)[1] == peak_live(g) == 488
    assert model._prep.scratch == 576          # 488 rounded up to PAD, + PAD of slack


# ---- random op graphs

def _random_graph(rng, quantized):
    """A valid random op graph: constants, 1..3 states, FCs, ADD / SUB / MUL, unary ops, element-range COPYs
    (split, concat), y sometimes a state output; with its constants."""
    T, ops, w, ws, bias, c = [], [], [], [], [], []

    def tensor(size, const=None):
        if quantized:
            T.append([int(size), float(rng.uniform(0.02, 0.1)), int(rng.integers(-20, 20)), const, 8])
        else:
            T.append([int(size), 1.0, 0, const])
        return len(T) - 1

    sizes = [int(s) for s in rng.integers(1, 9, 3)]
    x = tensor(int(rng.integers(1, 12)))
    states = [tensor(sizes[i % 3]) for i in range(int(rng.integers(1, 4)))]
    pool = [x] + states
    for _ in range(int(rng.integers(0, 3))):
        n = sizes[int(rng.integers(0, 3))]
        pool.append(tensor(n, const=len(c)))
        c.extend(rng.integers(-50, 50, n) if quantized else rng.standard_normal(n))
    un = ["COPY", "QUANTIZE", "LOGISTIC", "TANH", "RELU"] if quantized else ["COPY", "LOGISTIC", "TANH", "RELU"]
    for _ in range(int(rng.integers(3, 25))):
        kind = rng.choice(["fc", "bin", "un", "split", "concat"])
        a = pool[int(rng.integers(0, len(pool)))]
        na = T[a][0]
        if kind == "fc":
            no = sizes[int(rng.integers(0, 3))]
            out = tensor(no)
            ops.append(["FULLY_CONNECTED", a, -1, out, int(rng.integers(0, 2)), sum(map(len, w)), sum(map(len, bias)),
                        sum(map(len, ws)) if quantized else 0])
            w.append(rng.integers(-127, 128, no * na) if quantized else rng.standard_normal(no * na) * 0.3)
            bias.append(rng.integers(-500, 500, no) if quantized else rng.standard_normal(no))
            if quantized:
                ws.append(rng.uniform(0.002, 0.01, no))
        elif kind == "bin":
            same = [t for t in pool if T[t][0] == na]
            b = same[int(rng.integers(0, len(same)))]
            out = tensor(na)
            ops.append([str(rng.choice(BINARY)), a, b, out, 0, 0, 0, 0])
        elif kind == "un":
            out = tensor(na)
            ops.append([str(rng.choice(un)), a, -1, out, 0, 0, 0, 0])
        elif kind == "split" and na > 1:
            n = int(rng.integers(1, na))
            p0 = int(rng.integers(0, na - n + 1))
            out = tensor(n)
            ops.append(["COPY", a, -1, out, 0, p0, 0, n])
        else:                                   # concat of a and another pool tensor, written in two parts
            b = pool[int(rng.integers(0, len(pool)))]
            out = tensor(na + T[b][0])
            ops.append(["COPY", a, -1, out, 0, 0, 0, na])
            ops.append(["COPY", b, -1, out, 0, 0, na, T[b][0]])
        pool.append(out)
    st = []
    for si in states:                           # each state output mixes its input with a pool tensor
        same = [t for t in pool if T[t][0] == T[si][0]]
        out = tensor(T[si][0])
        ops.append(["ADD", si, same[int(rng.integers(0, len(same)))], out, 0, 0, 0, 0])
        pool.append(out)
        st.append([si, out])
    computed = [o[3] for o in ops]
    y = st[0][1] if rng.random() < 0.3 else computed[int(rng.integers(0, len(computed)))]
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    if quantized:
        params = {"w": cat(w, np.int8), "w_scale": cat(ws, np.float32), "b": cat(bias, np.int32),
                  "c": np.asarray(c, np.int8)}
    else:
        params = {"w": cat(w, np.float32), "b": cat(bias, np.float32), "c": np.asarray(c, np.float32)}
    g = OpGraph(input_size=T[x][0], output_size=T[y][0], quantized=quantized, tensors=T, ops=ops, x=x, y=y,
                state=st, n_w=params["w"].size, n_b=params["b"].size,
                n_ws=params["w_scale"].size if quantized else 0, n_c=len(c))
    validate_opgraph(g, "random graph")
    return g, params


def _prepare(g, params, quantized):
    b = Builder(np.int16 if quantized else np.float32, 0)
    rec, arena = prepare_record(b, g, params, 0)
    off = b.add_ints(rec)
    prog, blob = b.finish()
    return prog, b.kernel_blob(blob), off, arena + L.PAD


def _step_many(g, params, quantized, steps, rng):
    """y and the state after ``steps`` kernel steps of graph g from random x / initial state."""
    from edgelstm.kernels.ops_f32 import graph_step_f32
    from edgelstm.kernels.ops_int8 import graph_step_int8
    prog, wq, rec, n = _prepare(g, params, quantized)
    S = sum(g.tensors[si][0] for si, _ in g.state)
    I, O = g.tensors[g.x][0], g.tensors[g.y][0]
    dt = np.int16 if quantized else np.float32
    if quantized:
        state = rng.integers(-128, 128, S).astype(dt)
        xs = rng.integers(-128, 128, (steps, I)).astype(dt)
    else:
        state = rng.standard_normal(S).astype(dt)
        xs = rng.standard_normal((steps, I)).astype(dt)
    arena = np.full(n, 77 if quantized else np.nan, dt)   # stale values in unwritten elements would show
    ys = []
    for x in xs:
        seq = np.concatenate([x, np.zeros(O, dt)])
        if quantized:
            graph_step_int8(prog, rec, wq, seq, 0, state, 0, I, arena, np.zeros(4096, np.int32))
        else:
            graph_step_f32(prog, rec, wq, seq, 0, state, 0, I, arena)
        ys.append(seq[I:].copy())
    return np.array(ys), state


def _one_slot_per_tensor(g):
    offs, n = [], 0
    for t in g.tensors:
        offs.append(n)
        n += t[0]
    return offs, n


@pytest.mark.parametrize("quantized", [True, False])
def test_random_op_graphs_arena_layout_and_results(quantized, monkeypatch):
    rng = np.random.default_rng(11 if quantized else 12)
    shared = 0
    for case in range(150):
        g, params = _random_graph(rng, quantized)
        prog, _, rec, n = _prepare(g, params, quantized)
        check_layout(g, prog, rec, n)
        shared += og._arena_offsets(g)[1] < sum(t[0] for t in g.tensors)
        if case < 25:                       # the kernels: same outputs and states as one slot per tensor
            seed = int(rng.integers(1 << 30))
            y, s = _step_many(g, params, quantized, 4, np.random.default_rng(seed))
            with monkeypatch.context() as m:
                m.setattr(og, "_arena_offsets", _one_slot_per_tensor)
                y0, s0 = _step_many(g, params, quantized, 4, np.random.default_rng(seed))
            assert np.array_equal(y.view(np.uint16 if quantized else np.uint32),
                                  y0.view(np.uint16 if quantized else np.uint32)), case
            assert np.array_equal(s.view(np.uint16 if quantized else np.uint32),
                                  s0.view(np.uint16 if quantized else np.uint32)), case
    assert shared > 100                     # not vacuous: most graphs reuse arena elements


def test_check_layout_catches_overlaps(monkeypatch):
    """The checker fails a layout that puts every tensor at offset 0, or two live tensors in one place."""
    model = _cell_model([{"kind": "gru", "hidden_size": 8}], 5, 0)
    (g, rec), = _layers(model)

    def everything_at_zero(graph):
        return [0] * len(graph.tensors), max(t[0] for t in graph.tensors)

    def swap_live(graph):       # the lifetime layout with fx_r moved onto fx_z (both live from op 1 to 8)
        offs, n = _real(graph)
        offs[3] = offs[4]
        return offs, n

    _real = og._arena_offsets
    for bad in (everything_at_zero, swap_live):
        with monkeypatch.context() as m:
            m.setattr(og, "_arena_offsets", bad)
            prog, _, rec, n = _prepare(g, *_cell_params(model))
            with pytest.raises(AssertionError):
                check_layout(g, prog, rec, n)
    prog, _, rec, n = _prepare(g, *_cell_params(model))
    check_layout(g, prog, rec, n)


def _cell_params(model):
    layer = model.spec.layers[0]
    _, params = cell_graph(layer, model.quant.layers[0][0], model.quant.act[0], model.quant.act[1])
    return params, True

"""The int16 ops of edgelstm's GRU / RNN cell graphs (edgelstm/program/cellgraph.py), each on its own: the op-graph
kernels (kernels/ops_int8.py, through prepare()'s records) against the independent references in
tests/naive.py and against LiteRT itself, single-op .tflite files run by its reference, builtin (no delegates)
and default (XNNPACK) resolvers. The inputs reach every corner the ops have: all 65,536 int16 values for
LOGISTIC / TANH, accumulators placed on rounding ties for the conv, the int16 rails for ADD / SUB / MUL."""
import importlib

import numpy as np
import pytest

import naive
from edgelstm.program import layout as L
from edgelstm.ir.opgraph import OpGraph, validate_opgraph
from edgelstm.program.builder import Builder
from edgelstm.program.opgraph import _arena_offsets, prepare_record

litert = pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("tflite")
tt = importlib.import_module("export.to_tflite")
RESOLVERS = ("BUILTIN_REF", "BUILTIN", "AUTO")


def _graph(tensors, ops, params=None):
    """A validated int8 op graph whose tensors 0.. are free inputs (x is a 1-element int8 dummy)."""
    tensors = [[1, 1.0, 0, None, 8]] + [list(t) for t in tensors]
    p = {"w": np.zeros(0, np.int8), "w_scale": np.zeros(0, np.float32), "b": np.zeros(0, np.int32),
         "c": np.zeros(0, np.int8)}
    p.update(params or {})
    g = OpGraph(input_size=1, output_size=tensors[-1][0], quantized=True, tensors=tensors,
                ops=[[o[0], o[1] + 1, o[2] + 1 if o[2] >= 0 else -1, o[3] + 1, *o[4:]] for o in ops], x=0,
                y=len(tensors) - 1, n_w=p["w"].size, n_b=p["b"].size, n_ws=p["w_scale"].size, n_c=0)
    validate_opgraph(g, "test graph")
    return g, p


def _run_ours(g, params, inputs):
    """Run the graph's op records once with the kernels; inputs: {tensor (0-based, excl. dummy): values}."""
    from edgelstm.kernels.ops_int8 import _run_ops_int8
    b = Builder(np.int16, 0)
    rec, arena_n = prepare_record(b, g, params, 0)
    prog, blob = b.finish()
    wq = b.kernel_blob(blob)
    offs, _ = _arena_offsets(g)          # prepare_record's lifetime layout
    arena = np.zeros(arena_n + 64, np.int16)
    for i, v in inputs.items():
        arena[offs[i + 1]:offs[i + 1] + len(v)] = v
    _run_ops_int8(prog, wq, arena, rec[L.OG_OPS], rec[L.OG_NOPS], np.zeros(4096, np.int32))
    return arena[offs[g.y]:offs[g.y] + g.tensors[g.y][0]].astype(np.int64)


def _litert(build, feeds, resolver):
    g = tt._GraphBuilder()
    ins, out = build(g)
    it = litert.Interpreter(model_content=g.finish(ins, [out], True),
                            experimental_op_resolver_type=getattr(litert.OpResolverType, resolver))
    it.allocate_tensors()
    for d, v in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], np.asarray(v, d["dtype"]).reshape(d["shape"]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64).ravel()


ALL16 = np.arange(-32768, 32768, dtype=np.int64)


@pytest.mark.parametrize("fn", ["LOGISTIC", "TANH"])
@pytest.mark.parametrize("s_in", [3.1e-4, 1.7e-4, 1e-3, 5e-5, 4e-3, 2.0 ** -12 * 1.003, 2.0 ** -12, 2.0 ** -11])
def test_int16_logistic_tanh_on_every_input(fn, s_in):
    g, p = _graph([[65536, s_in, 0, None, 16], [65536, 2.0 ** -15, 0, None, 16]], [[fn, 0, -1, 1, 0, 0, 0, 0]])
    ours = _run_ours(g, p, {0: ALL16})
    assert np.array_equal(ours, np.asarray(naive.ref_op_act16(fn.lower(), ALL16, s_in)))

    def build(gb):
        x = gb.tensor("x", [1, 65536], np.int16, scale=s_in, zp=0)
        y = gb.tensor("y", [1, 65536], np.int16, scale=2.0 ** -15, zp=0)
        gb.op(fn, [x], [y], lambda b, T: (0, 0))
        return [x], y
    ref = _litert(build, [ALL16], "BUILTIN_REF")
    np.testing.assert_array_equal(ours, ref)
    pot = naive._ref_act16_params(s_in, fn == "TANH")[1] == 0
    for r in ("BUILTIN", "AUTO"):
        other = _litert(build, [ALL16], r)
        if pot:      # LiteRT's optimized kernels take gemmlowp's algorithm here: why cellgraph avoids these scales
            assert np.mean(other != ref) > 0.1, (r, s_in)
        else:
            np.testing.assert_array_equal(other, ref)


def _tie_cases(rng, s_in, s_out, n):
    """Per-channel weight scales and accumulators where single rounding with the 31-bit multiplier, the
    16-bit reduced multiplier and double-precision rounding give different integers."""
    from edgelstm.quant.multiplier import quantize_multiplier_checked as _qm_exact
    ws, acc = [], []
    while len(acc) < n:
        w = np.float32(rng.uniform(5e-4, 2e-2))
        eff = float(np.float32(s_in)) * float(w) / float(np.float32(s_out))
        m, s = _qm_exact(eff)
        m16 = (m + 2 ** 15) >> 16
        a = int(round((int(rng.integers(-30000, 30000)) + 0.5) / eff)) + int(rng.integers(-2, 3))
        r16 = (a * m16 + (1 << (14 - s))) >> (15 - s)
        r31 = (a * m + (1 << (30 - s))) >> (31 - s)
        if r16 != r31 and abs(r16) < 32767:
            ws.append(w)
            acc.append(a)
    return np.array(ws, np.float32), np.array(acc, np.int64)


def test_int16_conv_on_rounding_ties():
    """Zero inputs, so each output channel's accumulator is its bias, placed where the candidate roundings
    differ: the kernels, the reference and all three resolvers agree (LiteRT's int64
    MultiplyByQuantizedMultiplier with the multiplier reduced to 16 bits)."""
    rng = np.random.default_rng(3)
    n, k, s_in, s_out = 64, 8, 3.1e-4, 7.7e-4
    ws, acc = _tie_cases(rng, s_in, s_out, n)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    g, p = _graph([[k, s_in, 0, None, 16], [n, s_out, 0, None, 16]], [["CONV_2D", 0, -1, 1, 0, 0, 0, 0]],
                  {"w": w.ravel(), "w_scale": ws, "b": acc.astype(np.int32)})
    for x in (np.zeros(k, np.int64), rng.integers(-32768, 32768, k)):
        ours = _run_ours(g, p, {0: x})
        want = naive.ref_op_conv16(x, w, acc, s_in, ws, s_out)
        np.testing.assert_array_equal(ours, want)

        def build(gb):
            xt = gb.tensor("x", [1, 1, 1, k], np.int16, scale=s_in, zp=0)
            wt = gb.tensor("w", [n, 1, 1, k], np.int8, data=w.reshape(n, 1, 1, k), scale=ws,
                           zp=np.zeros(n, np.int64), qdim=0)
            bt = gb.tensor("b", [n], np.int64, data=acc, scale=np.float32(s_in) * ws, zp=np.zeros(n, np.int64),
                           qdim=0)
            yt = gb.tensor("y", [1, 1, 1, n], np.int16, scale=s_out, zp=0)
            gb.op("CONV_2D", [xt, wt, bt], [yt], tt._conv_options(0))
            return [xt], yt
        for r in RESOLVERS:
            np.testing.assert_array_equal(_litert(build, [x], r), ours, err_msg=r)


@pytest.mark.parametrize("op,act", [("ADD", 0), ("SUB", 0), ("MUL", 0), ("ADD", 1)])
@pytest.mark.parametrize("scales", [(4.1e-4, 2.3e-4, 5.3e-4), (2.0 ** -15, 2.0 ** -14, 2.0 ** -15),
                                    (3e-5, 3e-5, 1.1e-5)])
def test_int16_binary_ops(op, act, scales):
    rng = np.random.default_rng(len(op) + act)
    s_a, s_b, s_o = scales
    if op == "MUL":
        s_o = s_a * s_b * 300.0
    edge = np.array([-32768, -32767, -1, 0, 1, 32766, 32767])
    a = np.concatenate([np.repeat(edge, edge.size), rng.integers(-32768, 32768, 4000)])
    b = np.concatenate([np.tile(edge, edge.size), rng.integers(-32768, 32768, 4000)])
    n = a.size
    g, p = _graph([[n, s_a, 0, None, 16], [n, s_b, 0, None, 16], [n, s_o, 0, None, 16]],
                  [[op, 0, 1, 2, act, 0, 0, 0]])
    ours = _run_ours(g, p, {0: a, 1: b})
    lo = 0 if act else -32768
    if op == "MUL":
        want = naive.ref_op_mul(a, 0, s_a, b, 0, s_b, s_o, 0, lo, 32767)
    else:
        want = naive.ref_op_add(a, 0, s_a, b, 0, s_b, s_o, 0, subtract=op == "SUB", lo=lo, hi=32767, bits=16)
    np.testing.assert_array_equal(ours, want)

    def build(gb):
        at = gb.tensor("a", [1, n], np.int16, scale=s_a, zp=0)
        bt = gb.tensor("b", [1, n], np.int16, scale=s_b, zp=0)
        yt = gb.tensor("y", [1, n], np.int16, scale=s_o, zp=0)
        cls = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]

        def options(b, T):
            getattr(T, f"{cls}Start")(b)
            getattr(T, f"{cls}AddFusedActivationFunction")(b, act)
            if op != "MUL":
                getattr(T, f"{cls}AddPotScaleInt16")(b, False)
            return getattr(T.BuiltinOptions, cls), getattr(T, f"{cls}End")(b)
        gb.op(op, [at, bt], [yt], options)
        return [at, bt], yt
    for r in RESOLVERS:
        np.testing.assert_array_equal(_litert(build, [a, b], r), ours, err_msg=r)


def _mul_case_where_float32_ratio_matters(rng, bits):
    """(s_a, s_b, s_out, zero points, a, b): scales whose ratio s_a * s_b / s_out gives another QuantizeMultiplier in
    float32 than in double, and operands (int8: all 65,536 pairs; int16: 20,000 random) on which the two differ."""
    lo, hi = (-32768, 32767) if bits == 16 else (-128, 127)
    if bits == 8:
        a, b = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
    while True:
        s_a, s_b = (float(np.float32(v)) for v in rng.uniform(1e-5, 1e-3, 2) * (1 if bits == 16 else 100))
        s_o = float(np.float32(s_a * s_b * 2.0 ** (bits - 1) * rng.uniform(0.3, 1.0)))    # outputs mostly in range
        m32 = naive.ref_quantize_multiplier(naive._ref_mul_ratio(s_a, s_b, s_o))
        m64 = naive.ref_quantize_multiplier(s_a * s_b / s_o)
        if m32 == m64:
            continue
        zp = (0, 0, 0) if bits == 16 else tuple(int(v) for v in rng.integers(-20, 20, 3))
        if bits == 16:
            a, b = rng.integers(lo, hi + 1, 20000), rng.integers(lo, hi + 1, 20000)
        p = (a - zp[0]) * (b - zp[1])
        if np.any(naive.vmbqm(p, *m32) != naive.vmbqm(p, *m64)):
            return s_a, s_b, s_o, zp, a, b


@pytest.mark.parametrize("bits", [16, 8])
def test_mul_multiplier_is_computed_from_the_float32_ratio(bits):
    """LiteRT's MUL Prepare computes input1 scale * input2 scale / output scale on the tensors' float scales, so in
    float32, and widens the result to double for QuantizeMultiplier (measured here; a GRU's r * (W_hn h + b_hn) hit
    it in a 1,000-step stream). Cases where the double ratio would give other outputs: LiteRT and the op-graph
    kernels give the float32 ratio's."""
    rng = np.random.default_rng(bits)
    lo, hi = (-32768, 32767) if bits == 16 else (-128, 127)
    dt = np.int16 if bits == 16 else np.int8
    for _ in range(3):
        s_a, s_b, s_o, (zp_a, zp_b, zp_o), a, b = _mul_case_where_float32_ratio_matters(rng, bits)
        n = a.size
        g, p = _graph([[n, s_a, zp_a, None, bits], [n, s_b, zp_b, None, bits], [n, s_o, zp_o, None, bits]],
                      [["MUL", 0, 1, 2, 0, 0, 0, 0]])
        ours = _run_ours(g, p, {0: a, 1: b})
        np.testing.assert_array_equal(ours, naive.ref_op_mul(a, zp_a, s_a, b, zp_b, s_b, s_o, zp_o, lo, hi))

        def build(gb):
            at = gb.tensor("a", [1, n], dt, scale=s_a, zp=zp_a)
            bt = gb.tensor("b", [1, n], dt, scale=s_b, zp=zp_b)
            yt = gb.tensor("y", [1, n], dt, scale=s_o, zp=zp_o)

            def options(bb, T):
                T.MulOptionsStart(bb)
                T.MulOptionsAddFusedActivationFunction(bb, 0)
                return T.BuiltinOptions.MulOptions, T.MulOptionsEnd(bb)
            gb.op("MUL", [at, bt], [yt], options)
            return [at, bt], yt
        # int16 MUL is not delegated; XNNPACK requantizes int8 MUL its own way (tests/test_tflite_cells.py)
        for r in RESOLVERS if bits == 16 else ("BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            np.testing.assert_array_equal(_litert(build, [a, b], r), ours, err_msg=r)


def test_int16_to_int8_quantize():
    rng = np.random.default_rng(5)
    x = np.concatenate([[-32768, -32767, -1, 0, 1, 32767], rng.integers(-32768, 32768, 6000)])
    for s_in, s_out, zp in ((2.0 ** -15, 0.0078, 3), (3.3e-4, 0.05, -20), (1e-5, 0.002, 0)):
        g, p = _graph([[x.size, s_in, 0, None, 16], [x.size, s_out, zp, None, 8]], [["QUANTIZE", 0, -1, 1, 0, 0, 0, 0]])
        ours = _run_ours(g, p, {0: x})
        np.testing.assert_array_equal(ours, naive.ref_op_requantize(x, 0, s_in, s_out, zp))

        def build(gb):
            xt = gb.tensor("x", [1, x.size], np.int16, scale=s_in, zp=0)
            yt = gb.tensor("y", [1, x.size], np.int8, scale=s_out, zp=zp)
            gb.op("QUANTIZE", [xt], [yt], lambda b, T: (0, 0))
            return [xt], yt
        for r in RESOLVERS:
            np.testing.assert_array_equal(_litert(build, [x], r), ours, err_msg=r)


def test_op_graph_layer_with_int16_state_keeps_it_int16(tmp_path):
    """An int16 cell graph as an explicit op-graph layer (what a saved or hand-built graph is): its state reads
    and writes as int16 (not truncated to int8), equals the GRU layer's own state, survives state_to_float /
    state_from_float and save / load, and streams identically to the GRU it came from."""
    import edgelstm as el
    from edgelstm.program.cellgraph import cell_graph
    from edgelstm.ir.model import ModelSpec
    from edgelstm.quant.params import QuantParams
    rng = np.random.default_rng(9)
    X = np.cumsum(rng.standard_normal((1, 200, 3)), axis=1).astype(np.float32)
    q = el.quantize(el.Model(el.random_model([{"kind": "gru", "hidden_size": 8}], input_size=3, seed=1)),
                    calibration=X * 0.3, progress=False)
    g, p = cell_graph(q.spec.layers[0], q.quant.layers[0][0], q.quant.act[0], q.quant.act[1])
    m = el.Model(ModelSpec(layers=[g], has_weights=False), QuantParams(act=list(q.quant.act), layers=[[p]]))
    s_gru, s_ops = q.stream(), m.stream()
    np.testing.assert_array_equal(s_ops.step_many(X[0]), s_gru.step_many(X[0]))
    st = s_ops.state
    assert st[0][0]["s0"].dtype == np.int16 and np.abs(st[0][0]["s0"].astype(np.int64)).max() > 127
    np.testing.assert_array_equal(st[0][0]["s0"], s_gru.state[0][0]["h"])
    np.testing.assert_array_equal(m.state_from_float(m.state_to_float(st))[0][0]["s0"], st[0][0]["s0"])
    el.save(m, tmp_path / "g.elstm")
    s_back = el.load(tmp_path / "g.elstm").stream()
    s_back.state = st
    np.testing.assert_array_equal(s_back.step(X[0, 0]), s_ops.step(X[0, 0]))

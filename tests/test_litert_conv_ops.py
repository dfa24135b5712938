"""How LiteRT (ai-edge-litert 2.3) computes the int8 ops a conv front end exports to, on its three resolvers:
reference (BUILTIN_REF), builtin without delegates (BUILTIN_WITHOUT_DEFAULT_DELEGATES, "opt") and default
(AUTO: XNNPACK). Single-op .tflite files (tests/litert_ops.py) run on random inputs and on inputs crafted onto
rounding ties, each resolver compared bit for bit with its own formula in tests/naive.py; where resolvers differ,
the test asserts that they do (the crafted cases would lose their point otherwise). Findings and counts:
docs/litert_conv_measurements.md; `python bench/litert_conv_resolvers.py` prints the counts on random layers."""
import numpy as np
import pytest

import naive

pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("tflite")
import litert_ops as lo  # noqa: E402

RES = ("ref", "opt", "xnn")
X256 = np.arange(-128, 128).reshape(256, 1)      # every int8 value once: with w = 1, 256 consecutive accumulators


def _conv_all(kw, x):
    """Run one conv model on the three resolvers; check each against its formula; return the outputs."""
    model = lo.conv_model(length=x.shape[0], **kw)
    ys = {}
    for r in RES:
        y, delegated = lo.run(model, [x], r)
        assert delegated == (r == "xnn"), r                       # XNNPACK takes every conv shape tried here
        ys[r] = y.reshape(-1, kw["w"].shape[0])
        want = naive.ref_conv1d_int8(x, resolver=r, **{k: v for k, v in kw.items() if k != "length"})
        np.testing.assert_array_equal(ys[r], want, err_msg=r)
    return ys


@pytest.mark.parametrize("case", range(8))
def test_conv_random_layers_equal_each_resolvers_formula(case):
    rng = np.random.default_rng(case)
    dm = None if case < 4 else [1, 2, 3, 1][case - 4]
    C = int(rng.integers(1, 9))
    O = C * dm if dm else int(rng.integers(4, 40))
    K, stride, dilation = int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    w = rng.integers(-127, 128, (O, K) if dm else (O, K, C))
    x = rng.integers(-128, 128, (300, C))
    s_in, zp_in = float(rng.uniform(0.01, 0.1)), int(rng.integers(-30, 30))
    ws = rng.uniform(1e-3, 2e-2, O).astype(np.float32)
    b = rng.integers(-20000, 20000, O)
    acc = naive.ref_conv_acc(x, zp_in, w, b, stride=stride, dilation=dilation, depth_multiplier=dm)
    s_out = float(np.std(acc * (s_in * ws)) / 40)                       # outputs spread over the int8 range
    act = ["none", "relu", "relu6", "none"][case % 4]
    _conv_all(dict(w=w, b=b, s_in=s_in, zp_in=zp_in, w_scale=ws, s_out=s_out, zp_out=int(rng.integers(-20, 20)),
                   act=act, stride=stride, dilation=dilation, depth_multiplier=dm), x)


@pytest.mark.parametrize("differ", [("ref", "opt"), ("ref", "single"), ("ref", "xnn"), ("single", "xnn")])
@pytest.mark.parametrize("dm", [None, 128])
def test_conv_on_crafted_ties(differ, dm):
    """128 output channels, each with a weight scale and bias that put one accumulator where two candidate
    requantizations disagree, swept over 256 neighbouring accumulators (w = 1, x = every int8 value)."""
    rng = np.random.default_rng([ord(c) for c in "".join(differ)])
    s_in, zp_in, s_out, zp_out = 0.037, 5, 0.11, -3
    ws, acc = lo.tie_cases(rng, s_in=s_in, s_out=s_out, zp_out=zp_out, n=128, differ=differ)
    w = np.ones((128, 1) if dm else (128, 1, 1), np.int64)
    ys = _conv_all(dict(w=w, b=acc, s_in=s_in, zp_in=zp_in, w_scale=ws, s_out=s_out, zp_out=zp_out,
                        depth_multiplier=dm), X256)
    if "single" not in differ:                          # the crafted points do separate those two resolvers
        assert np.sum(ys[differ[0]] != ys[differ[1]]) >= 128


def test_conv_on_exact_ties():
    """Dyadic effective scales (s_in = s_out = 1/2, w_scale = odd * 2^-k): exact half-integer outputs, positive and
    negative. ref rounds them away from zero, opt up (toward +inf), XNNPACK to even."""
    ws = (np.tile(np.arange(1, 16, 2), 8) * 2.0 ** -np.repeat(np.arange(3, 11), 8)).astype(np.float32)
    b = np.random.default_rng(1).integers(-3000, 3000, ws.size)
    ys = _conv_all(dict(w=np.ones((ws.size, 1, 1)), b=b, s_in=0.5, zp_in=0, w_scale=ws, s_out=0.5, zp_out=0), X256)
    acc = naive.ref_conv_acc(X256, 0, np.ones((ws.size, 1, 1)), b)
    half = (acc * (0.5 * ws.astype(np.float64) / 0.5)) % 1 == 0.5
    unclipped = np.abs(acc * ws) < 127
    neg, pos = half & unclipped & (acc < 0), half & unclipped & (acc > 0)
    assert neg.sum() > 40 and pos.sum() > 40
    assert np.all(ys["ref"][neg] == ys["opt"][neg] - 1)              # away vs up on negative ties
    assert np.all(ys["ref"][pos] == ys["opt"][pos])
    assert np.all(ys["xnn"][half & unclipped] % 2 == 0)                # to even


def test_depthwise_opt_blocks_of_eight_channels():
    """Optimized DEPTHWISE_CONV_2D requantizes channels in blocks of 8 with emulated NEON (ties up), the O % 8
    last channels with the scalar MultiplyByQuantizedMultiplier (ties away)."""
    rng = np.random.default_rng(4)
    for O in (12, 20):
        ws, acc = lo.tie_cases(rng, s_in=0.037, s_out=0.11, zp_out=-3, n=O, differ=("ref", "opt"))
        ys = _conv_all(dict(w=np.ones((O, 1)), b=acc, s_in=0.037, zp_in=5, w_scale=ws, s_out=0.11, zp_out=-3,
                            depth_multiplier=O), X256)
        differs = np.any(ys["ref"] != ys["opt"], axis=0)
        assert differs[:O // 8 * 8].all() and not differs[O // 8 * 8:].any()


@pytest.mark.parametrize("zp_out", [0, 1, -7])
def test_relu6_clamp_on_a_half(zp_out):
    """s_out with 6 / s_out = 48.5 in float32: LiteRT clamps at zp + 49 (half away), XNNPACK at
    lrintf(48.5 + zp) (to even): one lower when zp is even."""
    rng = np.random.default_rng(6)
    s_out = np.float32(12 / 97)
    assert np.float32(6) / s_out == np.float32(48.5)
    O = 32
    kw = dict(w=rng.integers(-127, 128, (O, 1, 1)), b=rng.integers(-30000, 30000, O), s_in=0.05, zp_in=0,
              w_scale=rng.uniform(1e-3, 2e-2, O).astype(np.float32), s_out=s_out, zp_out=zp_out, act="relu6")
    ys = _conv_all(kw, X256)
    top = ys["ref"] == zp_out + 49
    assert top.sum() > 100
    assert np.all(ys["xnn"][top] == zp_out + (48 if zp_out % 2 == 0 else 49))


def test_conv_large_accumulators_and_left_shifts():
    """|acc| of 2^24..2^31 near ties (XNNPACK rounds float32(acc) first); effective scales 40..255 (left shifts:
    ref and opt wrap acc << shift to int32, XNNPACK saturates); an accumulator that wraps int32 (all wrap)."""
    rng = np.random.default_rng(7)
    ws = rng.uniform(1e-5, 2e-5, 400000).astype(np.float32)
    scale = naive.ref_xnn_conv_scale(1e-3, ws, 0.5)
    acc = np.floor((rng.integers(-100, 100, ws.size) + 0.5) / scale.astype(np.float64)).astype(np.int64)
    pick = np.nonzero(naive.ref_requant_xnn(acc, scale) != np.rint(acc * scale.astype(np.float64)))[0][:64]
    ys = _conv_all(dict(w=np.ones((64, 1, 1)), b=acc[pick], s_in=1e-3, zp_in=0, w_scale=ws[pick], s_out=0.5,
                        zp_out=0), X256)
    assert np.sum(ys["ref"] != ys["xnn"]) > 1000
    for eff in (40.0, 255.0):
        ws = (eff * rng.uniform(0.9, 1.0, 16)).astype(np.float32)
        b = rng.integers(-2 ** 31 + 200, 2 ** 31 - 200, 16) // 2 ** rng.integers(0, 31, 16)
        ys = _conv_all(dict(w=np.ones((16, 1, 1)), b=b, s_in=0.5, zp_in=0, w_scale=ws, s_out=0.5, zp_out=0), X256)
        assert np.sum(ys["ref"] != ys["xnn"]) > 100
    _conv_all(dict(w=np.full((8, 1, 1), 127), b=np.full(8, 2 ** 31 - 1000), s_in=1e-2, zp_in=0,
                   w_scale=np.full(8, 1e-3, np.float32), s_out=1e3, zp_out=0), X256)


def _prepare_error(model, resolver):
    it = lo.litert.Interpreter(model_content=model, experimental_op_resolver_type=getattr(
        lo.litert.OpResolverType, lo.RESOLVERS[resolver]))
    with pytest.raises(RuntimeError) as e:
        it.allocate_tensors()
    return str(e.value)


def test_conv_prepare_refusals():
    """What Prepare refuses: CONV_2D weight zero points != 0 (every resolver); an effective scale >= 256 (XNNPACK:
    the DEFAULT interpreter then fails to load, it does not fall back). DEPTHWISE_CONV_2D accepts and ignores
    weight zero points (XNNPACK declines the node). A DEPTHWISE_CONV_2D without bias crashes the opt and default
    resolvers (segfault, not run here): an exporter must always write the bias."""
    rng = np.random.default_rng(8)
    kw = dict(length=10, w=rng.integers(-127, 128, (4, 3, 2)), b=rng.integers(-99, 99, 4), s_in=0.05, zp_in=0,
              w_scale=rng.uniform(0.01, 0.02, 4).astype(np.float32), s_out=1e-6, zp_out=0)
    assert "failed to create XNNPACK runtime" in _prepare_error(lo.conv_model(**kw), "xnn")
    for r in ("ref", "opt"):                                            # no check there: outputs saturate
        assert set(np.unique(lo.run(lo.conv_model(**kw), [rng.integers(-128, 128, (10, 2))], r)[0])) <= {-128, 127}
    g = lo.tt._GraphBuilder()
    x = g.tensor("x", [1, 1, 10, 2], np.int8, scale=np.float32(0.05), zp=0)
    wt = g.tensor("w", [4, 1, 3, 2], np.int8, data=np.ones((4, 1, 3, 2), np.int8), scale=np.full(4, 0.01, np.float32),
                  zp=np.ones(4, np.int64), qdim=0)
    bt = g.tensor("b", [4], np.int32, data=np.zeros(4, np.int32), scale=np.full(4, 5e-4, np.float32),
                  zp=np.zeros(4, np.int64))
    y = g.tensor("y", [1, 1, 8, 4], np.int8, scale=np.float32(0.1), zp=0)
    g.op("CONV_2D", [x, wt, bt], [y], lo.tt._conv_options(0))
    for r in RES:
        assert "zero_point" in _prepare_error(g.finish([x], [y], True), r)


def test_pad_mirror_pad_concatenation():
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (7, 3))
    for zp in (5, -128):
        m = lo.pad_model(length=7, channels=3, left=2, right=3, s_in=0.1, zp_in=zp)
        for r in RES:
            y, delegated = lo.run(m, [x], r)
            np.testing.assert_array_equal(y.reshape(-1, 3), naive.ref_pad_int8(x, 2, 3, zp_out=zp), err_msg=r)
            assert delegated == (r == "xnn")
    # other output quantization: the body is copied raw, padding = the output zp (ref / opt); XNNPACK refuses
    m = lo.pad_model(length=7, channels=3, left=2, right=3, s_in=0.1, zp_in=17, s_out=0.2, zp_out=-3)
    for r in ("ref", "opt"):
        np.testing.assert_array_equal(lo.run(m, [x], r)[0].reshape(-1, 3), naive.ref_pad_int8(x, 2, 3, zp_out=-3))
    assert "failed to delegate PAD" in _prepare_error(m, "xnn")
    for left, right in ((3, 2), (6, 6)):                                # REFLECT: pads up to length - 1
        m = lo.pad_model(length=7, channels=3, left=left, right=right, s_in=0.1, zp_in=4, mode="reflect")
        for r in RES:
            y, delegated = lo.run(m, [x], r)
            want = naive.ref_pad_int8(x, left, right, zp_out=4, mode="reflect")
            np.testing.assert_array_equal(y.reshape(-1, 3), want)
            assert not delegated
    assert "paddings must be no greater" in _prepare_error(
        lo.pad_model(length=7, channels=3, left=7, right=0, s_in=0.1, zp_in=4, mode="reflect"), "ref")
    assert "scale" in _prepare_error(lo.pad_model(length=7, channels=3, left=1, right=1, s_in=0.1, zp_in=4,
                                                  s_out=0.2, zp_out=4, mode="reflect"), "ref")
    for axis in (3, 2):
        xs = [rng.integers(-128, 128, (4, n) if axis == 3 else (n, 1)) for n in (3, 5)]
        m = lo.concat_model(sizes=(3, 5), quants=[(0.1, 3)] * 2, out_quant=(0.1, 3), axis=axis)
        for r in RES:
            y, delegated = lo.run(m, xs, r)
            np.testing.assert_array_equal(y.ravel(), np.concatenate(xs, axis=1 if axis == 3 else 0).ravel())
            assert delegated == (r == "xnn")
        for quants, out in (([(0.1, 3), (0.2, 3)], (0.1, 3)), ([(0.1, 3)] * 2, (0.1, 4))):   # unequal: refused
            for r in RES:
                _prepare_error(lo.concat_model(sizes=(3, 5), quants=quants, out_quant=out, axis=axis), r)


def test_relu_relu6_multiplier_is_a_float32_ratio():
    """RELU / RELU6 int8: all three resolvers take QuantizeMultiplier(float32(s_in / s_out)), not the double ratio
    QUANTIZE uses (nor edgelstm's quant.ops_prepare.prepare_requantize). Quantization pairs are searched where the
    two ratios give different outputs."""
    rng = np.random.default_rng(10)
    f32, q = np.float32, np.arange(-128, 128)
    s_in = (10 ** rng.uniform(-3, 0, 40000)).astype(f32)
    s_out = (s_in * 10 ** rng.uniform(-1.2, 1.2, 40000)).astype(f32)
    d = np.arange(1, 256)[:, None]                              # q - zp_in, with zp_in = zp_out = -128
    m32, m64 = (lo.quantize_multipliers(r) for r in ((s_in / s_out).astype(np.float64),
                                                     s_in.astype(np.float64) / s_out.astype(np.float64)))
    keep = np.nonzero(m32[0] != m64[0])[0]                      # pairs whose multipliers differ at all
    s_in, s_out = s_in[keep], s_out[keep]
    v32, v64 = (naive.vmbqm(d, m[0][keep], m[1][keep]) for m in (m32, m64))
    hit = np.nonzero(np.any((v32 != v64) & (v32 <= 255), axis=0))[0][:6]
    assert hit.size == 6
    cases = [(0.05, 3, 0.05, 3), (0.1, 10, 0.03, -100), (0.02, 0, float(f32(12 / 97)), 0)]
    cases += [(s_in[i], -128, s_out[i], -128) for i in hit]
    for op in ("RELU", "RELU6"):
        for s_i, zp_in, s_o, zp_out in cases:
            m = lo.unary_model(op, n=256, s_in=s_i, zp_in=zp_in, s_out=s_o, zp_out=zp_out)
            want = naive.ref_op_relu_int8(q, zp_in=zp_in, s_in=s_i, zp_out=zp_out, s_out=s_o, act=op.lower())
            for r in RES:
                y, delegated = lo.run(m, [q], r)
                np.testing.assert_array_equal(y.ravel(), want, err_msg=f"{op} {r}")
                assert not delegated
    # edgelstm's op-graph RELU (converter graphs) takes the float32 ratio too: its kernel equals LiteRT's here
    from test_int16_ops import _graph, _run_ours
    for s_i, zp_in, s_o, zp_out in cases:
        g, p = _graph([[256, float(s_i), zp_in, None, 8], [256, float(s_o), zp_out, None, 8]],
                      [["RELU", 0, -1, 1, 0, 0, 0, 0]])
        np.testing.assert_array_equal(_run_ours(g, p, {0: q}), naive.ref_op_relu_int8(
            q, zp_in=zp_in, s_in=s_i, zp_out=zp_out, s_out=s_o, act="relu"))
    # the double ratio would have been wrong on these (RELU: no upper clamp hides it)
    for i in hit:
        dbl = np.clip(v64[:, i] - 128, -128, 127)
        f32_ratio = naive.ref_op_relu_int8(d[:, 0] - 128, zp_in=-128, s_in=s_in[i], zp_out=-128, s_out=s_out[i])
        assert np.any(dbl != f32_ratio)


def test_logistic_tanh_int8_lut():
    rng = np.random.default_rng(11)
    q = np.arange(-128, 128)
    for op, (s_out, zp_out) in (("LOGISTIC", (1 / 256, -128)), ("TANH", (1 / 128, 0))):
        for _ in range(40):
            s_in, zp_in = float(np.float32(10 ** rng.uniform(-3, -0.5))), int(rng.integers(-128, 128))
            m = lo.unary_model(op, n=256, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=zp_out)
            want = naive.ref_op_lut(op.lower(), q, zp_in, s_in, s_out, zp_out)
            for r in RES:
                y, delegated = lo.run(m, [q], r)
                np.testing.assert_array_equal(y.ravel(), want, err_msg=f"{op} {r}")
                assert delegated == (r == "xnn")


def _near_ties(rng, s, n=3000):
    base = ((rng.integers(-127, 127, n) + 0.5) * float(s)).astype(np.float32)
    return np.concatenate([np.nextafter(base, -np.inf, dtype=np.float32), base,
                           np.nextafter(base, np.inf, dtype=np.float32)]).astype(np.float32)


def test_quantize_float_to_int8():
    rng = np.random.default_rng(12)
    f32 = np.float32
    cases = [(f32(0.25), 0, ((np.arange(-130, 130) + 0.5) * 0.25).astype(f32)),             # exact ties
             (f32(0.25), 3, ((np.arange(-130, 129) + 0.5) * 0.25).astype(f32)),             # + a tail of 3
             (f32(0.0371), -5, _near_ties(rng, f32(0.0371))), (f32(12 / 97), -5, _near_ties(rng, f32(12 / 97))),
             (f32(0.0371), 7, rng.normal(0, 3, 20001).astype(f32))]
    for s, zp, v in cases:
        m = lo.quantize_model(n=v.size, s_out=s, zp_out=zp)
        ys = {}
        for r in RES:
            ys[r], delegated = lo.run(m, [v], r)
            np.testing.assert_array_equal(ys[r].ravel(), naive.ref_quantize_f32(v, s=s, zp=zp, resolver=r), err_msg=r)
            assert delegated == (r == "xnn")
        if zp == 0:                                      # exact ties: half of them round differently
            assert np.sum(ys["ref"] != ys["xnn"]) == 128


def test_magnitude_chain_exhaustive():
    """Every (a, b) int8 pair through DEQUANTIZE, MUL, MUL, ADD, SQRT, QUANTIZE: ref and opt equal their formulas
    exactly; XNNPACK's approximate SQRT moves a handful of outputs off the exact-sqrt formula."""
    qa, qb = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))
    off = 0
    quants = ((0.0371, 3, 0.061, -100), (0.1, 0, 12 / 97, -120), (0.0040182234, 7, 0.0064181136, -128))
    for s_in, zp_in, s_out, zp_out in quants:
        m = lo.magnitude_model(n=qa.size, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=zp_out)
        for r in RES:
            y, delegated = lo.run(m, [qa, qb], r)
            want = naive.ref_magnitude_int8(qa, qb, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=zp_out, resolver=r)
            assert delegated == (r == "xnn")
            if r == "xnn":
                off += int(np.sum(y.ravel() != want))
                assert np.abs(y.ravel() - want).max() <= 1
            else:
                np.testing.assert_array_equal(y.ravel(), want, err_msg=r)
    assert off <= 20


def test_dequantize_opt_blocks():
    """Optimized DEQUANTIZE int8 (blocks of 8): float32(q * s) + float32(-zp * s), two roundings; the tail and
    the other resolvers float32(double(s) * (q - zp))."""
    rng = np.random.default_rng(13)
    q = rng.integers(-128, 128, 100003)
    for s, zp in ((0.0040182234, 7), (0.013, -7), (0.05, 0)):
        g = lo.tt._GraphBuilder()
        x = lo._q(g, "x", [1, q.size], s, zp)
        y = g.tensor("y", [1, q.size], np.float32)
        g.op("DEQUANTIZE", [x], [y], lambda b, T: (0, 0))
        m = g.finish([x], [y], True)
        ys = {r: lo.run(m, [q], r)[0].ravel().astype(np.float32) for r in RES}
        for r in RES:
            np.testing.assert_array_equal(ys[r], naive.ref_dequantize_int8(q, s=s, zp=zp, resolver=r), err_msg=r)
        assert (np.sum(ys["ref"] != ys["opt"]) > 0) == (zp != 0)


@pytest.mark.parametrize("differ,n", [(("opt", "single"), 128), (("xnn", "single"), 128), (("fc_ref", "single"), 6)])
def test_fully_connected_per_resolver(differ, n):
    """Side finding (README's Dense contract says single rounding on both resolvers): FULLY_CONNECTED int8
    per-channel rounds in double on the reference resolver, with ruy's ties-up double rounding on opt, in float32
    on XNNPACK. On crafted ties single rounding is none of them (the reference's double differs from it only where
    the 31-bit multiplier's own rounding decides: rare, so few channels)."""
    rng = np.random.default_rng(len(differ[0]))
    s_in, zp_in, s_out, zp_out = 0.037, 5, 0.11, -3
    ws, acc = lo.tie_cases(rng, s_in=s_in, s_out=s_out, zp_out=zp_out, n=n, differ=differ)
    model = lo.fc_model(w=np.ones((n, 1)), b=acc, s_in=s_in, zp_in=zp_in, w_scale=ws, s_out=s_out, zp_out=zp_out,
                        batch=256)
    A = naive.vwrap32(acc[None, :] + (X256 - zp_in))
    m, s = naive.ref_conv_multipliers(s_in, ws, s_out)
    want = {"ref": naive.ref_fc_requant_ref(A, s_in, ws, s_out), "opt": naive.ref_mbqm_up(A, m, s),
            "xnn": naive.ref_requant_xnn(A, naive.ref_xnn_conv_scale(s_in, ws, s_out))}
    single = np.clip(((A * m + (np.int64(1) << (30 - s))) >> (31 - s)) + zp_out, -128, 127)
    for r in RES:
        y, delegated = lo.run(model, [X256], r)
        y = y.reshape(256, n)
        np.testing.assert_array_equal(y, np.clip(want[r] + zp_out, -128, 127), err_msg=r)
        assert delegated == (r == "xnn")
        if r == {"fc_ref": "ref"}.get(differ[0], differ[0]):
            assert np.sum(y != single) >= n

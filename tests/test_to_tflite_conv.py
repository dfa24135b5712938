"""to_tflite for CNN + RNN hybrids: the conv front-end layer kinds (conv1d with every option, pad, magnitude,
activation, context) + LSTM / GRU + Dense, checked in LiteRT itself (tests/litert_hybrid.py drives it).

int8: 1,000-step streams (random walks 2.5x louder than the calibration, so the front end and the state saturate)
with the context and every recurrent state fed back: LiteRT's reference resolver gives edgelstm's integers, outputs
and final states, in mode="step" and in sequence files (resizable T for LSTM models, frames= for GRU ones). The
two other resolvers run each layer on edgelstm's input to it: every conv output equals the per-resolver formula
of tests/naive.py (docs/litert_conv_measurements.md), every other front-end op equals edgelstm exactly, the magnitude
and the Dense / GRU ops stay within 1 LSB. Float32: within 1e-5 of edgelstm's float run and of PyTorch.
"""
import numpy as np
import pytest

pytest.importorskip("tflite")
pytest.importorskip("flatbuffers")
litert = pytest.importorskip("ai_edge_litert.interpreter")

import edgelstm as el  # noqa: E402
from edgelstm.data import AUDIO_CALIBRATION, AUDIO_MODEL  # noqa: E402
from edgelstm.export import to_tflite  # noqa: E402

import litert_hybrid as lh  # noqa: E402
from test_frontend import _front_end_only, _torch_front_end, random_front_end  # noqa: E402

STEPS, CHUNK, FRAMES = 1000, 37, 50

# every option of every front-end kind, in two hand-written front ends (the random ones of the slow sweep draw them)
EVERY_OPTION = {
    "conv_stack": (16, [
        {"kind": "context", "context": 5},                          # K < F: the stream frames hold filler
        {"kind": "pad", "length": 21, "channels": 1, "left": 2, "right": 1, "mode": "reflect"},
        {"kind": "conv1d", "length": 24, "in_channels": 1, "out_channels": 8, "kernel_size": 3, "stride": 2,
         "pad_left": 1, "pad_right": 1, "activation": "relu6"},     # -> (12, 8)
        {"kind": "conv1d", "length": 12, "in_channels": 8, "out_channels": 16, "kernel_size": 3, "dilation": 2,
         "pad_left": 2, "pad_right": 2, "pad_mode": "reflect", "groups": 8, "activation": "sigmoid"},
        {"kind": "activation", "activation": "tanh"},
        {"kind": "magnitude", "length": 12, "channels": 8},         # -> (12, 8)
        {"kind": "activation", "activation": "relu"},
        {"kind": "pad", "length": 12, "channels": 8, "left": 1, "right": 0},
        {"kind": "conv1d", "length": 13, "in_channels": 8, "out_channels": 6, "kernel_size": 2, "activation": "tanh"},
        {"kind": "conv1d", "length": 12, "in_channels": 6, "out_channels": 6, "kernel_size": 1, "groups": 6,
         "activation": "relu"},
        {"kind": "activation", "activation": "relu6"},
        {"kind": "activation", "activation": "sigmoid"},
        {"kind": "conv1d", "length": 12, "in_channels": 6, "out_channels": 4, "kernel_size": 3, "pad_right": 2}]),
    "long_context": (4, [
        {"kind": "context", "context": 10},                         # K > F, not a multiple: 3 frames of stream
        {"kind": "conv1d", "length": 14, "in_channels": 1, "out_channels": 2, "kernel_size": 3, "activation": "relu"},
        {"kind": "context", "context": 48},                         # K = 2 F
        {"kind": "conv1d", "length": 36, "in_channels": 2, "out_channels": 4, "kernel_size": 5, "stride": 3,
         "dilation": 2, "groups": 2, "activation": "tanh"}]),
}


def _every_option(name, recurrent, seed=0):
    frame, front = EVERY_OPTION[name]
    head = [{"kind": recurrent, "hidden_size": 16}, {"kind": "dense", "output_size": 3, "activation": "sigmoid"}]
    return frame, el.random_model(front + head, input_size=frame, seed=seed)


def _random(seed, recurrent):
    rng = np.random.default_rng(1000 + seed)
    while True:                      # streams with context: draw until the front end has one
        frame = int(rng.integers(8, 40))
        layers = random_front_end(rng, frame=frame, recurrent=recurrent)
        if any(layer["kind"] == "context" for layer in layers):
            return frame, el.random_model(layers, input_size=frame, seed=seed)


def _quantized(frame, spec, seed):
    """int8 model calibrated on a quiet walk, and the 1,000-step int8 input 2.5x louder."""
    rng = np.random.default_rng(seed)
    q = el.quantize(el.Model(spec), calibration=lh.walk(rng, 300, frame)[None] * 0.4, progress=False)
    Xq, _ = lh.quantize_input(q, lh.walk(rng, STEPS, frame) * 2.5)
    return q, Xq


def _file(q, path, mode, recurrent):
    """(path, frames per invoke) of a step file or a sequence file (resizable T; GRU: frames=)."""
    if mode == "step":
        to_tflite(q, path, mode="step")
        return 1
    to_tflite(q, path, frames=FRAMES if recurrent != "lstm" else None)
    return FRAMES if recurrent != "lstm" else CHUNK       # CHUNK does not divide STEPS: T is resized at the end


def _assert_states_equal(model, stream, litert_state):
    for k, layer in enumerate(model.spec.layers):
        ours = stream.state[k][0]
        names = {"context": {"ctx": f"ctx{k}"}, "lstm": {"h": f"h{k}", "c": f"c{k}"},
                 "gru": {"h": f"h{k}"}}.get(layer.kind, {})
        for n, ln in names.items():
            np.testing.assert_array_equal(ours[n], litert_state[ln], err_msg=f"layer {k} {n}")


def _assert_reference_identical(q, Xq, path, chunk):
    """LiteRT's reference resolver streaming the file over the int8 inputs Xq gives edgelstm's int8 outputs and
    final states; returns those outputs."""
    want, state = lh.litert_stream(path, Xq, "ref", chunk=chunk)
    s = q.stream()
    s_in, zp_in = q.quant.act[0]
    s_out, zp_out = q.quant.act[-1]
    got = np.round(s.step_many(((Xq.astype(np.float32) - zp_in) * np.float32(s_in)).astype(np.float32))
                   / np.float32(s_out)).astype(np.int64) + zp_out
    np.testing.assert_array_equal(got, want)
    _assert_states_equal(q, s, state)
    return want


def _reference_identical(frame, spec, seed, mode, recurrent, tmp_path):
    q, Xq = _quantized(frame, spec, seed)
    path = tmp_path / "hybrid.tflite"
    want = _assert_reference_identical(q, Xq, path, _file(q, path, mode, recurrent))
    assert np.ptp(want, axis=0).max() > 0                  # outputs that move (a dead file is not a test)
    return q, Xq


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("name", list(EVERY_OPTION))
def test_int8_every_option_identical_on_reference_resolver(name, recurrent, mode, tmp_path):
    frame, spec = _every_option(name, recurrent)
    _reference_identical(frame, spec, 3, mode, recurrent, tmp_path)


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
def test_int8_random_hybrid_identical_on_reference_resolver(recurrent, mode, tmp_path):
    frame, spec = _random(0, recurrent)
    _reference_identical(frame, spec, 0, mode, recurrent, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("seed", range(1, 25))
def test_int8_random_hybrid_identical_on_reference_resolver_sweep(seed, recurrent, mode, tmp_path):
    frame, spec = _random(seed, recurrent)
    _reference_identical(frame, spec, seed, mode, recurrent, tmp_path)


# what each layer kind may do on the optimized builtin ("opt") and XNNPACK ("xnn") resolvers, given edgelstm's input:
# conv: exactly the resolver's formula (naive.ref_conv1d_int8); these: identical, or within one LSB (why in the
# docs: the optimized int16 ADD rounds ties up inside a GRU; FULLY_CONNECTED opt = ruy, xnn = float32 requantization;
# XNNPACK's approximate SQRT)
_EXACT = ("pad", "context", "activation", "lstm")
_ONE_LSB = ("magnitude", "gru", "dense")


def _check_layers(q, Xq, *, saturated_front_end=False):
    rows = lh.layer_by_layer(q, Xq)
    assert np.mean(np.isin(Xq, (-128, 127))) > 0.1          # the input far past its calibrated range
    for k, row in enumerate(rows):
        where = f"layer {k} ({row['kind']})"
        assert row["ref"]["differ"] == 0, where
        for r in ("opt", "xnn"):
            if row[r]["formula"] is not None:
                assert row[r]["formula"], f"{where} on {r}: not the measured formula"
                if row["activation"] not in ("sigmoid", "tanh"):     # a rounding apart (a LUT may widen it)
                    assert row[r]["max_diff"] <= 1, f"{where} on {r}: {row[r]['max_diff']}"
            elif row["kind"] in _EXACT:
                assert row[r]["differ"] == 0, f"{where} on {r}"
            else:
                assert row["kind"] in _ONE_LSB and row[r]["max_diff"] <= 1, f"{where} on {r}: {row[r]}"
    if saturated_front_end:   # and some front-end layer's int8 values sit on the rails
        front = [row["edgelstm"] for row in rows if row["kind"] in ("conv1d", "depthwise", "magnitude")]
        assert max(np.mean(np.isin(v, (-128, 127))) for v in front) > 0.01
    return rows


@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("name", list(EVERY_OPTION))
def test_int8_every_option_other_resolvers_layer_by_layer(name, recurrent):
    frame, spec = _every_option(name, recurrent)
    _check_layers(*_quantized(frame, spec, 3), saturated_front_end=True)


@pytest.mark.slow
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("seed", range(25))
def test_int8_random_hybrid_other_resolvers_layer_by_layer_sweep(seed, recurrent):
    frame, spec = _random(seed, recurrent)
    _check_layers(*_quantized(frame, spec, seed))


def _max_rel_err(got, want):
    # float32 rounding scales with the value: 1e-5 relative where an unsquashed output exceeds 1
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


@pytest.mark.parametrize("resolver", ["ref", "xnn"])
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
@pytest.mark.parametrize("name", list(EVERY_OPTION))
def test_float_hybrid_streams_within_1e5(name, recurrent, mode, resolver, tmp_path):
    """Two float32 implementations (summation orders, XNNPACK's FMA and approximate SQRT / LOGISTIC) over 1,000
    recurrent steps: outputs and every state within 1e-5."""
    frame, spec = _every_option(name, recurrent)
    f = el.Model(spec)
    X = lh.walk(np.random.default_rng(4), STEPS, frame)
    chunk = _file(f, tmp_path / "f.tflite", mode, recurrent)
    want, state = lh.litert_stream(tmp_path / "f.tflite", X, resolver, chunk=chunk)
    s = f.stream()
    assert _max_rel_err(s.step_many(X), want) <= 1e-5
    for k, layer in enumerate(f.spec.layers):
        for n, a in s.state[k][0].items():
            assert _max_rel_err(a, state[f"{n}{k}"]) <= 1e-5, (k, n)


@pytest.mark.parametrize("name", list(EVERY_OPTION) + ["random0", "random1", "random2"])
def test_float_front_end_within_1e5_of_torch(name, tmp_path):
    """The front end alone, one sequence file over 1,000 frames in chunks (the context carried between invokes),
    against PyTorch's float64 conv1d / pad over the whole stream."""
    frame, spec = _every_option(name, "lstm") if name in EVERY_OPTION else _random(int(name[-1]), "lstm")
    front = el.Model(_front_end_only(spec))
    X = lh.walk(np.random.default_rng(5), STEPS, frame)
    to_tflite(front, tmp_path / "front.tflite")
    want, _ = lh.litert_stream(tmp_path / "front.tflite", X, "xnn", chunk=CHUNK)
    np.testing.assert_allclose(want, _torch_front_end(spec, X), rtol=1e-5, atol=1e-5)


def test_conv_scale_xnnpack_cannot_load_is_refused(tmp_path, monkeypatch):
    """A conv whose requantization scale s_in * w_scale / s_out reaches 256 is refused by name: written anyway,
    LiteRT's default interpreter cannot load the file (its reference interpreter can)."""
    import importlib

    from edgelstm.quant.params import QuantParams
    spec = el.random_model([{"kind": "conv1d", "out_channels": 4, "kernel_size": 3}, {"kind": "gru", "hidden_size": 4}],
                           input_size=8, seed=1)
    q, _ = _quantized(8, spec, 1)
    act = list(q.quant.act)
    ws = float(np.max(q.quant.layers[0][0]["w_scale"]))
    act[1] = (act[0][0] * ws / 300.0, act[1][1])           # an output range far too narrow for the conv
    bad = el.Model(q.spec, QuantParams(act=act, layers=q.quant.layers))
    path = tmp_path / "bad.tflite"
    with pytest.raises(el.ImportModelError, match=r"layer 0 \(conv1d\).*>= 256.*XNNPACK"):
        to_tflite(bad, path, mode="step")
    assert not path.exists()
    monkeypatch.setattr(importlib.import_module("edgelstm.export.to_tflite_frontend"), "XNN_MAX_CONV_SCALE", np.inf)
    to_tflite(bad, path, mode="step")
    ref = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    with pytest.raises(RuntimeError):
        litert.Interpreter(model_path=str(path)).allocate_tensors()


# ------------------------------------------------------------------------------------------------ from_tflite

@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("name", list(EVERY_OPTION) + ["random1", "random2"])
def test_our_exports_read_back_identically(name, mode, tmp_path):
    """from_tflite reads a hybrid's file back onto the layer kinds: whole runs and 300-step streams (the context
    carried) give the same outputs and states, float32 and int8. A Pad right before an unpadded conv reads back as
    the conv's padding, a conv followed by LOGISTIC / TANH as its fused activation: the same arithmetic."""
    from edgelstm.export import from_tflite
    frame, spec = _every_option(name, "lstm") if name in EVERY_OPTION else _random(int(name[-1]), "lstm")
    q, _ = _quantized(frame, spec, 3)
    X = lh.walk(np.random.default_rng(6), 300, frame) * 2.0
    for m in (el.Model(spec), q):
        to_tflite(m, tmp_path / "m.tflite", **({"mode": "step"} if mode == "step" else {}))
        back = from_tflite(tmp_path / "m.tflite")
        assert back.is_quantized == m.is_quantized
        if name == "long_context":          # nothing to merge: the same layers
            assert back.spec.describe() == m.spec.describe()
        np.testing.assert_array_equal(back.run(X), m.run(X))
        s, s_back = m.stream(), back.stream()
        np.testing.assert_array_equal(s_back.step_many(X), s.step_many(X))
        ctx = [k for k, layer in enumerate(m.spec.layers) if layer.kind == "context"]
        ctx_back = [k for k, layer in enumerate(back.spec.layers) if layer.kind == "context"]
        for k, kb in zip(ctx, ctx_back):
            np.testing.assert_array_equal(s_back.state[kb][0]["ctx"], s.state[k][0]["ctx"])


def test_gru_hybrid_files_are_refused_by_name(tmp_path):
    from edgelstm.export import from_tflite
    frame, spec = _every_option("long_context", "gru")
    q, _ = _quantized(frame, spec, 3)
    for kw, op in (({"mode": "step"}, "CAST"), ({"frames": 7}, "UNPACK")):
        to_tflite(q, tmp_path / "g.tflite", **kw)
        with pytest.raises(el.ImportModelError, match=f"unsupported operator {op}.*GRU / RNN cell graphs"):
            from_tflite(tmp_path / "g.tflite")


def _hand_built(kind):
    """Small float32 files the importer must refuse, each naming what it does not read."""
    import importlib
    tb = importlib.import_module("edgelstm.export.tflite_builder")
    g = tb._GraphBuilder()
    f32, i32 = np.float32, np.int32
    if kind == "wrong_context_state":          # the state output holds the FIRST K values, not the last
        x = g.tensor("x", [1, 1, 4], f32)
        ctx = g.tensor("ctx", [1, 1, 2], f32)
        out = g.tensor("out", [1, 1, 6], f32)
        nxt = g.tensor("ctx_next", [1, 1, 2], f32)
        g.op("CONCATENATION", [ctx, x], [out], tb._concat_options(2))
        consts = [g.tensor(n, [3], i32, data=np.array(v, i32)) for n, v in (("b", [0, 0, 0]), ("e", [1, 1, 2]),
                                                                            ("s", [1, 1, 1]))]
        g.op("STRIDED_SLICE", [out] + consts, [nxt], tb._strided_slice_options())
        w = g.tensor("w", [2, 1, 3, 1], f32, data=np.ones((2, 1, 3, 1), f32))     # a conv makes it a front end
        b = g.tensor("b", [2], f32, data=np.zeros(2, f32))
        v = g.tensor("v", [1, 1, 6, 1], f32)
        y = g.tensor("y", [1, 1, 4, 2], f32)
        g.op("RESHAPE", [out, g.tensor("shape", [4], i32, data=np.array([1, 1, 6, 1], i32))], [v], tb._act_options(""))
        g.op("CONV_2D", [v, w, b], [y], tb._conv_options(0))
        return g.finish([x, ctx], [y, nxt], False, in_names=["x", "ctx"], out_names=["y", "ctx"])
    x = g.tensor("x", [1, 1, 8, 2], f32)
    src = x
    if kind == "channel_padding":
        src = g.tensor("p", [1, 1, 8, 4], f32)
        g.op("PAD", [x, g.tensor("pads", [4, 2], i32, data=np.array([[0, 0], [0, 0], [0, 0], [1, 1]], i32))], [src],
             tb._pad_options(None))
    O = 3
    w = g.tensor("w", [O, 1, 3, g.tensors[src].shape[3]], f32, data=np.ones((O, 1, 3, g.tensors[src].shape[3]), f32))
    b = g.tensor("b", [O], f32, data=np.zeros(O, f32))
    y = g.tensor("y", [1, 1, 8 if kind == "same_padding" else 6, O], f32)
    if kind == "no_bias":                     # a depthwise conv without its bias (LiteRT's optimized kernels crash)
        y = g.tensor("y", [1, 1, 6, 2], f32)
        w = g.tensor("w", [1, 1, 3, 2], f32, data=np.ones((1, 1, 3, 2), f32))
        g.op("DEPTHWISE_CONV_2D", [x, w, -1], [y], tb._conv_options(0, depth_multiplier=1))
        return g.finish([x], [y], False)

    def same(bb, T):                                      # CONV_2D with SAME padding
        T.Conv2DOptionsStart(bb)
        T.Conv2DOptionsAddPadding(bb, T.Padding.SAME)
        T.Conv2DOptionsAddStrideW(bb, 1)
        T.Conv2DOptionsAddStrideH(bb, 1)
        return T.BuiltinOptions.Conv2DOptions, T.Conv2DOptionsEnd(bb)
    g.op("CONV_2D", [src, w, b], [y], same if kind == "same_padding" else tb._conv_options(0))
    return g.finish([x], [y], False)


@pytest.mark.parametrize("kind, match", [
    ("same_padding", "only VALID padding"), ("channel_padding", "only padding along the length"),
    ("no_bias", "without a bias"), ("wrong_context_state", "do not compute a context of 2 values")])
def test_hand_built_variants_are_refused_by_name(kind, match, tmp_path):
    from edgelstm.export import from_tflite
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(_hand_built(kind))
    if kind != "no_bias":           # files LiteRT loads (float convs without a bias it refuses itself)
        litert.Interpreter(model_path=str(path)).allocate_tensors()
    with pytest.raises(el.ImportModelError, match=match):
        from_tflite(path)


def test_bundled_tagger_identical_on_reference_resolver(tmp_path):
    """The bundled audio tagger (context + conv front end, LSTM, Dense) in LiteRT: the real log-mel frames of its
    six calibration scenes streamed as one sequence, then two of them 2.5x louder (the front end and the state
    saturate); outputs and final states equal edgelstm's int8 stream."""
    q = el.load(AUDIO_MODEL)
    X = np.load(AUDIO_CALIBRATION).astype(np.float32)
    X = np.concatenate([X.reshape(-1, X.shape[-1]), X[:2].reshape(-1, X.shape[-1]) * 2.5])
    Xq, _ = lh.quantize_input(q, X)
    path = tmp_path / "tagger.tflite"
    want = _assert_reference_identical(q, Xq, path, _file(q, path, "sequence", "lstm"))
    assert np.ptp(want, axis=0).min() > 0                  # every class's output moves

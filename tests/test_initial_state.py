"""A model's own initial state (``Model.initial_state``: ONNX initial_h / initial_c initializers) and the IR's
``reverse`` layers (ONNX direction="reverse"), through run / stream / reset, quantize, save / load and ONNX in and
out (onnxruntime as the peer)."""
import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import InputError, ModelError, StreamingError
from edgelstm.runtime import State

import naive

REVERSE = [{"kind": "lstm", "hidden_size": 6, "reverse": True},
           {"kind": "gru", "hidden_size": 5, "reverse": True, "reset_after": False},
           {"kind": "rnn", "hidden_size": 4, "reverse": True}, {"kind": "dense", "output_size": 3}]


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _batched(st, B):
    return State([[{n: np.repeat(a[None], B, 0) for n, a in dd.items()} for dd in layer] for layer in st])


# ------------------------------------------------------------------------------------------ reverse layers

def test_reverse_float_matches_reference_and_flipped_forward():
    spec = el.random_model(REVERSE[:1], input_size=4, seed=1)
    X, lengths = _data((3, 9, 4)), np.array([9, 4, 1])
    Y = el.Model(spec).run(X, lengths=lengths)
    Yr, _ = naive.ref_forward_f64(spec, X, lengths=lengths)
    np.testing.assert_allclose(Y, Yr, rtol=1e-5, atol=1e-6)  # float32 kernel vs float64 reference: rounding only
    fwd = el.random_model([{"kind": "lstm", "hidden_size": 6}], input_size=4, seed=1)
    Yf = el.Model(fwd).run(X[:1, ::-1].copy())
    np.testing.assert_array_equal(Y[0], Yf[0, ::-1])  # a reverse layer is the forward layer on flipped time


def test_reverse_layers_calibrate_backwards():
    """quantize observes a reverse layer running backwards: its ranges equal those of the forward twin fed
    the time-flipped calibration (they differed before: calibration ran reverse layers forwards)."""
    fwd_layers = [{k: v for k, v in d.items() if k != "reverse"} for d in REVERSE]
    rev = el.Model(el.random_model(REVERSE, input_size=4, seed=5))
    fwd = el.Model(el.random_model(fwd_layers, input_size=4, seed=5))
    X = _data((2, 30, 4), 6)
    qr = el.quantize(rev, calibration=X, progress=False)
    qf = el.quantize(fwd, calibration=X[:, ::-1].copy(), progress=False)
    assert qr.quant.act == qf.quant.act
    np.testing.assert_array_equal(qr.run(X), qf.run(X[:, ::-1].copy())[:, ::-1])


def test_reverse_layer_refuses_streaming_and_bidirectional():
    with pytest.raises(StreamingError):
        el.Model(el.random_model(REVERSE[:1], input_size=4)).stream()
    with pytest.raises(ModelError, match="reverse"):
        el.random_model([{"kind": "gru", "hidden_size": 3, "reverse": True, "bidirectional": True}], input_size=2)


def test_reverse_survives_save_and_load(tmp_path):
    m = el.Model(el.random_model(REVERSE, input_size=4, seed=3))
    el.save(m, tmp_path / "r.elstm")
    X = _data((2, 6, 4))
    np.testing.assert_array_equal(el.load(tmp_path / "r.elstm").run(X), m.run(X))


# ------------------------------------------------------------------------------------------ initial state

def _stateful_model(seed=4):
    spec = el.random_model([{"kind": "lstm", "hidden_size": 5}, {"kind": "gru", "hidden_size": 4},
                            {"kind": "dense", "output_size": 2}], input_size=3, seed=seed)
    m = el.Model(spec)
    init = m.zero_state()
    init[0][0]["h"] = _data(5, 7) * 0.5
    init[0][0]["c"] = _data(5, 8)
    init[1][0]["h"] = np.tanh(_data(4, 9))
    return m, init


def test_initial_state_drives_run_stream_and_reset():
    m, init = _stateful_model()
    X = _data((2, 6, 3), 9)
    expect = m.run(X, initial_state=_batched(init, 2))
    assert np.abs(expect - m.run(X)).max() > 1e-2  # the initial state matters for this input
    m.initial_state = init
    np.testing.assert_array_equal(m.run(X), expect)
    s = m.stream()
    got = np.stack([s.step(x).copy() for x in X[0]])
    np.testing.assert_allclose(got, expect[0], rtol=0, atol=1e-6)  # step vs run: same float32 kernels
    s.reset()
    np.testing.assert_allclose(s.step(X[0, 0]), expect[0, 0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(m.zero_state()[0][0]["h"], 0)  # zero_state stays zeros
    m.initial_state = None
    np.testing.assert_array_equal(m.run(X), m.run(X, initial_state=m.zero_state(batch=2)))


def test_initial_state_is_validated():
    m, init = _stateful_model()
    bad = init.copy()
    bad[0][0]["c"] = np.zeros(6, np.float32)
    with pytest.raises(InputError, match="c"):
        m.initial_state = bad
    bad = init.copy()
    bad[1][0]["h"] = np.full(4, np.nan, np.float32)
    with pytest.raises(InputError):
        m.initial_state = bad
    with pytest.raises(InputError):
        m.initial_state = [[{}]]
    assert m.initial_state is None  # nothing was set by the failed attempts


def test_quantize_calibrates_from_the_initial_state_and_is_bit_exact():
    m, init = _stateful_model()
    m.initial_state = init
    X = _data((2, 16, 3), 10)
    q = el.quantize(m, calibration=X, progress=False)
    assert q.initial_state is not None
    Yq = q.run(X)
    Yr, _ = naive.ref_forward_int8(q.spec, q.quant, X, initial_state=_batched(q.state_from_float(init), 2))
    np.testing.assert_array_equal(Yq, Yr)
    assert q.fidelity.cosine > 0.99  # the report compares float and int8 both started from the initial state
    s = q.stream()
    np.testing.assert_array_equal(np.stack([s.step(x).copy() for x in X[1]]), Yq[1])


@pytest.mark.parametrize("quantized", [False, True])
def test_initial_state_survives_save_and_load(tmp_path, quantized):
    m, init = _stateful_model()
    m.initial_state = init
    X = _data((2, 7, 3), 11)
    if quantized:
        m = el.quantize(m, calibration=X, progress=False)
    el.save(m, tmp_path / "s.elstm")
    back = el.load(tmp_path / "s.elstm")
    for a, b in zip(back.initial_state, init):
        for da, db in zip(a, b):
            for n in db:
                np.testing.assert_array_equal(da[n], db[n])
    np.testing.assert_array_equal(back.run(X), m.run(X))
    m.initial_state = None  # and a model without one writes the old layout: no state tensors
    el.save(m, tmp_path / "z.elstm")
    assert el.load(tmp_path / "z.elstm").initial_state is None


def test_exporters_without_initial_states_refuse_it(tmp_path):
    m, init = _stateful_model()
    m.initial_state = init
    q = el.quantize(m, calibration=_data((1, 20, 3)), progress=False)
    from edgelstm.export import to_c
    with pytest.raises(ModelError, match="initial_state"):
        to_c(q, tmp_path / "c")


# ------------------------------------------------------------------------------------------ through ONNX

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _lstm_graph(layout, with_c=True):
    """An ONNX LSTM (and the same with GRU) whose initial_h / initial_c are batch-constant initializers."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    I, H, B, T = 3, 4, 2, 5
    W = rng.standard_normal((1, 4 * H, I)).astype(np.float32) * 0.5
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32) * 0.5
    Bb = rng.standard_normal((1, 8 * H)).astype(np.float32) * 0.1
    h0 = np.repeat(rng.standard_normal((1, 1, H)).astype(np.float32), B, axis=1)
    c0 = np.repeat(rng.standard_normal((1, 1, H)).astype(np.float32), B, axis=1)
    if layout == 1:
        h0, c0 = h0.transpose(1, 0, 2), c0.transpose(1, 0, 2)
    inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bb, "B"), (h0, "h0"), (c0, "c0"))]
    xshape = [T, B, I] if layout == 0 else [B, T, I]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0" if with_c else ""], ["Y", "Y_h"],
                            hidden_size=H, layout=layout)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, xshape)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None] * 4),
                           helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [None] * 3)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), xshape


@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_initial_h_c_become_the_initial_state(layout):
    from edgelstm.export import from_onnx
    model, xshape = _lstm_graph(layout)
    X = _data(xshape, 12)
    if layout == 0:
        Y, Yh = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": X})
    else:  # onnxruntime refuses layout=1 ("Batchwise recurrent operations ... are not supported"): onnx's own
        from onnx.reference import ReferenceEvaluator  # reference implementation is the peer there
        Y, Yh = ReferenceEvaluator(model).run(None, {"X": X})
    m = from_onnx(model)
    assert m.initial_state is not None
    Xb = X if layout == 1 else X.transpose(1, 0, 2)
    Yb = Y if layout == 1 else Y.transpose(2, 0, 1, 3)             # -> (B, T, 1, H)
    got, st = m.run(np.ascontiguousarray(Xb), return_state=True)
    # float32 kernels vs onnxruntime's float32 LSTM: rounding only
    np.testing.assert_allclose(got, Yb.reshape(got.shape), rtol=0, atol=1e-5)
    np.testing.assert_allclose(st[0][0]["h"], (Yh if layout == 0 else Yh.transpose(1, 0, 2))[0], rtol=0, atol=1e-5)


def test_onnx_initial_state_differing_per_row_is_refused():
    from edgelstm.export import from_onnx
    from onnx import numpy_helper
    model, _ = _lstm_graph(0)
    for i, t in enumerate(model.graph.initializer):
        if t.name == "h0":
            a = numpy_helper.to_array(t).copy()
            a[0, 1] += 1
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, "h0"))
    with pytest.raises(el.ImportModelError, match="differs between batch rows"):
        from_onnx(model)


def test_to_onnx_writes_the_initial_state_and_reads_it_back(tmp_path):
    from edgelstm.export import from_onnx, to_onnx
    m, init = _stateful_model()
    m.initial_state = init
    to_onnx(m, tmp_path / "s.onnx")
    X = _data((3, 8, 3), 13)
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    (Y,) = sess.run(None, {"x": X})
    # onnxruntime's float32 LSTM/GRU vs ours, from the same initial state: rounding only
    np.testing.assert_allclose(Y, m.run(X), rtol=0, atol=1e-5)
    back = from_onnx(tmp_path / "s.onnx")
    np.testing.assert_allclose(back.run(X), m.run(X), rtol=0, atol=1e-6)  # same weights, same kernels
    for a, b in zip(back.initial_state, init):
        for da, db in zip(a, b):
            for n in db:
                np.testing.assert_array_equal(da[n], db[n])

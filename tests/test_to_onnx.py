"""to_onnx: onnxruntime runs our float export and matches the float runtime within 1e-5, whole sequences
(variable batch and length) and step by step with the state fed back."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import edgelstm as el  # noqa: E402
from edgelstm.cli import main  # noqa: E402
from edgelstm.export import to_onnx  # noqa: E402

CASES = {
    "lstm_peep_sigmoid": [{"kind": "lstm", "hidden_size": 12, "peephole": True},
                          {"kind": "dense", "output_size": 4, "activation": "sigmoid"}],
    "gru_after_stack_softmax": [{"kind": "gru", "hidden_size": 10},
                                {"kind": "gru", "hidden_size": 8, "reset_after": False},
                                {"kind": "dense", "output_size": 5, "activation": "softmax"}],
    "rnn_relu_tanh_head": [{"kind": "rnn", "hidden_size": 9, "nonlinearity": "relu"},
                           {"kind": "rnn", "hidden_size": 7},
                           {"kind": "dense", "output_size": 3, "activation": "tanh"}],
    "bidi_lstm_relu": [{"kind": "lstm", "hidden_size": 6, "bidirectional": True},
                       {"kind": "dense", "output_size": 4, "activation": "relu"}],
    "reverse_gru_none": [{"kind": "gru", "hidden_size": 5, "reverse": True},
                         {"kind": "dense", "output_size": 2}],
}
F = 7


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(CASES))
def test_whole_sequences_match(name, tmp_path):
    m = el.Model(el.random_model(CASES[name], input_size=F, seed=len(name)))
    to_onnx(m, tmp_path / "m.onnx")
    sess = _session(tmp_path / "m.onnx")
    for B, T in ((1, 40), (3, 17)):
        X = np.random.default_rng(B).standard_normal((B, T, F)).astype(np.float32)
        (Y,) = sess.run(None, {"x": X})
        # float32 against float32 with different summation orders: rounding only
        assert np.abs(Y - m.run(X)).max() <= 1e-5


@pytest.mark.parametrize("name", ["lstm_peep_sigmoid", "gru_after_stack_softmax", "rnn_relu_tanh_head"])
def test_streaming_export_step_by_step(name, tmp_path):
    m = el.Model(el.random_model(CASES[name], input_size=F, seed=1))
    to_onnx(m, tmp_path / "s.onnx", streaming=True)
    sess = _session(tmp_path / "s.onnx")
    names = [i.name for i in sess.get_inputs()]
    X = np.random.default_rng(2).standard_normal((200, F)).astype(np.float32)
    state = {n: np.zeros(i.shape[:1] + [1] + i.shape[2:], np.float32) for n, i in
             ((i.name, i) for i in sess.get_inputs()) if n != "x"}
    outs = [o.name for o in sess.get_outputs()]
    ys = []
    for x in X:
        res = dict(zip(outs, sess.run(None, {"x": x[None, None], **state})))
        ys.append(res["y"][0, 0])
        state = {n: res[n.replace("h0", "hN").replace("c0", "cN")] for n in state}
    assert set(names) - {"x"} == set(state)
    assert np.abs(np.array(ys) - m.stream().step_many(X)).max() <= 1e-5


def test_checker_accepts_and_limits_are_refused(tmp_path):
    m = el.Model(el.random_model(CASES["lstm_peep_sigmoid"], input_size=F))
    to_onnx(m, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))
    for layers, match in (([{"kind": "lstm", "hidden_size": 6, "proj_size": 3}], "projection"),
                          ([{"kind": "lstm", "hidden_size": 6, "cell_clip": 3.0}], "clip")):
        with pytest.raises(el.ImportModelError, match=match):
            to_onnx(el.Model(el.random_model(layers, input_size=F)), tmp_path / "x.onnx")
    bidi = el.Model(el.random_model(CASES["bidi_lstm_relu"], input_size=F))
    with pytest.raises(el.ImportModelError, match="streaming"):
        to_onnx(bidi, tmp_path / "x.onnx", streaming=True)
    pytest.importorskip("tflite")
    from pathlib import Path
    from edgelstm.export import from_tflite
    graph = from_tflite(Path(__file__).parent / "fixtures" / "tflite_cells" / "gru_after_a_f32.tflite")
    with pytest.raises(el.ImportModelError, match="op graph"):       # not an AttributeError from inside
        to_onnx(graph, tmp_path / "x.onnx")


def test_int8_model_exports_its_float_weights_and_cli(tmp_path, capsys):
    from edgelstm.data import DATA
    out = tmp_path / "tagger.onnx"
    assert main(["export", str(DATA / "tagger_gru_int8.elstm"), "--to", "onnx", "-o", str(out)]) == 0
    f = el.load(DATA / "tagger_gru.elstm")
    X = np.load(DATA / "demo_features.npy")[None, :300]
    (Y,) = _session(out).run(None, {"x": X})
    assert np.abs(Y - f.run(X)).max() <= 1e-5

"""from_onnx against ONNX's own backend node test cases (onnx.backend.test.case.node): every lstm / gru / rnn
case imports and matches its expected Y and Y_h. The cases feed W, R, B (and P, initial states) as graph
inputs; a deployable model has constant weights, so they are bound as initializers here. X is fed batch-first
and Y compared as (B, T, directions * H)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.backend.test.case.node import collect_testcases  # noqa: E402

import edgelstm as el  # noqa: E402
from edgelstm.export import from_onnx  # noqa: E402

CASES = {c.name: c for c in collect_testcases() if any(k in c.name for k in ("lstm", "gru", "rnn"))}


def test_all_eighteen_cases_are_collected():
    assert len(CASES) == 18, sorted(CASES)


def _bound(case, inputs):
    """The case's model with every input except X and sequence_lens turned into an initializer."""
    g = case.model.graph
    node = g.node[0]
    keep, inits = [], []
    for vi, arr in zip(g.input, inputs):
        slot = list(node.input).index(vi.name)
        if slot in (0, 4):
            keep.append(vi)
        else:
            inits.append(numpy_helper.from_array(arr, vi.name))
    graph = helper.make_graph(list(g.node), g.name, keep, list(g.output), initializer=inits)
    return helper.make_model(graph, opset_imports=list(case.model.opset_import)), node


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_case_imports_and_matches(name):
    case = CASES[name]
    for inputs, expected in case.data_sets:
        model, node = _bound(case, inputs)
        m = from_onnx(model)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        layout = attrs.get("layout", 0)
        X = inputs[0]
        Xb = X if layout == 1 else X.transpose(1, 0, 2)                    # -> (B, T, I)
        slots = list(node.input)
        lengths = inputs[slots.index("sequence_lens")] if "sequence_lens" in slots and slots[4] else None
        Y, state = m.run(Xb.astype(np.float32), lengths=lengths, return_state=True)
        outs = dict(zip([o for o in node.output if o], expected))
        n_dir = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
        B, T = Xb.shape[:2]
        H = attrs["hidden_size"]
        # float32 kernels against ONNX's float32 numpy reference: rounding only, well under 1e-5
        tol = 1e-5
        if node.output[0]:
            Yo = outs[node.output[0]]
            Yb = Yo.transpose(2, 0, 1, 3) if layout == 0 else Yo                # -> (B, T, D, H)
            np.testing.assert_allclose(Y, Yb.reshape(B, T, n_dir * H), rtol=0, atol=tol)
        Yh = outs[node.output[1]]
        Yh = Yh if layout == 0 else Yh.transpose(1, 0, 2)                      # -> (D, B, H)
        for d in range(n_dir):
            np.testing.assert_allclose(state[0][d]["h"] if Xb.ndim == 3 else state[0][d]["h"], Yh[d],
                                       rtol=0, atol=tol)
        if len(node.output) > 2 and node.output[2]:
            Yc = outs[node.output[2]]
            Yc = Yc if layout == 0 else Yc.transpose(1, 0, 2)
            for d in range(n_dir):
                np.testing.assert_allclose(state[0][d]["c"], Yc[d], rtol=0, atol=tol)


def test_imported_models_quantize_and_report_fidelity():
    case = CASES["test_lstm_bidirectional"]
    model, _ = _bound(case, case.data_sets[0][0])
    m = from_onnx(model)
    q = el.quantize(m, calibration=np.random.default_rng(0).standard_normal((2, 20, m.input_size)).astype(
        np.float32), progress=False)
    assert q.fidelity.to_dict()["cosine"] > 0.99


@pytest.mark.parametrize("attr, value, match", [
    ("clip", 3.0, "clip"), ("input_forget", 1, "input_forget"),
    ("activations", ["Relu", "Tanh", "Tanh"], "activations"),
])
def test_unsupported_attributes_are_named(attr, value, match):
    case = CASES["test_lstm_defaults"]
    model, node = _bound(case, case.data_sets[0][0])
    model.graph.node[0].attribute.append(helper.make_attribute(attr, value))
    with pytest.raises(el.ImportModelError, match=match):
        from_onnx(model)


def test_garbage_is_an_import_error(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"\x08\x07garbage")
    with pytest.raises(el.ImportModelError):
        from_onnx(p)
    with pytest.raises(el.ImportModelError, match="cannot read"):
        from_onnx(tmp_path / "missing.onnx")


def test_mutated_onnx_and_keras_files_fail_cleanly(tmp_path):
    """3,000 mutated files (tests/fuzzing.py mutate_file: blind byte damage, protobuf edits of ONNX graphs,
    Keras config edits, damaged weights inside .keras zips) through from_onnx / from_keras, each file's cases in
    a subprocess (a crash shows as its exit status, a hang as the timeout): only an edgelstm error or a model
    that runs to finite outputs."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    here = Path(__file__).resolve().parent
    case = CASES["test_lstm_bidirectional"]
    model, _ = _bound(case, case.data_sets[0][0])
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    fx = here / "fixtures"
    files = [onnx_path, fx / "onnx" / "lstm_bi_stack_softmax.torchscript.onnx", fx / "onnx" / "gru_stack_sigmoid.dynamo.onnx",
             fx / "keras" / "bidirectional_stack.keras", fx / "keras" / "lstm_dense_sigmoid.keras",
             fx / "keras" / "gru_before_stack.h5"]
    total = {"refused": 0, "ran": 0}
    for seed, path in enumerate(files):
        p = subprocess.run([sys.executable, "-X", "faulthandler", str(here / "fuzzing.py"), "--file", str(path),
                            str(seed), "500"], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        res = json.loads(p.stdout.strip().splitlines()[-1])
        print(path.name, res["counts"])
        assert not res["failures"], res["failures"][:5]
        assert sum(res["counts"].values()) == 500 and res["counts"]["refused"] > 0 and res["counts"]["ran"] > 0
        for k in total:
            total[k] += res["counts"][k]
    print("total", total)


def test_isolated_reader_turns_hangs_and_crashes_into_import_errors():
    """The forked reader from_keras uses (libhdf5 can hang or crash on corrupt files)."""
    import ctypes
    import time
    from edgelstm.export._files import run_isolated
    with pytest.raises(el.ImportModelError, match="did not finish"):
        run_isolated(time.sleep, (30,), timeout=0.5, where="x")
    with pytest.raises(el.ImportModelError, match="died"):
        run_isolated(ctypes.string_at, (0,), timeout=30, where="x")  # reads address 0: SIGSEGV in the child
    with pytest.raises(el.ImportModelError, match="ValueError"):
        run_isolated(int, ("nope",), timeout=30, where="x")
    assert run_isolated(sum, ([1, 2],), timeout=30, where="x") == 3


def test_onnx_clip_clips_gate_inputs_unlike_the_ir_cell_clip():
    """Why from_onnx refuses ``clip``: onnxruntime clips the gate pre-activations (a numpy reference of that
    matches it), and edgelstm's LSTM cell_clip (TFLite's, on the cell state) with the same threshold gives
    another model."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto
    rng = np.random.default_rng(0)
    I, H, B, T, clip = 3, 4, 2, 6, 0.7
    W = rng.standard_normal((1, 4 * H, I)).astype(np.float32) * 2
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32) * 2
    Bb = rng.standard_normal((1, 8 * H)).astype(np.float32)
    X = rng.standard_normal((T, B, I)).astype(np.float32) * 2

    def graph(**attrs):
        node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=H, **attrs)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H])],
                              initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bb, "B"))])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    (Y,) = ort.InferenceSession(graph(clip=clip).SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"X": X})
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c, ref = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):  # ONNX gate order i, o, f, c; every pre-activation clipped
        gi, go, gf, gc = np.split(np.clip(X[t] @ W[0].T + h @ R[0].T + Bb[0, :4 * H] + Bb[0, 4 * H:], -clip, clip), 4, 1)
        c = sig(gf) * c + sig(gi) * np.tanh(gc)
        h = sig(go) * np.tanh(c)
        ref.append(h)
    # float64 reference vs onnxruntime's float32: rounding only
    np.testing.assert_allclose(Y[:, 0], np.stack(ref), rtol=0, atol=1e-5)
    m = from_onnx(graph())                                   # the same LSTM without clip ...
    m.spec.layers[0].cell_clip = clip                        # ... with edgelstm's (TFLite's) cell clip instead
    ours = el.Model(m.spec).run(np.ascontiguousarray(X.transpose(1, 0, 2)))
    assert np.abs(ours - Y[:, 0].transpose(1, 0, 2)).max() > 0.1  # a different model: mapping would be wrong
    with pytest.raises(el.ImportModelError, match="pre-activation"):
        from_onnx(graph(clip=clip))

"""`edgelstm convert` (.onnx / .keras / .h5 -> .elstm) and `edgelstm export MODEL --to onnx`, end to end through
the CLI's main(), compared with the frameworks' own outputs and with onnxruntime."""
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from edgelstm.cli import main

pytest.importorskip("onnx")
FX = Path(__file__).resolve().parent / "fixtures"


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("src, ref_x, ref_y", [
    ("onnx/lstm_bi_stack_softmax.torchscript.onnx", "X", "Y_full"),
    ("onnx/gru_stack_sigmoid.dynamo.onnx", "X", "Y_full"),
    ("keras/bidirectional_stack.keras", "x", "y"),
    ("keras/gru_before_stack.h5", "x", "y"),
])
def test_convert_matches_the_framework(tmp_path, capsys, src, ref_x, ref_y):
    out = tmp_path / "m.elstm"
    rc, _, err = _run(capsys, "convert", FX / src, "-o", out)
    assert rc == 0, err
    ref = np.load(FX / src.split("/")[0] / (Path(src).name.split(".")[0] + ".npz"))
    Y = el.load(out).run(ref[ref_x])
    if src.startswith("keras"):   # Keras fixtures: outputs past each masked length are compared with lengths=
        Y = el.load(out).run(ref[ref_x], lengths=ref["lengths"])
        mask = np.arange(Y.shape[1])[None, :] < ref["lengths"][:, None]
        Y, want = Y[mask], ref[ref_y][mask]
    else:
        want = ref[ref_y]
    # float32 runtime vs the framework's float32 outputs: rounding only (see the importer tests)
    np.testing.assert_allclose(Y, want, rtol=0, atol=1e-5)


def test_export_to_onnx_runs_in_onnxruntime(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    src = FX / "keras" / "lstm_dense_sigmoid.keras"
    rc, _, err = _run(capsys, "export", src, "--to", "onnx", "-o", tmp_path / "m.onnx")  # any convertible file
    assert rc == 0, err
    m = el.export.import_model(src)
    X = np.random.default_rng(0).standard_normal((2, 15, m.input_size)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    # onnxruntime's float32 kernels vs ours: rounding only
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], m.run(X), rtol=0, atol=1e-5)
    el.save(m, tmp_path / "m.elstm")                                                   # and from a .elstm
    rc, _, err = _run(capsys, "export", tmp_path / "m.elstm", "--to", "onnx", "-o", tmp_path / "n.onnx")
    assert rc == 0, err
    np.testing.assert_array_equal(Path(tmp_path / "n.onnx").read_bytes(), Path(tmp_path / "m.onnx").read_bytes())


def test_convert_keeps_an_onnx_initial_state(tmp_path, capsys):
    from test_initial_state import _lstm_graph
    model, _ = _lstm_graph(0)
    (tmp_path / "s.onnx").write_bytes(model.SerializeToString())
    rc, _, err = _run(capsys, "convert", tmp_path / "s.onnx", "-o", tmp_path / "s.elstm")
    assert rc == 0, err
    m = el.load(tmp_path / "s.elstm")
    assert m.initial_state is not None and np.abs(m.initial_state[0][0]["c"]).max() > 0


def test_convert_of_a_damaged_file_is_one_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes((FX / "keras" / "bidirectional_stack.keras").read_bytes()[:500])
    rc, _, err = _run(capsys, "convert", bad, "-o", tmp_path / "x.elstm")
    assert rc == 2 and err.startswith("edgelstm: error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.elstm").exists()

"""from_tflite on files the real TF converter made (tests/fixtures/make_tflite.py): the imported model's int8
output is IDENTICAL to LiteRT's (reference and default op resolvers) over 1,000-step streams with the state
carried between calls, including inputs that hold the cell state at the clip; float32 within 1e-5."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tflite = pytest.importorskip("tflite")
litert = pytest.importorskip("ai_edge_litert.interpreter")

import edgelstm as el  # noqa: E402
from edgelstm.cli import main  # noqa: E402
from edgelstm.export import from_tflite  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "tflite"
INT8 = ["lstm_sigmoid", "lstm_softmax_loud", "lstm_tanh_loud", "lstm_none"]
STEPS = 1000


def _interpreter(path, resolver):
    kw = {} if resolver == "default" else {"experimental_op_resolver_type": litert.OpResolverType.BUILTIN_REF}
    it = litert.Interpreter(model_path=str(path), **kw)
    it.allocate_tensors()
    return it


def _int8_streams(rng, T, F):
    """Uniform int8 frames, and a slow random walk pinned at the extremes for long stretches (it drives the
    LSTM's int16 cell state to the clip). At least STEPS frames, whole invokes of T."""
    n = -(-STEPS // T) * T
    uniform = rng.integers(-128, 128, (n, F))
    walk = np.cumsum(rng.integers(-24, 25, (n, F)), axis=0)
    walk = np.clip(walk, -128, 127)
    return {"uniform": uniform.astype(np.int8), "walk": walk.astype(np.int8)}


@pytest.mark.parametrize("resolver", ["default", "reference"])
@pytest.mark.parametrize("name", INT8)
def test_int8_import_equals_litert(name, resolver):
    path = FIX / f"{name}.tflite"
    model = from_tflite(path)
    assert model.is_quantized and model.spec.layers[0].cell_clip == 10.0
    it = _interpreter(path, resolver)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    T, F = int(inp["shape"][1]), int(inp["shape"][2])
    (s_in, zp_in), (s_out, zp_out) = model.quant.act[0], model.quant.act[-1]
    e = int(model.quant.layers[0][0]["cell_exp"][0])
    q_clip = min(int(np.float32(10.0) / np.float32(2.0 ** e)), 32767)
    rng = np.random.default_rng(len(name))
    for kind, Xq in _int8_streams(rng, T, F).items():
        it.reset_all_variables()
        stream = model.stream()
        c_extreme = 0
        for start in range(0, len(Xq), T):
            q = Xq[start:start + T]
            it.set_tensor(inp["index"], q[None])
            it.invoke()
            want = it.get_tensor(out["index"])[0].astype(np.int64)
            X = ((q.astype(np.float32) - np.float32(zp_in)) * np.float32(s_in)).astype(np.float32)
            got = np.round(stream.step_many(X) / np.float32(s_out)).astype(np.int64) + zp_out
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {kind} steps {start}..{start + T}")
            c = stream.state[0][0]["c"].astype(np.int64)
            assert c.min() >= -q_clip and c.max() <= q_clip
            c_extreme = max(c_extreme, int(np.abs(c).max()))
        if kind == "walk" and name != "lstm_sigmoid":
            # the loud fixtures are calibrated on quiet inputs: the walk holds c at the clip (32767, never -32768)
            assert c_extreme == q_clip, (name, c_extreme, q_clip)


def test_float_import_matches_litert():
    path = FIX / "lstm_sigmoid_f32.tflite"
    model = from_tflite(path)
    assert not model.is_quantized
    it = _interpreter(path, "default")
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    T, F = int(inp["shape"][1]), int(inp["shape"][2])
    rng = np.random.default_rng(0)
    stream = model.stream()
    worst = 0.0
    for start in range(0, STEPS, T):
        X = (rng.standard_normal((T, F)) * 2).astype(np.float32)
        it.set_tensor(inp["index"], X[None])
        it.invoke()
        want = it.get_tensor(out["index"])[0]
        worst = max(worst, float(np.abs(stream.step_many(X) - want).max()))
    # two float32 implementations with different summation orders over 1,000 recurrent steps
    assert worst <= 1e-5, worst


def test_dense_head_only_graph_is_a_stateless_op_graph_and_junk_is_refused(tmp_path):
    # no fused LSTM: read as a step graph without state (FULLY_CONNECTED + LOGISTIC), identical to LiteRT
    m = from_tflite(FIX / "fc_sigmoid.tflite")
    assert m.spec.layers[0].kind == "ops" and not m.spec.layers[0].state
    it = litert.Interpreter(model_path=str(FIX / "fc_sigmoid.tflite"))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (s_in, zp_in), (s_out, zp_out) = m.quant.act
    r = np.load(FIX / "fc_sigmoid.inputs.npy").astype(np.float32) / np.float32(s_in)
    Xq = np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5) + zp_in, -128, 127).astype(np.int8)
    want = []
    for x in Xq:
        it.set_tensor(inp["index"], x.reshape(inp["shape"]))
        it.invoke()
        want.append(it.get_tensor(out["index"]).ravel().copy())
    got = m.run(((Xq.astype(np.float32) - zp_in) * np.float32(s_in)).astype(np.float32))
    np.testing.assert_array_equal(np.round(got / np.float32(s_out)).astype(np.int64) + zp_out, np.array(want))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(el.ImportModelError, match="TFL3"):
        from_tflite(junk)
    data = (FIX / "lstm_sigmoid.tflite").read_bytes()
    junk.write_bytes(data[:len(data) // 3])
    with pytest.raises(el.ImportModelError):
        from_tflite(junk)
    with pytest.raises(el.ImportModelError, match="cannot read"):
        from_tflite(tmp_path / "missing.tflite")


def test_cli_convert_and_info_on_tflite(tmp_path, capsys):
    out = tmp_path / "m.elstm"
    assert main(["convert", str(FIX / "lstm_sigmoid.tflite"), "-o", str(out)]) == 0
    assert "int8 lstm-dense" in capsys.readouterr().out
    back = el.load(out)
    X = np.random.default_rng(0).standard_normal((30, 40)).astype(np.float32)
    np.testing.assert_array_equal(back.run(X), from_tflite(FIX / "lstm_sigmoid.tflite").run(X))
    assert main(["info", str(FIX / "lstm_tanh_loud.tflite")]) == 0
    assert "lstm" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["lstm_sigmoid", "lstm_softmax_loud", "lstm_sigmoid_f32",
                                  "../tflite_cells/gru_before_a_int8", "../tflite_cells/lstm_a_bias_int8",
                                  "../tflite_cells/gru_after_a_f32", "seq_rnn_backwards_last"] +
                         [pytest.param(n, marks=pytest.mark.slow) for n in
                          ("seq_stacked", "seq_backwards_twice", "seq_gru_after", "ctl_rnn_custom_cell")])
def test_mutated_tflite_files_are_refused_or_run(name):
    """Mutated converter files (fused sequence LSTMs, Keras cell step graphs, Keras GRU / SimpleRNN WHILE loops):
    an ImportModelError or a model that runs; never a crash or another exception (a subprocess, so a crash
    would show as its exit status)."""
    p = subprocess.run([sys.executable, "-X", "faulthandler", str(Path(__file__).parent / "fuzzing.py"), "--file",
                        str(FIX / f"{name}.tflite"), "1", "700"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(name, res["counts"])
    assert not res["failures"], res["failures"][:5]
    assert res["counts"]["refused"] > 0 and res["counts"]["refused"] + res["counts"]["ran"] == 700

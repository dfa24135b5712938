"""from_tflite on the TF converter's float32 sequence files of Keras GRU / SimpleRNN stacks (WHILE loops with
cond / body subgraphs; tests/fixtures/make_tflite.py, ``seq_*``): each imports as real GRU / RNN layers whose
outputs are within 1e-5 of LiteRT's on the committed file; other control flow (``ctl_*``) and damaged loops
are refused by name."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tflite = pytest.importorskip("tflite")
litert = pytest.importorskip("ai_edge_litert.interpreter")

import edgelstm as el  # noqa: E402
from edgelstm.export import from_tflite  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "tflite"
# name: (layer kinds, reverse flags, what the file outputs in terms of the Model's per-step Y). Keras returns a
# go_backwards layer's outputs in processing order: Y reversed in time ("rev"), its last step is Y[0] ("first").
SEQ = {
    "seq_gru_after": (["gru", "dense"], [False], "seq"),
    "seq_gru_before_last": (["gru", "dense"], [False], "last"),
    "seq_rnn_tanh": (["rnn", "dense"], [False], "seq"),
    "seq_rnn_relu_last": (["rnn", "dense"], [False], "last"),
    "seq_stacked": (["gru", "rnn", "gru", "dense"], [False, False, False], "seq"),
    "seq_gru_backwards": (["gru", "dense"], [True], "rev"),
    "seq_rnn_backwards_last": (["rnn", "dense"], [True], "first"),
    "seq_backwards_twice": (["gru", "gru", "dense"], [True, False], "last"),
    "seq_gru_only": (["gru"], [False], "seq"),
}
PICK = {"seq": lambda Y: Y, "last": lambda Y: Y[-1], "rev": lambda Y: Y[::-1], "first": lambda Y: Y[0]}


def _litert(path, X):
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    Y = []
    for x in X:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        Y.append(it.get_tensor(out["index"])[0].copy())
    return np.array(Y)


@pytest.mark.parametrize("name", sorted(SEQ))
def test_sequence_loop_imports_as_gru_rnn_layers_equal_to_litert(name):
    kinds, reverse, pick = SEQ[name]
    path = FIX / f"{name}.tflite"
    model = from_tflite(path)
    layers = model.spec.layers
    assert [layer.kind for layer in layers] == kinds and not model.is_quantized
    assert [layer.reverse for layer in layers if layer.kind != "dense"] == reverse
    if name == "seq_stacked":
        assert [layer.reset_after for layer in layers if layer.kind == "gru"] == [True, False]
        assert layers[1].nonlinearity == "tanh"
    if name == "seq_rnn_relu_last":
        assert layers[0].nonlinearity == "relu"
    X = np.load(FIX / f"{name}.inputs.npy")
    want = _litert(path, X)
    # the committed outputs (TensorFlow's interpreter, checked against Keras when made) agree with LiteRT's
    assert np.abs(want - np.load(FIX / f"{name}.outputs.npy")).max() <= 1e-5
    got = np.array([PICK[pick](model.run(x)) for x in X])
    # float32 both, different summation orders, <= 40 recurrent steps, loud inputs included
    err = float(np.abs(got - want).max())
    print(name, "max |edgelstm - LiteRT|", err)
    assert err <= 1e-5, err
    batched = model.run(X)            # batched run over the same sequences: the same numbers
    np.testing.assert_allclose(np.array([PICK[pick](y) for y in batched]), got, rtol=0, atol=1e-6)


def test_imported_loops_quantize_and_save(tmp_path):
    """The import is real GRU / RNN layers, so it quantizes to edgelstm's int8 GRU / RNN and round-trips."""
    m = from_tflite(FIX / "seq_stacked.tflite")
    X = np.load(FIX / "seq_stacked.inputs.npy")
    q = el.quantize(m, calibration=X, progress=False)
    assert q.is_quantized and [layer.kind for layer in q.spec.layers] == ["gru", "rnn", "gru", "dense"]
    Y, Yq = m.run(X), q.run(X)
    assert np.abs(Yq - Y).max() <= 0.05 * np.abs(Y).max()       # int8 tracks float (a sanity bound, not exact)
    el.save(q, tmp_path / "q.elstm")
    np.testing.assert_array_equal(el.load(tmp_path / "q.elstm").run(X), Yq)


@pytest.mark.parametrize("name, match", [
    ("ctl_if", r"unsupported operator IF \(operator 2\): control flow"),
    ("ctl_while_cumsum", (r"operator 0 \(WHILE\): not a Keras GRU / SimpleRNN loop: carries 1 state tensor\(s\) "
                          r"and 0 output array")),
    ("ctl_rnn_lstmcell", r"\(WHILE\): not a Keras GRU / SimpleRNN loop: it carries two states \(an LSTM cell"),
    ("ctl_rnn_custom_cell", r"\(WHILE\): not a Keras GRU / SimpleRNN loop: the new state is neither"),
])
def test_other_control_flow_is_refused_by_name(name, match):
    with pytest.raises(el.ImportModelError, match=match):
        from_tflite(FIX / f"{name}.tflite")


def test_state_pairs_do_not_apply_to_loop_files():
    with pytest.raises(el.ImportModelError, match="state= applies to step graphs"):
        from_tflite(FIX / "seq_gru_after.tflite", state=[(1, 1)])


# ---------------------------------------------------------------------- damaged loops
def _patch(data: bytes, sub: int, tensor: int, values) -> bytes:
    """The file with constant tensor ``tensor`` of subgraph ``sub`` overwritten in place (same dtype / size)."""
    m = tflite.Model.GetRootAsModel(data, 0)
    buf = m.Buffers(m.Subgraphs(sub).Tensors(tensor).Buffer())
    start = buf._tab.Vector(buf._tab.Offset(4))
    old = buf.DataAsNumpy().tobytes()
    new = np.asarray(values).astype(np.int32 if m.Subgraphs(sub).Tensors(tensor).Type() == 2 else np.float32)
    raw = new.tobytes()
    assert len(raw) == len(old)
    return data[:start] + raw + data[start + len(raw):]


def _find(data: bytes, sub: int, op_name: str, slot: int, nth: int = 0) -> int:
    """Tensor index of input ``slot`` of the ``nth`` operator named ``op_name`` in subgraph ``sub``."""
    m = tflite.Model.GetRootAsModel(data, 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    g = m.Subgraphs(sub)
    hits = [g.Operators(i) for i in range(g.OperatorsLength())
            if names[max(m.OperatorCodes(g.Operators(i).OpcodeIndex()).BuiltinCode(),
                         m.OperatorCodes(g.Operators(i).OpcodeIndex()).DeprecatedBuiltinCode())] == op_name]
    return int(hits[nth].InputsAsNumpy()[slot])


def _damaged(tmp_path, name, sub, op_name, slot, values, nth=0):
    data = (FIX / f"{name}.tflite").read_bytes()
    p = tmp_path / f"{name}-damaged.tflite"
    p.write_bytes(_patch(data, sub, _find(data, sub, op_name, slot, nth), values))
    return p


def test_damaged_loops_are_refused_by_what_breaks(tmp_path):
    """Each proof obligation of the loop recognizer can fail: a loop whose trip count, counter step, array
    write or cell arithmetic is not the Keras one is refused, naming what is wrong (the undamaged file imports,
    test above). seq_gru_after: subgraph 1 is the cond (LESS counter, 40), 2 the body."""
    f = "seq_gru_after"
    with pytest.raises(el.ImportModelError, match="runs 39 iterations over 40 frames"):
        from_tflite(_damaged(tmp_path, f, 1, "LESS", 1, 39))
    # the counters' increment (in sequence bodies the same constant 1 is also a SPLIT axis or a RESHAPE shape)
    with pytest.raises(el.ImportModelError, match="does not go up by 1"):
        from_tflite(_damaged(tmp_path, "seq_rnn_relu_last", 2, "ADD", 1, 2))
    with pytest.raises(el.ImportModelError, match="not written at the step's row"):
        from_tflite(_damaged(tmp_path, f, 2, "SLICE", 1, [1, 0, 0]))   # rows [1, k) kept before row k
    with pytest.raises(el.ImportModelError, match=r"not z \* h \+ \(1 - z\)"):
        from_tflite(_damaged(tmp_path, f, 2, "SUB", 0, 2.0))       # 2 - z instead of 1 - z


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seq_gru_backwards", "seq_rnn_relu_last"])
def test_constant_mutations_that_import_agree_with_litert(name, tmp_path):
    """Differential: every small constant of the file (loop bounds, counter starts and steps, slice / reshape /
    split operands, axes, the 1 of 1 - z, biases of <= 4 values) changed one value at a time (+-1, 0, -1, 1,
    2v). Whatever edgelstm accepts must compute what LiteRT computes on that file (LiteRT runs in a subprocess:
    it may crash on a damaged file); the rest must be refused."""
    data = (FIX / f"{name}.tflite").read_bytes()
    X = np.load(FIX / f"{name}.inputs.npy")[:2]
    np.save(tmp_path / "X.npy", X)
    pick = PICK[SEQ[name][2]]
    m = tflite.Model.GetRootAsModel(data, 0)
    counts = {"refused": 0, "agree": 0}
    for s in range(m.SubgraphsLength()):
        g = m.Subgraphs(s)
        for t in range(g.TensorsLength()):
            buf = m.Buffers(g.Tensors(t).Buffer())
            typ = g.Tensors(t).Type()
            if not buf.DataLength() or not (typ == 2 or typ == 0 and buf.DataLength() <= 16):
                continue
            vals = np.frombuffer(buf.DataAsNumpy().tobytes(), np.int32 if typ == 2 else np.float32)
            for e in range(vals.size):
                for new in sorted({vals[e] + 1, vals[e] - 1, 0, -1, 1, 2 * vals[e]} - {vals[e]}):
                    v = vals.copy()
                    v[e] = new
                    p = tmp_path / "m.tflite"
                    p.write_bytes(_patch(data, s, t, v))
                    try:
                        model = from_tflite(p)
                    except el.ImportModelError:
                        counts["refused"] += 1
                        continue
                    r = subprocess.run([sys.executable, __file__, str(p), str(tmp_path / "X.npy"),
                                        str(tmp_path / "Y.npy")], capture_output=True, timeout=120)
                    assert r.returncode == 0, (s, t, e, new, r.stderr[-500:])   # LiteRT runs what we accept
                    want = np.load(tmp_path / "Y.npy")
                    got = np.array([pick(model.run(x)) for x in X])
                    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5, (s, t, e, new)
                    counts["agree"] += 1
    print(name, counts)
    assert counts["refused"] and counts["agree"]


if __name__ == "__main__":   # LiteRT on a damaged file, in a subprocess: FILE X.npy Y.npy
    np.save(sys.argv[3], _litert(sys.argv[1], np.load(sys.argv[2])))

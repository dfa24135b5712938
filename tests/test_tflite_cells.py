"""Converter-made step graphs of Keras cells with explicit state (tests/fixtures/make_tflite_cells.py: TensorFlow's
own converter and calibrator; LSTMCell, GRUCell reset_after True/False, SimpleRNNCell tanh/relu, int8 and f32)
imported by ``edgelstm.export.from_tflite`` as a Model with one op-graph layer, streamed 1,000 steps with the
state fed back, against LiteRT itself.

The LiteRT side is driven through its signature runner by input/output NAME (x, s0, s1 -> y, s0', s1'), never
through our importer's ordering, and feeds the state back the way an app does: dequantize the state output,
quantize it to the state input (the converter gives them different quantizations). The inputs are random walks
past the calibrated range (calibration saw the first 200 steps), so intermediates saturate."""
import os

import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import ImportModelError
from edgelstm.export import from_tflite

litert = pytest.importorskip("ai_edge_litert.interpreter")
HERE = os.path.join(os.path.dirname(__file__), "fixtures", "tflite_cells")
NAMES = sorted(f[:-len("_int8.tflite")] for f in os.listdir(HERE) if f.endswith("_int8.tflite"))
RESOLVERS = {"ref": litert.OpResolverType.BUILTIN_REF, "default": litert.OpResolverType.AUTO}


def _quantize(v, s, zp):
    """LiteRT QUANTIZE float32 -> int8: round half away from zero of float32(v / s), + zp, clamped."""
    r = (np.asarray(v, np.float32) / np.float32(s)).astype(np.float64)
    return np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5) + zp, -128, 127).astype(np.int8)


def _dequantize(q, s, zp):
    """LiteRT DEQUANTIZE int8 -> float32: float32(double(s) * (q - zp))."""
    return (float(np.float32(s)) * (q.astype(np.float64) - zp)).astype(np.float32)


def _litert_stream(path, X, resolver):
    """LiteRT's outputs y (T, O) and final state, feeding the state back by name every step."""
    it = litert.Interpreter(model_path=path, experimental_op_resolver_type=RESOLVERS[resolver])
    run = it.get_signature_runner()
    ins, outs = run.get_input_details(), run.get_output_details()
    s_names = sorted(n for n in ins if n != "x")
    o_names = sorted(outs)                          # y, then the new states in the Keras model's order
    quant = ins["x"]["dtype"] == np.int8
    state = {n: np.zeros(ins[n]["shape"], ins[n]["dtype"]) + (ins[n]["quantization"][1] if quant else 0)
             for n in s_names}
    Y = []
    for t in range(X.shape[0]):
        x = X[t].reshape(ins["x"]["shape"])
        if quant:
            x = _quantize(x, *ins["x"]["quantization"])
        out = run(x=x, **state)
        y = out[o_names[0]]
        Y.append(_dequantize(y, *outs[o_names[0]]["quantization"]).ravel() if quant else y.ravel().copy())
        for k, n in enumerate(s_names):
            new = out[o_names[1 + k]]
            if quant:
                new = _quantize(_dequantize(new, *outs[o_names[1 + k]]["quantization"]), *ins[n]["quantization"])
            state[n] = new.reshape(ins[n]["shape"]).copy()
    return np.array(Y), [state[n].ravel() for n in s_names]


def _load_X(name):
    X = np.load(os.path.join(HERE, f"{name}.npz"))["X"]
    return X.reshape(X.shape[0], -1).astype(np.float32)


@pytest.mark.parametrize("resolver", ["ref", "default"])
@pytest.mark.parametrize("name", NAMES)
def test_int8_cell_stream_identical_to_litert(name, resolver):
    path = os.path.join(HERE, f"{name}_int8.tflite")
    X = _load_X(name)
    model = from_tflite(path)
    assert model.is_quantized and model.spec.layers[0].kind == "ops"
    s = model.stream()
    ours = np.array([s.step(x).copy() for x in X])
    want, want_state = _litert_stream(path, X, resolver)
    if resolver == "default" and name in DEFAULT_RESOLVER_DIFFERS:
        # measured: LiteRT's default resolver disagrees with its own reference kernels on int8 MUL (and, rarely,
        # ADD); edgelstm equals the reference. Bound what the default resolver does instead (docs/contract.md, op graphs).
        lsb = model.quant.act[-1][0]
        assert np.mean(ours != want) < 0.2 and np.abs(ours - want).max() <= 4.5 * lsb
        return
    np.testing.assert_array_equal(ours, want, err_msg=f"{name} ({resolver})")
    got_state = [a for a in s.state[0][0].values()]
    for g, w in zip(got_state, want_state):
        np.testing.assert_array_equal(g, w)
    # the state really moves and the outputs really vary (a broken write-back or a dead graph shows)
    assert len(np.unique(ours)) > 20


# measured with the default resolver (fraction of outputs differing over 1,000 steps): gru_after_a 2.2%,
# gru_after_b 5.1%, gru_after_c_bias 5.3%, gru_before_a 5.8%, gru_before_b 13.3%, lstm_a_bias 0.7%,
# lstm_b_bias 2.2%, rnn_relu_b 0.1%; rnn_a and rnn_c_bias identical
DEFAULT_RESOLVER_DIFFERS = {"gru_after_a", "gru_after_b", "gru_after_c_bias", "gru_before_a", "gru_before_b",
                            "lstm_a_bias", "lstm_b_bias", "rnn_relu_b"}


@pytest.mark.parametrize("name", NAMES)
def test_f32_cell_stream_within_1e5_of_litert(name):
    path = os.path.join(HERE, f"{name}_f32.tflite")
    X = _load_X(name)
    model = from_tflite(path)
    assert not model.is_quantized
    s = model.stream()
    ours = np.array([s.step(x).copy() for x in X])
    want, want_state = _litert_stream(path, X, "default")
    assert np.abs(ours - want).max() <= 1e-5
    for g, w in zip(s.state[0][0].values(), want_state):
        assert np.abs(g - w).max() <= 1e-5


def test_run_equals_stream_and_save_load_round_trip(tmp_path):
    name = "lstm_a_bias" if "lstm_a_bias" in NAMES else NAMES[0]
    model = from_tflite(os.path.join(HERE, f"{name}_int8.tflite"))
    X = _load_X(name)[:300]
    s = model.stream()
    first = s.step_many(X[:100])
    rest = np.array([s.step(x).copy() for x in X[100:]])
    whole, st = model.run(X, return_state=True)
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)
    for a, b in zip(s.state[0][0].values(), st[0][0].values()):
        np.testing.assert_array_equal(a, b)
    el.save(model, tmp_path / "cell.elstm")
    back = el.load(tmp_path / "cell.elstm")
    np.testing.assert_array_equal(back.run(X), whole)
    # state handed over to a new stream continues identically
    s2 = back.stream()
    s2.state = st
    s.state = st
    np.testing.assert_array_equal(s2.step_many(X[:50]), s.step_many(X[:50]))
    fm = from_tflite(os.path.join(HERE, f"{name}_f32.tflite"))
    el.save(fm, tmp_path / "cell_f32.elstm")
    np.testing.assert_array_equal(el.load(tmp_path / "cell_f32.elstm").run(X), fm.run(X))


def test_unsupported_op_is_named(tmp_path, monkeypatch):
    import importlib
    T = importlib.import_module("edgelstm.export.to_tflite")
    monkeypatch.setitem(T._OPS, "HARD_SWISH", (117, 1, 1))
    _GraphBuilder = T._GraphBuilder
    b = _GraphBuilder()
    x = b.tensor("x", [1, 4], np.float32)
    y = b.tensor("y", [1, 4], np.float32)
    b.op("HARD_SWISH", [x], [y], lambda bb, T: (0, 0))
    p = tmp_path / "hs.tflite"
    p.write_bytes(b.finish([x], [y], False))
    with pytest.raises(ImportModelError, match="HARD_SWISH"):
        from_tflite(p)


@pytest.mark.parametrize("name", NAMES)
def test_int8_cell_equals_naive_reference(name):
    """The op-graph kernels against tests/naive.py (plain Python integers, written from LiteRT's reference
    kernels), 200 steps of each converter graph with the state fed back."""
    import naive
    model = from_tflite(os.path.join(HERE, f"{name}_int8.tflite"))
    X = _load_X(name)[:200]
    s_in, zp_in = model.quant.act[0]
    xq = _quantize(X, s_in, zp_in)
    want, want_state = naive.ref_opgraph_stream(model.spec.layers[0], model.quant.layers[0][0], xq)
    s = model.stream()
    got = s.step_many(X)
    s_out, zp_out = model.quant.act[-1]
    np.testing.assert_array_equal(got, (want.astype(np.float32) - zp_out) * np.float32(s_out))
    for g, w in zip(s.state[0][0].values(), want_state):
        np.testing.assert_array_equal(g, np.asarray(w, np.int8))


MUTATE = r"""
import json, struct, sys, random
import numpy as np
import edgelstm as el
from edgelstm.errors import EdgeLSTMError
src, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(src, "rb").read()
hlen = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + hlen])
body = data[8 + hlen:]
rng = random.Random(seed)
X = np.random.default_rng(0).standard_normal((20, json.loads(header["__metadata__"]["model"])["layers"][0]["input_size"])).astype(np.float32)
counts = {"error": 0, "ran": 0}
for case in range(n):
    model = json.loads(header["__metadata__"]["model"])
    g = model["layers"][0]
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(["tensors", "ops", "state", "x", "y", "n_w", "n_b", "n_ws", "n_c", "input_size"])
        bad = rng.choice([-1, 0, 1, 2, 7, 255, 10**6, 2**31, -2**31, None, 1.5, "x", True])
        if field in ("tensors", "ops", "state") and g[field]:
            row = rng.choice(g[field])
            col = rng.randrange(len(row))
            row[col] = bad if rng.random() < 0.5 else (row[col] + rng.randint(-3, 3) if isinstance(row[col], int) else bad)
        else:
            g[field] = bad
    meta = dict(header["__metadata__"], model=json.dumps(model))
    text = json.dumps(dict(header, __metadata__=meta)).encode()
    text += b" " * (-(8 + len(text)) % 64)
    open("/tmp/_mut.elstm", "wb").write(struct.pack("<Q", len(text)) + text + body)
    try:
        m = el.load("/tmp/_mut.elstm")
        m.run(X)
        counts["ran"] += 1
    except EdgeLSTMError:
        counts["error"] += 1
print(json.dumps(counts))
"""


def test_malformed_opgraph_artifacts_are_errors_never_crashes(tmp_path):
    """Mutated op-graph descriptions in .elstm files (indices, sizes, offsets, types): a clean edgelstm error or a
    model that runs; run in a subprocess so that a crash would show as a failure, not kill the test session."""
    import json
    import subprocess
    import sys
    model = from_tflite(os.path.join(HERE, "gru_before_a_int8.tflite"))
    el.save(model, tmp_path / "g.elstm")
    script = tmp_path / "mutate.py"
    script.write_text(MUTATE.replace("/tmp/_mut.elstm", str(tmp_path / "m.elstm")))
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "g.elstm"), "400", "5"], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts["error"] + counts["ran"] == 400 and counts["error"] > 200, counts


@pytest.mark.parametrize("name", NAMES)
def test_imported_int8_cell_exports_back_and_runs_identically(name, tmp_path):
    """The op-graph layer written back by to_tflite(mode="step") (FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH,
    RELU, SLICE for split parts, DEQUANTIZE -> QUANTIZE for float islands and for the state write-back, so the
    state outputs come in the state inputs' quantization): LiteRT's reference resolver, fed the state back by
    name (x, s0_0.. -> y, s0_0..), gives outputs identical to our stream for 1,000 steps."""
    from edgelstm.export import to_tflite
    model = from_tflite(os.path.join(HERE, f"{name}_int8.tflite"))
    path = tmp_path / "back.tflite"
    to_tflite(model, path, mode="step")
    X = _load_X(name)
    run = litert.Interpreter(model_path=str(path),
                             experimental_op_resolver_type=RESOLVERS["ref"]).get_signature_runner()
    ins = run.get_input_details()
    names = [n for n in ins if n != "x"]
    state = {n: np.full(ins[n]["shape"], ins[n]["quantization"][1], np.int8) for n in names}
    (s_in, zp_in), (s_out, zp_out) = model.quant.act
    Y = []
    for x in X:
        out = run(x=_quantize(x, s_in, zp_in).reshape(ins["x"]["shape"]), **state)
        Y.append(_dequantize(out["y"], s_out, zp_out).ravel())
        state = {n: out[n].copy() for n in names}   # state outputs come in the state inputs' quantization
    s = model.stream()
    np.testing.assert_array_equal(s.step_many(X), np.array(Y))

"""export/tflite_io.py: the builder's files run in LiteRT and read back unchanged; malformed files
(hand-made defects and thousands of random mutations) raise ImportModelError and nothing else."""
import numpy as np
import pytest

from edgelstm.errors import ImportModelError
from edgelstm.export.tflite_io import TFLiteBuilder, read_tflite
from edgelstm.kernels.fixedpoint import mbqm
from edgelstm.quant.multiplier import quantize_multiplier

litert = pytest.importorskip("ai_edge_litert.interpreter")
RESOLVERS = [litert.OpResolverType.BUILTIN_REF, litert.OpResolverType.AUTO]


def _int8_fc(seed=0, n_in=12, n_out=5, act="NONE"):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, n_out)
    x_scale, x_zp, y_scale, y_zp = 0.04, -7, 0.09, 3
    bias = rng.integers(-3000, 3000, n_out).astype(np.int32)
    b = TFLiteBuilder()
    x = b.add_tensor("x", (1, n_in), "int8", scale=x_scale, zero_point=x_zp)
    wt = b.add_tensor("w", (n_out, n_in), "int8", data=w, scale=w_scale, zero_point=0, quantized_dimension=0)
    bt = b.add_tensor("b", (n_out,), "int32", data=bias, scale=w_scale * x_scale, zero_point=0)
    y = b.add_tensor("y", (1, n_out), "int8", scale=y_scale, zero_point=y_zp)
    b.add_operator("FULLY_CONNECTED", [x, wt, bt], [y], version=5, options={"fused_activation_function": act})
    b.set_io(inputs=[x], outputs=[y])
    return b.finish(), dict(w=w, w_scale=w_scale, bias=bias, x_scale=x_scale, x_zp=x_zp, y_scale=y_scale,
                            y_zp=y_zp)


def _invoke(data, x, resolver):
    it = litert.Interpreter(model_content=data, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_roundtrip_keeps_every_field():
    data, p = _int8_fc()
    m = read_tflite(data)
    assert m.version == 3 and m.buffers[0].size == 0
    sg = m.subgraphs[0]
    assert [t.name for t in sg.tensors] == ["x", "w", "b", "y"]
    assert sg.inputs == (0,) and sg.outputs == (3,)
    w = sg.tensors[1]
    assert w.type == "INT8" and w.shape == (5, 12) and np.array_equal(w.data, p["w"])
    np.testing.assert_array_equal(w.quantization.scales, p["w_scale"].astype(np.float32))
    assert np.array_equal(sg.tensors[2].data, p["bias"])
    assert sg.tensors[0].quantization.zero_points.tolist() == [p["x_zp"]]
    op = sg.operators[0]
    assert (op.op, op.version, op.inputs, op.outputs) == ("FULLY_CONNECTED", 5, (0, 1, 2), (3,))
    assert op.options["fused_activation_function"] == "NONE"
    assert m.signatures[0].key == "serving_default" and m.signatures[0].inputs == {"x": 0}


@pytest.mark.parametrize("resolver", RESOLVERS, ids=["ref", "default"])
def test_litert_runs_builder_int8_fc(resolver):
    """The builder's per-channel int8 FC runs in LiteRT; checked against single-rounding requantization
    (acc * (s_x s_w / s_y) through MultiplyByQuantizedMultiplier once)."""
    data, p = _int8_fc(seed=1)
    rng = np.random.default_rng(2)
    for _ in range(50):
        x = rng.integers(-128, 128, (1, 12)).astype(np.int8)
        got = _invoke(data, x, resolver)[0]
        acc = p["w"].astype(np.int64) @ (x[0].astype(np.int64) - p["x_zp"]) + p["bias"]
        want = []
        for o in range(5):
            mult, shift = quantize_multiplier(p["x_scale"] * float(np.float32(p["w_scale"][o])) / p["y_scale"])
            want.append(np.clip(mbqm(int(acc[o]), mult, shift) + p["y_zp"], -128, 127))
        np.testing.assert_array_equal(got, np.array(want, np.int8))


def _corrupt(data, offset, value):
    b = bytearray(data)
    b[offset:offset + len(value)] = value
    return bytes(b)


def test_malformed_files_raise_import_model_error(tmp_path):
    data, _ = _int8_fc()
    m = read_tflite(data)
    cases = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "identifier": _corrupt(data, 4, b"XXXX"),
        "root offset": _corrupt(data, 0, (len(data) + 8).to_bytes(4, "little")),
    }
    # a weight buffer one byte short of its tensor's shape: rebuild with the tensor shape off by one row
    b = TFLiteBuilder()
    t = b.add_tensor("w", (2, 3), "int8")
    b.tensors[t].buffer = b.add_buffer(np.zeros(5, np.int8))
    b.set_io(inputs=[t], outputs=[t])
    cases["buffer size"] = b.finish()
    b = TFLiteBuilder()
    t = b.add_tensor("x", (2,), "int8")
    b.set_io(inputs=[t], outputs=[t])
    b.inputs = (7,)
    b.signatures = []
    cases["tensor index"] = b.finish()
    b = TFLiteBuilder()
    t = b.add_tensor("x", (2, 3), "int8", scale=[0.1, 0.2], zero_point=0, quantized_dimension=0)
    b.set_io(inputs=[t], outputs=[t])
    b.tensors[t].quantized_dimension = 1
    cases["per-channel scales"] = b.finish()
    for name, bad in cases.items():
        with pytest.raises(ImportModelError):
            read_tflite(bad)
    with pytest.raises(ImportModelError, match="cannot read"):
        read_tflite(tmp_path / "missing.tflite")
    assert m.subgraphs[0].tensors[1].data is not None


def _mutants(data, rng, n):
    for k in range(n):
        b = bytearray(data)
        kind = k % 4
        if kind == 0:      # flip a few bytes
            for _ in range(rng.integers(1, 8)):
                b[rng.integers(len(b))] = rng.integers(256)
        elif kind == 1:    # truncate
            b = b[: rng.integers(len(b))]
        elif kind == 2:    # overwrite a 32-bit word with an extreme value
            p = rng.integers(0, len(b) - 4)
            b[p:p + 4] = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000,
                                         rng.integers(1 << 32)])).to_bytes(4, "little")
        else:              # duplicate or drop a chunk
            p, q = sorted(rng.integers(0, len(b), 2))
            b = b[:p] + b[q:] if rng.random() < 0.5 else b[:q] + b[p:q] + b[q:]
        yield bytes(b)


def fuzz_outcomes(data, *, n, seed):
    """Read n mutants of ``data``; count outcomes. Any exception other than ImportModelError propagates."""
    counts = {"read": 0, "ImportModelError": 0}
    for bad in _mutants(data, np.random.default_rng(seed), n):
        try:
            read_tflite(bad)
            counts["read"] += 1
        except ImportModelError:
            counts["ImportModelError"] += 1
    return counts


def test_fuzz_reader_only_raises_import_model_error():
    data, _ = _int8_fc()
    counts = fuzz_outcomes(data, n=3000, seed=5)
    assert sum(counts.values()) == 3000 and counts["ImportModelError"] > 1000

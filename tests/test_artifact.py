"""The .elstm format: round trips, compatibility with the official safetensors reader, and corrupt files.

Corrupt files are made with a small independent safetensors reader/writer below (not the code under test),
so the loader sees exactly the damage each test describes.
"""
import json
import os
import struct

import numpy as np
import pytest

from edgelstm.artifact import load_parts, save_parts
from edgelstm.errors import ArtifactError, ModelError
from edgelstm.ir.model import ModelSpec, layer_from_description, random_model
from edgelstm.quant.params import QuantParams, quant_shapes, validate_quant

LAYERS = [
    {"kind": "lstm", "hidden_size": 8, "proj_size": 4, "peephole": True, "bidirectional": True},
    {"kind": "gru", "hidden_size": 6, "reset_after": False},
    {"kind": "rnn", "hidden_size": 5, "nonlinearity": "relu"},
    {"kind": "dense", "output_size": 3, "activation": "softmax"},
]


def make_quant(spec, seed=0):
    """Valid QuantParams with random integers and sensible scales."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in spec.layers:
        dirs = []
        for _ in range(2 if layer.bidirectional else 1):
            p = {}
            for name, (shape, dtype) in quant_shapes(layer).items():
                if name.endswith("_scale"):
                    p[name] = rng.uniform(0.005, 0.02, shape).astype(np.float32)
                elif name == "cell_exp":
                    p[name] = np.full(shape, -11, np.int32)
                elif name.endswith("_zp"):
                    p[name] = rng.integers(-128, 128, shape).astype(np.int32)
                elif dtype == np.int8:
                    p[name] = rng.integers(-127, 128, shape).astype(np.int8)
                elif dtype == np.int16:
                    p[name] = rng.integers(-32767, 32768, shape).astype(np.int16)
                else:
                    p[name] = rng.integers(-5000, 5000, shape).astype(np.int32)
            dirs.append(p)
        layers.append(dirs)
    act = [(float(rng.uniform(0.01, 0.05)), int(rng.integers(-20, 20))) for _ in range(len(spec.layers) + 1)]
    return validate_quant(spec, QuantParams(act=act, layers=layers))


def int8_only(spec):
    return ModelSpec(layers=[layer_from_description(d, []) for d in spec.describe()], has_weights=False)


@pytest.fixture
def spec():
    return random_model(LAYERS, input_size=7, seed=1)


@pytest.fixture
def qfile(tmp_path, spec):
    """A valid quant + float artifact."""
    path = tmp_path / "m.elstm"
    save_parts(path, spec, make_quant(spec))
    return path


# ---- an independent safetensors reader/writer for making damaged files

def read_raw(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def write_raw(path, header, buf, *, n=None):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if n is None else n) + text + buf)


def read_tensors(path):
    """(metadata, {name: [tag, shape, raw bytes]}) in buffer order."""
    header, buf = read_raw(path)
    meta = header.pop("__metadata__")
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return meta, {k: [e["dtype"], e["shape"], buf[slice(*e["data_offsets"])]] for k, e in items}


def write_tensors(path, meta, tensors):
    """Pack tensors back to back (a valid container whatever the content)."""
    header, chunks, pos = {"__metadata__": meta}, [], 0
    for name, (tag, shape, raw) in tensors.items():
        header[name] = {"dtype": tag, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    write_raw(path, header, b"".join(chunks))


def edit_model_meta(path, fn):
    meta, tensors = read_tensors(path)
    model = json.loads(meta["model"])
    fn(model)
    meta["model"] = json.dumps(model)
    write_tensors(path, meta, tensors)


def edit_tensor(path, name, fn, dtype):
    meta, tensors = read_tensors(path)
    a = np.frombuffer(tensors[name][2], dtype=dtype).copy()
    fn(a)
    tensors[name][2] = a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    write_tensors(path, meta, tensors)


# ---- round trips

def assert_same(spec_a, q_a, spec_b, q_b):
    assert spec_a.describe() == spec_b.describe()
    assert spec_a.has_weights == spec_b.has_weights
    for la, lb in zip(spec_a.layers, spec_b.layers):
        assert len(la.directions) == len(lb.directions)
        for da, db in zip(la.directions, lb.directions):
            assert set(da) == set(db)
            for k in da:
                assert db[k].dtype == np.float32
                np.testing.assert_array_equal(da[k], db[k])
    assert (q_a is None) == (q_b is None)
    if q_a is not None:
        assert q_a.act == q_b.act
        for layer, la, lb in zip(spec_a.layers, q_a.layers, q_b.layers):
            shapes = quant_shapes(layer)
            for da, db in zip(la, lb):
                assert set(da) == set(db) == set(shapes)
                for k in da:
                    assert db[k].dtype == np.dtype(shapes[k][1]) == da[k].dtype
                    np.testing.assert_array_equal(da[k], db[k])


def test_round_trip_float_only(tmp_path, spec):
    save_parts(tmp_path / "f.elstm", spec, None)
    spec2, q2 = load_parts(tmp_path / "f.elstm")
    assert_same(spec, None, spec2, q2)


def test_round_trip_quant_and_float(tmp_path, spec):
    q = make_quant(spec)
    save_parts(tmp_path / "q.elstm", spec, q)
    spec2, q2 = load_parts(str(tmp_path / "q.elstm"))
    assert_same(spec, q, spec2, q2)


def test_round_trip_int8_only(tmp_path, spec):
    s = int8_only(spec)
    q = make_quant(s, seed=3)
    save_parts(tmp_path / "i.elstm", s, q)
    spec2, q2 = load_parts(tmp_path / "i.elstm")
    assert not spec2.has_weights
    assert all(layer.directions == [] for layer in spec2.layers)
    assert_same(s, q, spec2, q2)
    _, tensors = read_tensors(tmp_path / "i.elstm")
    assert all(n.startswith("q.") for n in tensors)


@pytest.mark.parametrize("layers", [
    [{"kind": "lstm", "hidden_size": 3}],
    [{"kind": "gru", "hidden_size": 4, "bidirectional": True}, {"kind": "dense", "output_size": 2}],
    [{"kind": "rnn", "hidden_size": 4}, {"kind": "lstm", "hidden_size": 5, "peephole": True}],
])
def test_round_trip_other_stacks(tmp_path, layers):
    s = random_model(layers, input_size=3, seed=2)
    q = make_quant(s)
    save_parts(tmp_path / "m.elstm", s, q)
    assert_same(s, q, *load_parts(tmp_path / "m.elstm"))


def test_loaded_arrays_are_owned_native_contiguous(qfile):
    spec, q = load_parts(qfile)
    arrays = [a for layer in spec.layers for d in layer.directions for a in d.values()]
    arrays += [a for dirs in q.layers for d in dirs for a in d.values()]
    for a in arrays:
        assert a.flags.c_contiguous and a.flags.owndata and a.flags.aligned
        assert a.dtype.isnative


def test_layout_alignment_and_determinism(tmp_path, spec):
    q = make_quant(spec)
    save_parts(tmp_path / "a.elstm", spec, q)
    save_parts(tmp_path / "b.elstm", spec, q)
    data = (tmp_path / "a.elstm").read_bytes()
    assert data == (tmp_path / "b.elstm").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 64 == 0
    header, buf = read_raw(tmp_path / "a.elstm")
    meta = header.pop("__metadata__")
    assert meta["format"] == "edgelstm" and meta["format_version"] == "4"
    size = {"F32": 4, "I32": 4, "I16": 2, "I8": 1}
    spans = sorted(e["data_offsets"] for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(buf)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, as safetensors requires
    for e in header.values():
        assert e["data_offsets"][0] % size[e["dtype"]] == 0  # naturally aligned


def test_save_is_atomic_and_validates(tmp_path, spec):
    path = tmp_path / "m.elstm"
    q = make_quant(spec)
    save_parts(path, spec, q)
    before = path.read_bytes()
    bad = make_quant(spec)
    bad.layers[0][0]["w_x"][0, 0] = -128
    with pytest.raises(ModelError, match="narrow range"):
        save_parts(path, spec, bad)
    assert path.read_bytes() == before  # the old file survives a failed save
    with pytest.raises(ModelError, match="nothing to save"):
        save_parts(path, int8_only(spec), None)
    save_parts(path, spec, None)  # overwrite in place
    assert load_parts(path)[1] is None
    assert sorted(os.listdir(tmp_path)) == ["m.elstm"]  # no temp file left behind


# ---- the official reader

def test_official_safetensors_reader(qfile):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    spec, q = load_parts(qfile)
    theirs = st.load_file(str(qfile))
    ours = {}
    for k, layer in enumerate(spec.layers):
        for d, p in enumerate(layer.directions):
            ours.update({f"f.{k}.{d}.{n}": a for n, a in p.items()})
        for d, p in enumerate(q.layers[k]):
            ours.update({f"q.{k}.{d}.{n}": a for n, a in p.items()})
    assert set(theirs) == set(ours)
    for name, a in ours.items():
        assert theirs[name].dtype == a.dtype
        np.testing.assert_array_equal(theirs[name], a)
    with safe_open(str(qfile), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "edgelstm" and json.loads(meta["model"])["layers"] == spec.describe()


# ---- load() through the runtime

def _runtime_model():
    try:
        from edgelstm.runtime import Model
    except ImportError as e:
        pytest.skip(f"edgelstm.runtime not importable yet: {e}")
    return Model


def runtime_quant(spec, seed=0):
    """make_quant plus the runtime's rule for dense outputs: fixed for sigmoid/softmax/tanh, else the
    layer's own pre-activation quantization."""
    q = make_quant(spec, seed)
    for k, layer in enumerate(spec.layers):
        if layer.kind == "dense":
            fixed = {"sigmoid": (1 / 256, -128), "softmax": (1 / 256, -128), "tanh": (1 / 128, 0)}
            p = q.layers[k][0]
            q.act[k + 1] = fixed.get(layer.activation, (float(p["pre_scale"][0]), int(p["pre_zp"][0])))
    return validate_quant(spec, q)


def test_save_load_model(tmp_path, spec):
    Model = _runtime_model()
    from edgelstm.artifact import load, save

    for s in (spec, int8_only(spec)):
        q = runtime_quant(s)
        save(Model(s, quant=q), tmp_path / "m.elstm")
        m = load(tmp_path / "m.elstm")
        assert isinstance(m, Model)
        assert_same(s, q, m.spec, m.quant)
    save(Model(spec), tmp_path / "f.elstm")
    m = load(tmp_path / "f.elstm")
    assert m.quant is None
    assert_same(spec, None, m.spec, m.quant)


def test_load_runtime_rejection_is_artifact_error(tmp_path, spec):
    _runtime_model()
    from edgelstm.artifact import load

    q = runtime_quant(spec)
    q.act[-1] = (0.05, 3)  # passes validate_quant, but a softmax output must be (1/256, -128)
    save_parts(tmp_path / "m.elstm", spec, q)
    with pytest.raises(ArtifactError, match="runtime rejects"):
        load(tmp_path / "m.elstm")


# ---- corrupt files: every one is an ArtifactError with a message naming the problem

def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        load_parts(tmp_path / "nope.elstm")
    with pytest.raises(ArtifactError, match="not a regular file"):
        load_parts(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.elstm").write_bytes(b"")
    with pytest.raises(ArtifactError, match="too short"):
        load_parts(tmp_path / "e.elstm")


def test_truncated(qfile):
    data = qfile.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    cuts = {3: "too short", 7: "too short", 8 + n // 2: "larger than the file",
            8 + n + 5: "out of range", len(data) - 1: "out of range"}
    for cut, why in cuts.items():
        qfile.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match=f"{why}.*truncated"):
            load_parts(qfile)


def test_header_length_too_large(qfile):
    header, buf = read_raw(qfile)
    write_raw(qfile, header, buf, n=10 ** 6)
    with pytest.raises(ArtifactError, match="larger than the file"):
        load_parts(qfile)
    write_raw(qfile, header, buf, n=2 ** 63)
    with pytest.raises(ArtifactError, match="exceeds"):
        load_parts(qfile)


def test_non_json_header(qfile):
    data = bytearray(qfile.read_bytes())
    data[8:18] = b"{not json!"
    qfile.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_parts(qfile)
    data[8:18] = b"[1,2]     "
    qfile.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="not a JSON object"):
        load_parts(qfile)
    data[9:11] = b"\xff\xfe"
    data[8] = ord("{")
    qfile.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="UTF-8"):
        load_parts(qfile)


def test_no_metadata(qfile):
    header, buf = read_raw(qfile)
    del header["__metadata__"]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match="__metadata__"):
        load_parts(qfile)


def test_wrong_format_tag(qfile):
    meta, tensors = read_tensors(qfile)
    meta["format"] = "onnx"
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match="not an edgelstm artifact"):
        load_parts(qfile)


def test_future_format_version(qfile):
    meta, tensors = read_tensors(qfile)
    meta["format_version"] = "5"
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match=r"unsupported format_version '5'.*reads format_version 1, 2, 3, 4"):
        load_parts(qfile)


def test_versions_1_and_2_with_int8_gru_rnn_ask_for_requantization(qfile):
    """Format 3 replaced the int8 GRU / RNN scheme: older files holding one are refused with what to do."""
    meta, tensors = read_tensors(qfile)
    for version in ("1", "2"):
        meta["format_version"] = version
        write_tensors(qfile, meta, tensors)
        with pytest.raises(ArtifactError, match="re-quantize the float model"):
            load_parts(qfile)


def test_version_1_dense_scale_is_read_per_channel(tmp_path):
    """Version 1 stored one Dense weight scale per tensor; it loads as that scale on every channel."""
    spec = random_model([LAYERS[0], LAYERS[3]], input_size=7, seed=1)
    qfile = tmp_path / "v1.elstm"
    save_parts(qfile, spec, make_quant(spec))
    meta, tensors = read_tensors(qfile)
    spec2, quant2 = load_parts(qfile)
    k = next(i for i, l in enumerate(spec2.layers) if l.kind == "dense")
    name = f"q.{k}.0.w_scale"
    tag, shape, raw = tensors[name]
    tensors[name] = [tag, [1], raw[:4]]
    meta["format_version"] = "1"
    write_tensors(qfile, meta, tensors)
    _, quant1 = load_parts(qfile)
    one = np.frombuffer(raw[:4], np.float32)
    np.testing.assert_array_equal(quant1.layers[k][0]["w_scale"], np.repeat(one, spec2.layers[k].output_size))
    meta["format_version"] = "2"  # a version-2 file must carry one scale per channel
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match="w_scale"):
        load_parts(qfile)


def test_missing_tensor(qfile):
    meta, tensors = read_tensors(qfile)
    del tensors["q.1.0.b_h"]
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match=r"missing tensor.*q\.1\.0\.b_h"):
        load_parts(qfile)


def test_extra_tensor(qfile):
    meta, tensors = read_tensors(qfile)
    tensors["q.0.0.bogus"] = ["I8", [3], b"\x00\x01\x02"]
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match=r"unexpected tensor.*q\.0\.0\.bogus"):
        load_parts(qfile)


def test_wrong_dtype(qfile):
    meta, tensors = read_tensors(qfile)
    tensors["f.0.0.w_x"][0] = "I32"  # same byte count, wrong type
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match=r"f\.0\.0\.w_x.*dtype I32, expected F32"):
        load_parts(qfile)
    meta, tensors = read_tensors(qfile)
    tensors["f.0.0.w_x"][0] = "F64"
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match="unsupported dtype 'F64'"):
        load_parts(qfile)


def test_wrong_shape(qfile):
    meta, tensors = read_tensors(qfile)
    tensors["q.1.0.w_x"][1] = tensors["q.1.0.w_x"][1][::-1]  # same size, transposed
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match=r"q\.1\.0\.w_x.*shape"):
        load_parts(qfile)
    meta, tensors = read_tensors(qfile)
    tensors["q.1.0.w_x"][1] = [1, -2]
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match="non-negative"):
        load_parts(qfile)


def test_size_disagrees_with_shape(qfile):
    header, buf = read_raw(qfile)
    header["q.0.0.b"]["shape"] = [header["q.0.0.b"]["shape"][0] + 1]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match=r"q\.0\.0\.b.*needs"):
        load_parts(qfile)


def test_offsets_out_of_range(qfile):
    header, buf = read_raw(qfile)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    b, e = header[last]["data_offsets"]
    header[last]["data_offsets"] = [b + 8, e + 8]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match="out of range"):
        load_parts(qfile)
    header[last]["data_offsets"] = [e, b]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match="begin <= end"):
        load_parts(qfile)


def test_overlapping_offsets(qfile):
    header, buf = read_raw(qfile)
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    b, e = header[names[1]]["data_offsets"]
    header[names[1]]["data_offsets"] = [b - 4, e - 4]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match="overlap"):
        load_parts(qfile)


def test_gap_and_trailing_bytes(qfile):
    header, buf = read_raw(qfile)
    write_raw(qfile, header, buf + b"\x00" * 4)
    with pytest.raises(ArtifactError, match="unused bytes"):
        load_parts(qfile)
    meta, tensors = read_tensors(qfile)
    header, buf = read_raw(qfile)
    first = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    del header[first]
    write_raw(qfile, header, buf)
    with pytest.raises(ArtifactError, match="gap"):
        load_parts(qfile)


@pytest.mark.parametrize("value", [0.0, float("nan"), -0.01, float("inf")])
def test_bad_weight_scale(qfile, value):
    def set_scale(a):
        a[1] = value
    edit_tensor(qfile, "q.0.1.w_h_scale", set_scale, "<f4")
    with pytest.raises(ArtifactError, match=r"layer 0 \(lstm\) direction 1 w_h_scale: scale"):
        load_parts(qfile)


@pytest.mark.parametrize("value", [0.0, -0.5, 1e300])
def test_bad_activation_scale(qfile, value):
    edit_model_meta(qfile, lambda m: m["act_quant"][2].__setitem__(0, value))
    with pytest.raises(ArtifactError, match=r"act\[2\]: scale"):
        load_parts(qfile)


def test_nan_scale_in_metadata_json(qfile):
    meta, tensors = read_tensors(qfile)
    meta["model"] = meta["model"].replace("[[", "[[NaN,0],[", 1)  # also one pair too many
    write_tensors(qfile, meta, tensors)
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_parts(qfile)


def test_cell_exp_out_of_range(qfile):
    edit_tensor(qfile, "q.0.0.cell_exp", lambda a: a.fill(-20), "<i4")
    with pytest.raises(ArtifactError, match="cell_exp -20"):
        load_parts(qfile)


def test_weights_minus_128(qfile):
    edit_tensor(qfile, "q.1.0.w_h", lambda a: a.__setitem__(5, -128), "i1")
    with pytest.raises(ArtifactError, match=r"w_h: weights must be narrow range"):
        load_parts(qfile)


def test_zero_point_300(qfile, tmp_path):
    edit_tensor(qfile, "q.3.0.pre_zp", lambda a: a.fill(300), "<i4")
    with pytest.raises(ArtifactError, match=r"pre_zp: zero point \[300\]"):
        load_parts(qfile)
    edit_tensor(qfile, "q.3.0.pre_zp", lambda a: a.fill(0), "<i4")
    load_parts(qfile)
    edit_model_meta(qfile, lambda m: m["act_quant"][1].__setitem__(1, 300))
    with pytest.raises(ArtifactError, match=r"act\[1\]: zero point 300"):
        load_parts(qfile)


def test_nan_float_weight(qfile):
    edit_tensor(qfile, "f.2.0.w_h", lambda a: a.__setitem__(0, np.nan), "<f4")
    with pytest.raises(ArtifactError, match="NaN"):
        load_parts(qfile)


def test_layer_wiring_mismatch(qfile):
    edit_model_meta(qfile, lambda m: m["layers"][1].__setitem__("input_size", 9))
    with pytest.raises(ArtifactError, match="layer 1 .*expects 9 input features but layer 0 emits 8"):
        load_parts(qfile)


@pytest.mark.parametrize("edit, why", [
    (lambda m: m["layers"][0].__setitem__("output_size", 99), "output_size"),
    (lambda m: m["layers"][1].__setitem__("surprise", 1), "surprise"),
    (lambda m: m["layers"][2].__setitem__("kind", "transformer"), "unknown layer kind"),
    (lambda m: m["layers"][0].__delitem__("hidden_size"), "malformed description"),
    (lambda m: m["layers"][0].__setitem__("proj_size", "x"), "malformed description"),
    (lambda m: m["layers"][3].__setitem__("output_size", 0), "positive int"),
    (lambda m: m.__setitem__("has_weights", "yes"), "has_weights"),
    (lambda m: m.__setitem__("act_quant", [[0.1, "z"]]), "act_quant"),
    (lambda m: m["act_quant"].pop(), r"expected 5 \(scale, zero_point\)"),
    (lambda m: m.__setitem__("layers", []), "non-empty list"),
])
def test_bad_model_description(qfile, edit, why):
    edit_model_meta(qfile, edit)
    with pytest.raises(ArtifactError, match=why):
        load_parts(qfile)


def test_no_weights_and_no_quant(qfile):
    edit_model_meta(qfile, lambda m: m.update(has_weights=False, act_quant=None))
    with pytest.raises(ArtifactError, match="neither float weights nor quantized"):
        load_parts(qfile)


def test_random_header_byte_flips(qfile):
    data = qfile.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    loaded = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        bad = bytearray(data)
        for pos in rng.integers(0, 8 + n, size=int(rng.integers(1, 4))):
            bad[pos] ^= 1 << int(rng.integers(0, 8))
        qfile.write_bytes(bytes(bad))
        try:
            load_parts(qfile)
            loaded += 1
        except ArtifactError:
            pass
    assert loaded < 200


def test_random_data_byte_flips(qfile):
    data = qfile.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        bad = bytearray(data)
        for pos in rng.integers(8 + n, len(data), size=int(rng.integers(1, 6))):
            bad[pos] = int(rng.integers(0, 256))
        qfile.write_bytes(bytes(bad))
        try:
            load_parts(qfile)
        except ArtifactError:
            pass

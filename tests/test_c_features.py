"""C bundles compile only what their model uses (ELSTM_WITH_* macros in the bundle's generated elstm_records.h):
the layer kinds (LSTM, Dense, op graphs), Dense softmax, and the op kernels of op graphs. A build without the
macros (the native library, the harness runners) holds every kind. elstm_init rejects a record of a kind,
activation or op its build left out (cleanly: under ASan/UBSan, before anything runs), every subset compiles
warning-free under the strict flags with gcc and clang, and the trimmed bundles stream bit for bit."""
import itertools
import os
import shutil
import subprocess

import numpy as np
import pytest

import edgelstm as el
from edgelstm.program.c_program import c_arrays, runtime_features
from edgelstm.errors import FirmwareError
from edgelstm.export.to_c import records_header, to_c
from edgelstm.firmware_host import STRICT_CFLAGS, build, check, run

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
pytestmark = needs_cc
FW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware_host")
CELLS = os.path.join(os.path.dirname(__file__), "fixtures", "tflite_cells")


def _quantized(layers, I=12, seed=0):
    spec = el.random_model(layers, input_size=I, seed=seed)
    rng = np.random.default_rng(seed)
    return el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 40, I)).astype(np.float32),
                       progress=False)


@pytest.fixture(scope="module")
def models():
    from edgelstm.export import from_tflite
    return {
        "lstm": _quantized([{"kind": "lstm", "hidden_size": 16}, {"kind": "dense", "output_size": 4,
                                                                  "activation": "sigmoid"}]),
        "gru": _quantized([{"kind": "gru", "hidden_size": 16}, {"kind": "dense", "output_size": 4,
                                                                "activation": "sigmoid"}]),
        "rnn_relu": _quantized([{"kind": "rnn", "hidden_size": 16, "nonlinearity": "relu"}]),
        "gru_softmax": _quantized([{"kind": "gru", "hidden_size": 16}, {"kind": "dense", "output_size": 4,
                                                                        "activation": "softmax"}]),
        "converter_gru": from_tflite(os.path.join(CELLS, "gru_after_a_int8.tflite")),
        "converter_rnn": from_tflite(os.path.join(CELLS, "rnn_a_int8.tflite")),
    }


def test_runtime_features_name_what_the_model_uses(models):
    f = {k: runtime_features(c_arrays(m._prep, spec=m.spec)[0]) for k, m in models.items()}
    assert f["lstm"] == ["ELSTM_WITH_LSTM", "ELSTM_WITH_DENSE"]
    assert f["gru"] == ["ELSTM_WITH_DENSE", "ELSTM_WITH_OPS", "ELSTM_WITH_OP_CONV16", "ELSTM_WITH_OP_ACT16",
                        "ELSTM_WITH_OP_ADD", "ELSTM_WITH_OP_MUL", "ELSTM_WITH_OP_REQUANT"]
    assert f["rnn_relu"] == ["ELSTM_WITH_OPS", "ELSTM_WITH_OP_CONV16", "ELSTM_WITH_OP_ADD", "ELSTM_WITH_OP_REQUANT"]
    assert "ELSTM_WITH_SOFTMAX" in f["gru_softmax"] and "ELSTM_WITH_SOFTMAX" not in f["gru"]
    assert {"ELSTM_WITH_OP_FC", "ELSTM_WITH_OP_LUT", "ELSTM_WITH_OP_CONSTS", "ELSTM_WITH_OP_STATE8"} <= \
        set(f["converter_gru"])
    assert "ELSTM_WITH" not in records_header()          # the harness / native build: every kind


def _bundle(model, path):
    return to_c(model, path, tables=False)


def _transplant(runtime_of, data_of, tmp_path):
    """A bundle whose runtime (edgelstm.c + elstm_records.h) was generated for one model, with another model's
    data (model_data.c / .h)."""
    a = _bundle(runtime_of, tmp_path / "runtime")
    b = _bundle(data_of, tmp_path / "data")
    for n in ("model_data.c", "model_data.h"):
        shutil.copyfile(b / n, a / n)
    return a


@pytest.mark.parametrize("runtime_of, data_of", [("gru", "lstm"), ("lstm", "gru"), ("gru", "gru_softmax"),
                                                 ("gru", "converter_gru"), ("rnn_relu", "gru"),
                                                 ("converter_gru", "lstm"), ("converter_rnn", "converter_gru")])
def test_init_rejects_a_kind_the_bundle_left_out(runtime_of, data_of, models, tmp_path):
    bundle = _transplant(models[runtime_of], models[data_of], tmp_path)
    exe = build(bundle, sanitize=True)
    X = np.zeros((3, models[data_of].input_size), np.float32)
    with pytest.raises(FirmwareError, match="model rejected"):
        run(exe, X)
    # the same runtime built with every kind runs that model
    exe = build(bundle, cflags=STRICT_CFLAGS + ["-DELSTM_ALL_KINDS"], exe=tmp_path / "all")
    got = run(exe, X)
    assert np.array_equal(got.view(np.int32), models[data_of].stream().step_many(X).view(np.int32))


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_relu", "gru_softmax", "converter_gru", "converter_rnn"])
def test_trimmed_bundles_stream_bit_exact_and_are_smaller(name, models, tmp_path):
    model = models[name]
    rng = np.random.default_rng(1)
    X = (2.0 * rng.standard_normal((200, model.input_size))).astype(np.float32)
    report = check(model, X, workdir=tmp_path / "b", sanitize=True, tables=False)
    assert report.equal, report
    sizes = {}
    for extra in ([], ["-DELSTM_ALL_KINDS"]):
        obj = tmp_path / f"e{len(extra)}.o"
        subprocess.run(["cc", *STRICT_CFLAGS, "-Os", *extra, "-I", str(tmp_path / "b"), "-c", "-o", str(obj),
                        str(tmp_path / "b" / "edgelstm.c")], check=True)
        sizes[bool(extra)] = obj.stat().st_size
    assert sizes[False] < sizes[True], sizes


KINDS = ["ELSTM_WITH_LSTM", "ELSTM_WITH_DENSE", "ELSTM_WITH_OPS"]
OPS = ["ELSTM_WITH_OP_FC", "ELSTM_WITH_OP_CONV16", "ELSTM_WITH_OP_ACT16", "ELSTM_WITH_OP_ADD", "ELSTM_WITH_OP_MUL",
       "ELSTM_WITH_OP_REQUANT", "ELSTM_WITH_OP_LUT", "ELSTM_WITH_OP_CONSTS", "ELSTM_WITH_OP_STATE8"]


def _subsets():
    out = [[]]
    for r in (1, 2, 3):
        for kinds in itertools.combinations(KINDS, r):
            out.append(list(kinds))
            if "ELSTM_WITH_DENSE" in kinds:
                out.append(list(kinds) + ["ELSTM_WITH_SOFTMAX"])
    for op in OPS:                                           # each op alone, and all but it
        out.append(["ELSTM_WITH_OPS", op])
        out.append(["ELSTM_WITH_OPS", "ELSTM_WITH_DENSE"] + [o for o in OPS if o != op])
    return out


@pytest.mark.parametrize("cc", ["cc", "clang"])
def test_every_feature_subset_compiles_warning_free(cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"no {cc}")
    for rel in ("include/edgelstm.h", "src/edgelstm.c", "src/fixedpoint.h", "src/gemmlowp16.h"):
        shutil.copyfile(os.path.join(FW, rel), tmp_path / os.path.basename(rel))
    (tmp_path / "elstm_records.h").write_text(records_header())
    for defs in _subsets():
        for simd in ([], ["-DELSTM_NO_SIMD"]):
            res = subprocess.run([cc, *STRICT_CFLAGS, *simd, *[f"-D{d}" for d in defs], "-I", str(tmp_path), "-c",
                                  "-o", str(tmp_path / "x.o"), str(tmp_path / "edgelstm.c")],
                                 capture_output=True, text=True)
            assert res.returncode == 0, (defs, simd, res.stderr)


# ---- the C program's compact CONV16 rows (c_program.conv16_packed / conv16_groups)

def test_conv16_rows_pack_and_unpack_exactly():
    from edgelstm.program.c_program import conv16_groups, conv16_packed, conv16_rows
    rng = np.random.default_rng(0)
    m = rng.integers(1 << 30, 1 << 31, 301)
    m[:3] = [1 << 30, 0x7FFF0000 - 1, (1 << 31) - 1]          # the rounding edges of m16
    shift = rng.integers(-31, 8, 301)
    pairs = np.stack([m, shift], 1).ravel()
    m16, t = conv16_rows(pairs)
    assert m16.min() >= 0x4000 and m16.max() <= 0x7FFF and t.min() >= 8 and t.max() <= 46
    groups = conv16_groups(t)
    assert groups[0][0] == 0 and groups[-1][1] == 301 and all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
    for a, b in groups:
        assert int(t[a:b].max()) - int(t[a:b].min()) <= 3
        t0 = min(int(t[a:b].min()), 43)                       # as c_program picks it
        words = conv16_packed(m16[a:b], t[a:b], t0).view(np.uint32).astype(np.int64)
        e = np.stack([words & 0xFFFF, words >> 16], 1).ravel()[:b - a]
        assert np.array_equal(0x4000 + (e & 0x3FFF), m16[a:b]) and np.array_equal(t0 + (e >> 14), t[a:b])


def test_conv16_with_widely_spread_shifts_splits_and_streams_bit_exact(tmp_path):
    """A GRU whose weight rows span 2^-5 .. 2^5 in scale: its CONV16 row shifts spread over more than four
    values, so the C copy splits those convs into records of row ranges; the bundle is bit-exact."""
    from edgelstm.program.c_program import c_ops
    from edgelstm.program import layout as L
    spec = el.random_model([{"kind": "gru", "hidden_size": 24}], input_size=10, seed=4)
    d = spec.layers[0].directions[0]
    for name in ("w_x", "w_h"):
        d[name] = (d[name] * (2.0 ** (np.arange(d[name].shape[0]) % 11 - 5))[:, None]).astype(np.float32)
    rng = np.random.default_rng(4)
    model = el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 60, 10)).astype(np.float32),
                        progress=False)
    prep = model._prep
    prog, _, _ = c_arrays(prep, spec=model.spec)
    rec = int(prog[L.G_LAYER0]) + L.L_HDR
    jit_rec = int(prep.prog[L.G_LAYER0]) + L.L_HDR
    assert int(prog[rec + L.OG_NOPS]) > int(prep.prog[jit_rec + L.OG_NOPS])       # split
    assert sum(c == L.OPK_CONV16 for _, c in c_ops(prog, rec)) > 6
    X = (2.0 * rng.standard_normal((300, 10))).astype(np.float32)
    report = check(model, X, workdir=tmp_path / "b", sanitize=True, tables=False)
    assert report.equal, report


def test_work_buffers_are_what_the_layers_touch():
    """c_buffers: the GRU tagger's gates buffer is its op-graph arena (488 elements by lifetime), acc its Dense
    outputs, aux unused; an LSTM tagger needs 4H gate rows and H hidden values. (The harness runners allocate
    exactly these under ASan / UBSan, so an undersized buffer fails every bit-exact test.)"""
    from edgelstm.program.c_program import c_work_buffers
    from edgelstm.data import __path__ as data
    gru = el.load(os.path.join(list(data)[0], "tagger_gru_int8.elstm"))
    assert c_work_buffers(gru._prep, spec=gru.spec) == {"gates": 488, "acc": 4, "aux": 1, "scratch": 488}
    lstm = el.load(os.path.join(list(data)[0], "tagger_lstm_int8.elstm"))
    H = lstm.spec.layers[0].hidden_size
    b = c_work_buffers(lstm._prep, spec=lstm.spec)
    assert b["gates"] == b["acc"] == b["scratch"] == 4 * H and b["aux"] == H
    assert b["scratch"] <= lstm._prep.scratch and 488 < gru._prep.scratch

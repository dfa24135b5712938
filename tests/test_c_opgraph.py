"""Op-graph layers (kind "ops": imported TFLite step graphs) in the C99 runtime, bit for bit with the Numba
stream: the 10 converter-made int8 cell graphs of tests/fixtures/tflite_cells (from_tflite, as
test_tflite_cells.py imports them), 1,000 steps each with the state fed back, through the C host harness
(strict gcc under ASan/UBSan, clang, the AVX2 build, a to_c bundle), the ctypes backend and, in the slow suite,
aarch64 and Cortex-M4 under qemu; malformed op records are rejected by elstm_init. Then edgelstm's own int8
GRU / RNN layers, which prepare() lowers to int16 op graphs (CONV16, ACT16 and int16 ADD / SUB / MUL / QUANTIZE
records): the four variants bit for bit in C and on the native backend, malformed int16 records rejected."""
import os
import shutil

import numpy as np
import pytest

import edgelstm.program.c_program as c_program
from edgelstm.backends import native
from edgelstm.errors import FirmwareError
from edgelstm.export import from_tflite
from edgelstm.firmware_host import STRICT_CFLAGS, build_native, build_runner, check, run_many
from edgelstm.program import layout as L

from conftest import native_library_env

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "tflite_cells")
NAMES = sorted(f[:-len("_int8.tflite")] for f in os.listdir(HERE) if f.endswith("_int8.tflite"))
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
needs_a64 = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                               reason="SKIPPED LOUDLY: aarch64 cross build needs apt-get install "
                                      "gcc-aarch64-linux-gnu qemu-user")
pytestmark = needs_cc


def _load(name):
    model = from_tflite(os.path.join(HERE, f"{name}_int8.tflite"))
    assert model.is_quantized and model.spec.layers[0].kind == "ops"
    X = np.load(os.path.join(HERE, f"{name}.npz"))["X"]
    return model, X.reshape(X.shape[0], -1).astype(np.float32)


@pytest.fixture(scope="module")
def cases():
    out = [_load(n) for n in NAMES]
    assert len(out) == 10 and all(X.shape[0] == 1000 for _, X in out)
    return out


def _assert_bits_equal(cases, outputs, what, names=NAMES):
    bad = []
    for name, (m, X), got in zip(names, cases, outputs):
        want = m.stream().step_many(X)
        if not np.array_equal(got.view(np.int32), want.view(np.int32)):
            t, o = np.argwhere(got.view(np.int32) != want.view(np.int32))[0]
            bad.append((name, int(t), int(o), got[t, o], want[t, o]))
    assert not bad, f"{what}: {len(bad)} of {len(cases)} op graphs differ, first {bad[:3]}"
    assert all(np.ptp(o, axis=0).max() > 0 for o in outputs)     # not vacuous: every output stream moves


@pytest.mark.parametrize("which", ["cases", "cell_cases"])   # converter graphs; int8 GRU / RNN cell graphs
@pytest.mark.parametrize("build", ["gcc-asan-ubsan", "clang-avx2"])
def test_op_graphs_host_builds_bit_exact(which, build, request, tmp_path):
    if build == "clang-avx2" and shutil.which("clang") is None:
        pytest.skip("no clang")
    graphs = request.getfixturevalue(which)
    exe = build_runner(tmp_path, cc="cc", sanitize=True) if build == "gcc-asan-ubsan" else \
        build_runner(tmp_path, cc="clang", cflags=STRICT_CFLAGS + ["-mavx2"])   # strict C99; findings abort
    _assert_bits_equal(graphs, run_many(exe, graphs), build, names=NAMES if which == "cases" else CELL_LAYERS)


def test_opgraph_to_c_bundle_streams_bit_exact(cases, tmp_path):
    """The exported bundle (model_data.c + example streamer, elstm_init/elstm_reset) for two graphs, one of
    them a GRU whose state tensors start at a non-zero zero point."""
    for name in ("gru_after_a", "lstm_b_bias"):
        model, X = cases[NAMES.index(name)]
        report = check(model, X, workdir=tmp_path / name, sanitize=True)
        assert report.equal, report


def test_opgraph_state_starts_at_its_zero_points(cases):
    """The C copy of the program carries every op-graph state tensor's zero point for elstm_reset."""
    model, _ = cases[NAMES.index("gru_after_a")]
    prog, _, _ = c_program.c_arrays(model._prep, spec=model.spec)
    lo = int(prog[L.G_LAYER0])
    zps = [int(model.spec.layers[0].state_quant(i)[1]) for i in range(len(model.spec.layers[0].state_shapes()))]
    assert list(prog[int(prog[lo + c_program.L_ZPS]):][:len(zps)]) == zps
    assert any(z != 0 for z in zps)


def _corrupt(monkeypatch, how):
    real = c_program.c_arrays

    def corrupted(prep, **kw):
        prog, w8, blob = real(prep, **kw)
        prog = prog.copy()
        how(prog, blob.size, prep.scratch)
        return prog, w8, blob
    monkeypatch.setattr(c_program, "c_arrays", corrupted)


def _op(prog, code):
    """The first op record of ``code`` in the C program (c_program.c_program: records of their C length)."""
    for r, c in c_program.c_ops(prog, int(prog[L.G_LAYER0]) + L.L_HDR):
        if c == code:
            return r
    raise AssertionError(f"no op {code}")


def _rec(prog):
    return int(prog[L.G_LAYER0]) + L.L_HDR


CORRUPTIONS = {
    "fc weights past the blob": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_FC) + 4, nb - 3),
    "fc output past the arena": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_FC) + 12, na - 1),
    "fc shift out of range": lambda p, nb, na: p.__setitem__(int(p[_op(p, L.OPK_FC) + 7]) + 1, 40),
    "lut table past the blob": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_LUT) + 5, nb - 100),
    "mul input negative": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_MUL) + 3, -1),
    "unknown op code": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_MUL), L.OPK_TANH),
    "op count past prog": lambda p, nb, na: p.__setitem__(_rec(p) + L.OG_NOPS, 1 << 20),
    "state past the state block": lambda p, nb, na: p.__setitem__(int(p[_rec(p) + L.OG_STATES]) + 3, 1 << 16),
    "state table past the blob": lambda p, nb, na: p.__setitem__(int(p[_rec(p) + L.OG_STATES]) + 4, nb),
    "graph input wider than the layer": lambda p, nb, na: p.__setitem__(_rec(p) + L.OG_NX, 1 << 12),
}


@pytest.fixture(scope="module")
def asan_runner(tmp_path_factory):
    return build_runner(tmp_path_factory.mktemp("asan"), cc="cc", sanitize=True)


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_malformed_opgraph_is_rejected(what, cases, asan_runner, monkeypatch):
    model, X = cases[NAMES.index("gru_after_a")]
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0")   # the runner's early exit leaves its buffers
    run_many(asan_runner, [(model, X[:5])])             # the intact model runs
    _corrupt(monkeypatch, CORRUPTIONS[what])
    with pytest.raises(FirmwareError, match="rejected"):
        run_many(asan_runner, [(model, X[:5])])


@pytest.fixture(scope="module")
def native_lib(tmp_path_factory):
    with native_library_env(build_native(out=tmp_path_factory.mktemp("native") / native.LIB_NAME)) as path:
        yield path


def _streams_by_backend(model, monkeypatch, name):
    """(JIT stream, native stream) of one model; the library is looked up once per process: search again."""
    streams = {}
    for backend in ("jit", "native"):
        monkeypatch.setenv("EDGELSTM_BACKEND", backend)
        native._searched, native._lib = False, None
        streams[backend] = model.stream()
    assert isinstance(streams["native"]._step_kernel, native.NativeStep), name
    assert not isinstance(streams["jit"]._step_kernel, native.NativeStep), name
    return streams["jit"], streams["native"]


@pytest.mark.parametrize("which", ["cases", "cell_cases"])   # converter graphs; int8 GRU / RNN cell graphs
def test_opgraphs_native_backend_equals_jit(which, request, native_lib, monkeypatch):
    graphs = request.getfixturevalue(which)
    for name, (model, X) in zip(NAMES if which == "cases" else CELL_LAYERS, graphs):
        s_jit, s_nat = _streams_by_backend(model, monkeypatch, name)
        a = np.array([s_nat.step(x).copy() for x in X])
        b = np.array([s_jit.step(x).copy() for x in X])
        assert np.array_equal(a.view(np.int32), b.view(np.int32)), name
        assert np.ptp(a) > 0
        for u, v in zip(s_nat.state, s_jit.state):       # the state fed back lives where the JIT keeps it
            for du, dv in zip(u, v):
                for k in du:
                    assert np.array_equal(du[k], dv[k]), (name, k)


@pytest.mark.slow
@needs_a64
def test_opgraphs_aarch64_under_qemu_bit_exact(cases, tmp_path):
    pick = [NAMES.index(n) for n in ("gru_after_b", "gru_before_a", "lstm_a_bias", "rnn_relu_b")]
    sub = [cases[i] for i in pick]
    exe = build_runner(tmp_path, cc="aarch64-linux-gnu-gcc", ldflags=["-static"])
    outs = run_many(exe, sub, runner=["qemu-aarch64"])
    bad = [NAMES[i] for i, (m, X), got in zip(pick, sub, outs)
           if not np.array_equal(got.view(np.int32), m.stream().step_many(X).view(np.int32))]
    assert not bad, f"aarch64/qemu: {bad} differ"


@pytest.mark.slow
@needs_a64
def test_cell_graphs_aarch64_under_qemu_bit_exact(cell_cases, tmp_path):
    """edgelstm's own int8 GRU / RNN graphs on aarch64: the NEON CONV16 dot (K = 11 and 24..39: the 8-wide
    loop and the scalar tail)."""
    exe = build_runner(tmp_path, cc="aarch64-linux-gnu-gcc", ldflags=["-static"])
    _assert_bits_equal(cell_cases, run_many(exe, cell_cases, runner=["qemu-aarch64"]), "aarch64/qemu",
                       names=CELL_LAYERS)


needs_m4 = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                              reason="SKIPPED LOUDLY: Cortex-M build needs apt-get install gcc-arm-none-eabi "
                                     "libnewlib-arm-none-eabi qemu-system-arm")


@pytest.mark.slow
@needs_m4
def test_opgraphs_cortex_m4_under_qemu_bit_exact(cases, tmp_path):
    """The same four op graphs on the Cortex-M4 build (SMLAD dot loop, semihosting under qemu-system-arm)."""
    from edgelstm.firmware_host import build_cortex_m_runner, cortex_m_runner
    pick = [NAMES.index(n) for n in ("gru_after_b", "gru_before_a", "lstm_a_bias", "rnn_relu_b")]
    sub = [cases[i] for i in pick]
    exe = build_cortex_m_runner(tmp_path)
    outs = run_many(exe, sub, runner=cortex_m_runner)
    bad = [NAMES[i] for i, (m, X), got in zip(pick, sub, outs)
           if not np.array_equal(got.view(np.int32), m.stream().step_many(X).view(np.int32))]
    assert not bad, f"Cortex-M4/qemu: {bad} differ"


# ---- edgelstm's own int8 GRU / RNN: prepare() lowers every direction to an int16 op graph (cellgraph.py) with
# CONV16 (16x8 1x1 conv) and ACT16 (int16 LOGISTIC / TANH) records next to int16 ADD / SUB / MUL / QUANTIZE.

CELL_LAYERS = {"gru_after": {"kind": "gru", "reset_after": True}, "gru_before": {"kind": "gru", "reset_after": False},
               "rnn_tanh": {"kind": "rnn", "nonlinearity": "tanh"}, "rnn_relu": {"kind": "rnn", "nonlinearity": "relu"}}


def _cell_case(name, seed):
    """A one-layer int8 GRU / RNN (+ Dense head) with large weights and 1,000 frames at 3x the calibration
    range, pushing the int16 pre-activations toward their limits (the random-state test below reaches both
    ACT16 branches, saturated and interpolated: seen with gcov on the C runtime when these tests were written)."""
    import edgelstm as el
    relu = name == "rnn_relu"
    spec = el.random_model([{**CELL_LAYERS[name], "hidden_size": 24 + 5 * seed},
                            {"kind": "dense", "output_size": 5, "activation": "none"}],
                           input_size=11, seed=seed, scale=0.3 if relu else 1.5)
    rng = np.random.default_rng(seed)
    model = el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 60, 11)).astype(np.float32),
                        progress=False)
    return model, (3.0 * rng.standard_normal((1000, 11))).astype(np.float32)


def _codes(prog, layer=0):
    rec = int(prog[L.G_LAYER0 + layer]) + L.L_HDR
    first = int(prog[rec + L.OG_OPS])
    return {int(prog[first + i * L.OPK_REC]) for i in range(int(prog[rec + L.OG_NOPS]))}


@pytest.fixture(scope="module")
def cell_cases():
    out = [_cell_case(n, k) for k, n in enumerate(CELL_LAYERS)]
    for (m, _), name in zip(out, CELL_LAYERS):
        prog = m._prep.prog
        assert int(prog[int(prog[L.G_LAYER0]) + L.L_KIND]) == L.KIND_OPS, name
        want = {L.OPK_CONV16, L.OPK_ADD, L.OPK_REQUANT, L.OPK_COPY} | \
            ({L.OPK_ACT16, L.OPK_SUB, L.OPK_MUL} if name.startswith("gru") else set()) | \
            ({L.OPK_ACT16} if name == "rnn_tanh" else set())
        assert want <= _codes(prog), (name, _codes(prog))
    return out




def test_cell_graph_to_c_bundle_streams_bit_exact(cell_cases, tmp_path):
    """The exported bundle (elstm_init / elstm_reset: the int16 state starts at 0) under ASan/UBSan."""
    for name in ("gru_before", "rnn_relu"):
        model, X = cell_cases[list(CELL_LAYERS).index(name)]
        report = check(model, X, workdir=tmp_path / name, sanitize=True)
        assert report.equal, report


def test_cell_graphs_native_backend_equals_jit(cell_cases, native_lib, monkeypatch):
    for name, (model, X) in zip(CELL_LAYERS, cell_cases):
        jit, nat = _streams_by_backend(model, monkeypatch, name)
        streams = {"jit": jit, "native": nat}
        a = np.array([streams["native"].step(x).copy() for x in X])
        b = np.array([streams["jit"].step(x).copy() for x in X])
        assert np.array_equal(a.view(np.int32), b.view(np.int32)), name
        assert np.array_equal(streams["native"].state[0][0]["h"], streams["jit"].state[0][0]["h"]), name


def test_cell_graphs_native_equals_jit_from_any_int16_state(cell_cases, native_lib, monkeypatch):
    """One step from 400 random int16 states (with the ends -32768 and 32767 in every unit): the CONV16
    inputs span all of int16, the int16 ADD / SUB / MUL saturate and ACT16 reaches both ends of its table."""
    for k, (name, (model, X)) in enumerate(zip(CELL_LAYERS, cell_cases)):
        jit, nat = _streams_by_backend(model, monkeypatch, name)
        streams = {"jit": jit, "native": nat}
        rng = np.random.default_rng(k)
        H = model.spec.layers[0].hidden_size
        for i in range(400):
            h = rng.integers(-32768, 32768, H).astype(np.int16)
            h[rng.random(H) < 0.2] = -32768 if i % 2 else 32767
            st = streams["jit"].state
            st[0][0]["h"] = h
            out = {}
            for b, s_ in streams.items():
                s_.state = st
                out[b] = (s_.step(X[i]).copy(), s_.state[0][0]["h"].copy())
            assert np.array_equal(out["native"][0].view(np.int32), out["jit"][0].view(np.int32)), (name, i)
            assert np.array_equal(out["native"][1], out["jit"][1]), (name, i)




CELL_CORRUPTIONS = {
    "conv16 weights past the blob": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 4, nb - 3),
    "conv16 weights negative": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 4, -1),
    "conv16 input past the arena": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 1, na - 1),
    "conv16 output past the arena": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 12, na - 1),
    "conv16 bias past prog": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 6, p.size - 1),
    "conv16 multipliers past prog": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 7, p.size - 1),
    # the C copy's CONV16 rows are two bytes, (t - t0) << 14 | (m16 - 0x4000), t0 in the record's [8]: every row
    # is valid once t0 is in 8..43 (t = 15 - shift in 8..46)
    "conv16 shift above 7": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 8, 7),
    "conv16 shift below -31": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 8, 44),
    "conv16 zero point": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 3, 1),
    "conv16 range past int16": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 11, 40000),
    "conv16 no rows": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_CONV16) + 5, 0),
    "act16 table past prog": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 8, p.size - 127),
    "act16 multiplier past 15 bits": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 6, 32768),
    "act16 multiplier negative": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 6, -1),
    "op record past prog": lambda p, nb, na: p.__setitem__(_rec(p) + L.OG_OPS, p.size - 3),
    "act16 table negative": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 8, -1),
    "act16 shift above 31": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 7, 32),
    "act16 shift negative": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 7, -1),
    "act16 tanh flag": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 5, 2),
    "act16 input past the arena": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 2, na - 1),
    "act16 output past the arena": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ACT16) + 4, na - 1),
    "int16 add range past int16": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ADD) + 15, -32769),
    "int16 add left shift": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_ADD) + 11, 32),
    "int16 mul range past int16": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_MUL) + 11, 32768),
    "int16 quantize range": lambda p, nb, na: p.__setitem__(_op(p, L.OPK_REQUANT) + 9, -40000),
}


@pytest.mark.parametrize("what", sorted(CELL_CORRUPTIONS))
def test_malformed_cell_graph_is_rejected(what, cell_cases, asan_runner, monkeypatch):
    model, X = cell_cases[list(CELL_LAYERS).index("gru_before")]
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0")
    run_many(asan_runner, [(model, X[:5])])             # the intact model runs
    _corrupt(monkeypatch, CELL_CORRUPTIONS[what])
    with pytest.raises(FirmwareError, match="rejected"):
        run_many(asan_runner, [(model, X[:5])])

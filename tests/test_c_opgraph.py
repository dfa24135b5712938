"""Op-graph layers (kind "ops": imported TFLite step graphs) in the C99 runtime, bit for bit with the Numba
stream: the 10 converter-made int8 cell graphs of tests/fixtures/tflite_cells (from_tflite, as
test_tflite_cells.py imports them), 1,000 steps each with the state fed back, through the C host harness
(strict gcc under ASan/UBSan, clang, the AVX2 build, a to_c bundle), the ctypes backend and, in the slow suite,
aarch64 and Cortex-M4 under qemu; malformed op records are rejected by elstm_init."""
import os
import shutil

import numpy as np
import pytest

import edgelstm.c_model as c_model
from edgelstm import native
from edgelstm.errors import FirmwareError
from edgelstm.export import from_tflite
from edgelstm.firmware_host import STRICT_CFLAGS, build_native, build_runner, check, run_many
from edgelstm.kernels import layout as L

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


def _assert_bits_equal(cases, outputs, what):
    bad = []
    for name, (m, X), got in zip(NAMES, cases, outputs):
        want = m.stream().step_many(X)
        if not np.array_equal(got.view(np.int32), want.view(np.int32)):
            t, o = np.argwhere(got.view(np.int32) != want.view(np.int32))[0]
            bad.append((name, int(t), int(o), got[t, o], want[t, o]))
    assert not bad, f"{what}: {len(bad)} of {len(cases)} op graphs differ, first {bad[:3]}"
    assert all(np.ptp(o, axis=0).max() > 0 for o in outputs)     # not vacuous: every output stream moves


def test_opgraphs_host_gcc_asan_ubsan_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="cc", sanitize=True)   # strict C99 flags; any finding aborts the run
    _assert_bits_equal(cases, run_many(exe, cases), "gcc ASan/UBSan")


@pytest.mark.skipif(shutil.which("clang") is None, reason="no clang")
def test_opgraphs_clang_avx2_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="clang", cflags=STRICT_CFLAGS + ["-mavx2"])
    _assert_bits_equal(cases, run_many(exe, cases), "clang -mavx2")


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
    prog, _, _ = c_model.c_arrays(model._prep, spec=model.spec)
    lo = int(prog[L.G_LAYER0])
    zps = [int(model.spec.layers[0].state_quant(i)[1]) for i in range(len(model.spec.layers[0].state_shapes()))]
    assert list(prog[int(prog[lo + c_model.L_ZPS]):][:len(zps)]) == zps
    assert any(z != 0 for z in zps)


def _corrupt(monkeypatch, how):
    real = c_model.c_arrays

    def corrupted(prep, **kw):
        prog, w8, blob = real(prep, **kw)
        prog = prog.copy()
        how(prog, blob.size, prep.scratch)
        return prog, w8, blob
    monkeypatch.setattr(c_model, "c_arrays", corrupted)


def _op(prog, code):
    rec = int(prog[L.G_LAYER0]) + L.L_HDR
    first = int(prog[rec + L.OG_OPS])
    for i in range(int(prog[rec + L.OG_NOPS])):
        if prog[first + i * L.OPK_REC] == code:
            return first + i * L.OPK_REC
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


def test_opgraphs_native_backend_equals_jit(cases, native_lib, monkeypatch):
    for name, (model, X) in zip(NAMES, cases):
        for backend in ("jit", "native"):       # the library is looked up once per process: search again
            monkeypatch.setenv("EDGELSTM_BACKEND", backend)
            native._searched, native._lib = False, None
            s = model.stream()
            s_jit, s_nat = (s, None) if backend == "jit" else (s_jit, s)
        assert isinstance(s_nat._step_kernel, native.NativeStep), name
        assert not isinstance(s_jit._step_kernel, native.NativeStep), name
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

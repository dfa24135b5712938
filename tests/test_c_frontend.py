"""The conv front-end kinds (Conv1D full / depthwise, pad, magnitude, activation, context) in the C99 runtime, bit for
bit with the Numba kernels: random int8 hybrids (tests/test_frontend.py's random_front_end + LSTM / GRU + Dense,
every option covered) streamed 1,000 steps with the context carried, on host gcc and clang (portable, AVX2,
ASan + UBSan), the native backend (the library ``python -m edgelstm.firmware_host build-native`` builds), trimmed
to_c bundles of two microcontroller-size hybrids, and (slow) aarch64 and Cortex-M4 under qemu. The float32
magnitude is compared with the JIT's exhaustive pair table on all 65,536 int8 pairs, also when the compiler may
contract a * b + c into an FMA."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgelstm as el
from edgelstm.backends import native
from edgelstm.firmware_host import (STRICT_CFLAGS, build_cortex_m_runner, build_runner, check,
                                    cortex_m_runner, run_many)
from c_cases import ALL_FRONTEND_VARIANTS, frontend_cases, frontend_variants
from test_firmware import A64_SDOT_CFLAGS, AVX2_CFLAGS, QEMU_A64_MAX, X86, _cpu_has_avx2, needs_a64, needs_m4

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
T = 1000
needs_avx2 = pytest.mark.skipif(not _cpu_has_avx2(), reason="SKIPPED LOUDLY: the AVX2 path needs an x86 CPU with "
                                                            "AVX2 to run on")


@pytest.fixture(scope="module")
def cases():
    out = frontend_cases(16, T=T)
    assert frontend_variants(out) >= ALL_FRONTEND_VARIANTS, ALL_FRONTEND_VARIANTS - frontend_variants(out)
    return out


@pytest.fixture(scope="module")
def want(cases):
    """The Numba stream's outputs (the reference every C build must equal)."""
    return [m.stream().step_many(X) for m, X in cases]


def _assert_equal(cases, want, got, what):
    bad = []
    for i, ((m, _), w, g) in enumerate(zip(cases, want, got)):
        diff = g.view(np.int32) != w.view(np.int32)
        if diff.any():
            t, o = np.argwhere(diff)[0]
            bad.append((i, [layer.kind for layer in m.spec.layers], int(diff.sum()), int(t), int(o)))
    assert not bad, f"{what}: {len(bad)} of {len(cases)} models differ (case, kinds, values, first t, o): {bad[:3]}"
    # not vacuous: the outputs move (the context carries the stream; a stuck runtime would not)
    assert all(np.ptp(g, axis=0).max() > 0 for g in got), what


def _cc(cc):
    if shutil.which(cc) is None:
        pytest.skip(f"SKIPPED LOUDLY: {cc} not installed")
    return cc


def test_cases_cover_every_front_end_option(cases):
    assert len(cases) == 16 and all(X.shape[0] == T for _, X in cases)


@pytest.mark.parametrize("cc", ["cc", "clang"])
def test_hybrids_host_bit_exact(cc, cases, want, tmp_path):
    exe = build_runner(tmp_path, cc=_cc(cc))           # x86-64 baseline: the portable dot loop
    _assert_equal(cases, want, run_many(exe, cases), f"{cc}")


@needs_avx2
@pytest.mark.parametrize("cc", ["cc", "clang"])
def test_hybrids_host_avx2_bit_exact(cc, cases, want, tmp_path):
    exe = build_runner(tmp_path, cc=_cc(cc), cflags=AVX2_CFLAGS)
    _assert_equal(cases, want, run_many(exe, cases), f"{cc} -mavx2")


@pytest.mark.parametrize("cc, simd", [("clang", False), pytest.param("cc", False, marks=pytest.mark.slow),
                                      pytest.param("cc", True, marks=needs_avx2),
                                      pytest.param("clang", True, marks=[needs_avx2, pytest.mark.slow])])
def test_hybrids_under_asan_ubsan(cc, simd, cases, want, tmp_path):
    """Every buffer allocated at exactly what c_program.c_buffers says the layers touch (harness/multi_runner.c)."""
    from test_c_fuzz import _links_sanitizers
    if not _links_sanitizers(_cc(cc), tmp_path):
        pytest.skip(f"SKIPPED LOUDLY: {cc} with ASan/UBSan runtimes missing")
    exe = build_runner(tmp_path, cc=cc, sanitize=True, cflags=AVX2_CFLAGS if simd else None)
    _assert_equal(cases, want, run_many(exe, cases), f"{cc} ASan/UBSan{' avx2' if simd else ''}")


@pytest.fixture(scope="module")
def native_lib(tmp_path_factory):
    """The no-JIT backend's library, built by its command."""
    path = tmp_path_factory.mktemp("native") / native.LIB_NAME
    subprocess.run([sys.executable, "-m", "edgelstm.firmware_host", "build-native", "-o", str(path)], check=True,
                   capture_output=True)
    return path


def test_hybrids_native_backend_bit_exact(cases, want, native_lib, monkeypatch):
    """EDGELSTM_BACKEND=native: the stream steps through the library on its own copy of the program, the context
    state in the JIT's work buffer (so state get / set and reset work on it)."""
    from conftest import native_library_env
    with native_library_env(native_lib, backend="native"):
        got = []
        for m, X in cases:
            s = m.stream()
            assert isinstance(s._step_kernel, native.NativeStep)
            got.append(np.array([s.step(x).copy() for x in X]))
            st = s.state
            s.reset()
            first = np.array([s.step(x).copy() for x in X[:50]])
            np.testing.assert_array_equal(first, got[-1][:50])   # reset: the context back at its zero point
            s.state = st
            np.testing.assert_array_equal(s.step(X[0]), m.stream().step_many(np.concatenate([X, X[:1]]))[-1])
    _assert_equal(cases, want, got, "native backend")


@pytest.mark.parametrize("name", ["mcu-front-end", "crnn-tagger"])
def test_mcu_hybrid_bundles_stream_bit_exact(name, tmp_path):
    """to_c bundles of the microcontroller-size hybrids (edgelstm.benchmark.cases.MCU_CONV_CASES), built with
    only the kinds they use, under ASan + UBSan: 1,000 frames equal the Numba stream."""
    from edgelstm.benchmark.cases import mcu_conv_case
    from edgelstm.program.c_program import c_arrays, runtime_features
    case = mcu_conv_case(name, T=T)
    q = case.int8_model
    features = runtime_features(c_arrays(q._prep, spec=q.spec)[0])
    assert features == {"mcu-front-end": ["ELSTM_WITH_CONV", "ELSTM_WITH_MAP", "ELSTM_WITH_MAGNITUDE",
                                          "ELSTM_WITH_LSTM", "ELSTM_WITH_DENSE"],
                        "crnn-tagger": ["ELSTM_WITH_CONV", "ELSTM_WITH_MAP", "ELSTM_WITH_DENSE", "ELSTM_WITH_OPS",
                                        "ELSTM_WITH_OP_CONV16", "ELSTM_WITH_OP_ACT16", "ELSTM_WITH_OP_ADD",
                                        "ELSTM_WITH_OP_MUL", "ELSTM_WITH_OP_REQUANT"]}[name]
    for tables in (False, True) if "ELSTM_WITH_LSTM" in features else (False,):   # only an LSTM reads tables
        report = check(q, case.frames, workdir=tmp_path / f"b{tables}", sanitize=True, tables=tables)
        assert report.frames == T and report.equal, str(report)
    assert np.ptp(q.stream().step_many(case.frames)) > 0


def test_silero_size_front_end_bit_exact(tmp_path):
    """The silero-size front end (576 samples per step, an STFT conv of 258 channels x 256 taps, magnitude, four
    convs, LSTM 128) in the C runtime, AVX2 where the CPU has it."""
    from edgelstm.benchmark.cases import front_end_case
    case = front_end_case(T=300)
    exe = build_runner(tmp_path, cflags=AVX2_CFLAGS if _cpu_has_avx2() else None)
    got = run_many(exe, [(case.int8_model, case.frames)])
    _assert_equal([(case.int8_model, case.frames)], [case.int8_model.stream().step_many(case.frames)], got,
                  "silero-size")


# ---- the float32 magnitude on every int8 pair

def _magnitude_model(s_in, zp_in, s_out, zp_out):
    """An int8 model of one Magnitude layer over 256 positions x (a, b): frame t holds a = t - 128 at every
    position and b = l - 128 at position l, so 256 frames hold all 65,536 pairs."""
    from edgelstm.quant.params import QuantParams
    from edgelstm.ir.frontend import Magnitude
    spec = el.ModelSpec(layers=[Magnitude(length=256, channels=1, directions=[{}])])
    q = el.Model(spec, QuantParams(act=[(np.float32(s_in), zp_in), (np.float32(s_out), zp_out)], layers=[[{}]]))
    codes = np.arange(-128, 128)
    a = np.repeat(codes[:, None], 256, axis=1)
    b = np.repeat(codes[None, :], 256, axis=0)
    X = (np.stack([a, b], axis=2).reshape(256, 512) - zp_in).astype(np.float32) * np.float32(s_in)
    return q, X


MAGNITUDE_SCALES = [(0.05, 0, 0.05, -128), (0.0123, -7, 0.031, -128), (3.3e-4, 100, 1.1e-3, -100),
                    (7.0, -128, 0.9, 5), (1e-3, 3, 2.5e-4, -128), (0.7, 127, 3.0, 0)]


def _magnitude_cases():
    from edgelstm.quant.ops_prepare import magnitude_table
    out = []
    for s_in, zp_in, s_out, zp_out in MAGNITUDE_SCALES:
        q, X = _magnitude_model(s_in, zp_in, s_out, zp_out)
        table = magnitude_table(s_in=np.float32(s_in), zp_in=zp_in, s_out=np.float32(s_out), zp_out=zp_out)
        want = q.stream().step_many(X)
        codes = np.round(want / np.float32(s_out)).astype(np.int64) + zp_out
        assert np.array_equal(codes.ravel(), table), "the JIT reads the pair table"
        out.append((q, X))
    return out


@pytest.fixture(scope="module")
def magnitude_cases():
    return _magnitude_cases()


def _magnitude_mismatches(exe, cases, runner=()):
    got = run_many(exe, cases, runner=runner)
    return [int((g.view(np.int32) != m.stream().step_many(X).view(np.int32)).sum()) for (m, X), g in zip(cases, got)]


@pytest.mark.parametrize("cc, flags", [("cc", []), ("clang", []), ("cc", ["-std=gnu99", "-ffp-contract=fast"]),
                                       ("clang", ["-ffp-contract=fast"])],
                         ids=["gcc", "clang", "gcc-contract-fast", "clang-contract-fast"])
def test_magnitude_equals_the_pair_table_on_every_pair(cc, flags, magnitude_cases, tmp_path):
    """All 65,536 pairs for six scale pairs; with -ffp-contract=fast (and -march=native: FMA on this CPU when it
    has one) too: the squares are exact double products rounded once, nothing to fuse."""
    native_arch = ["-march=native"] if X86 and flags else []
    exe = build_runner(tmp_path, cc=_cc(cc), cflags=STRICT_CFLAGS + native_arch + flags)
    assert _magnitude_mismatches(exe, magnitude_cases) == [0] * len(MAGNITUDE_SCALES)


def test_magnitude_check_catches_a_fused_square(magnitude_cases, tmp_path):
    """The comparison can fail: the float32 sum a'^2 + b'^2 taken as fmaf(a', a', b'^2) (one rounding less)
    differs from LiteRT's arithmetic on some pairs."""
    exe = build_runner(tmp_path / "b")
    src = tmp_path / "b" / "edgelstm.c"
    text = src.read_text()
    good = "float v = ELSTM_SQRTF(sq_a + sq_b) / s_out;"
    assert good in text
    src.write_text(text.replace(good, "float v = ELSTM_SQRTF(fmaf(fa, fa, sq_b)) / s_out;"))
    subprocess.run(["cc", "-std=c99", "-O2", "-I", str(tmp_path / "b"), "-o", str(exe),   # sq_a is unused now
                    *[str(tmp_path / "b" / f) for f in ("multi_runner.c", "edgelstm.c", "elstm_io.c")], "-lm"],
                   check=True)
    assert sum(_magnitude_mismatches(exe, magnitude_cases)) > 0


def test_soft_sqrt_equals_sqrtf(tmp_path):
    """src/softsqrt.h (builds without an FPU) == the host's sqrtf on +0 and every 97th positive normal float (the
    slow test: all of them)."""
    _sqrt_check(tmp_path, 97)


@pytest.mark.slow
def test_soft_sqrt_equals_sqrtf_on_every_float(tmp_path):
    _sqrt_check(tmp_path, 1)


def _sqrt_check(tmp_path, step):
    fw = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware_host")
    exe = tmp_path / "sqrt_check"
    subprocess.run(["cc", *STRICT_CFLAGS, "-I", os.path.join(fw, "src"), "-o", str(exe),
                    os.path.join(fw, "harness", "sqrt_check.c"), "-lm"], check=True)
    res = subprocess.run([str(exe), str(step)], capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0 and res.stdout.split()[-1] == "0", res.stdout
    assert int(res.stdout.split()[-3]) > (0x7F800000 - 0x00800000) // step


def test_soft_sqrt_build_bit_exact(cases, want, magnitude_cases, tmp_path):
    """The host build with -DELSTM_SOFT_SQRT (what a soft-float Cortex-M gets): hybrids and every magnitude pair."""
    exe = build_runner(tmp_path, cflags=STRICT_CFLAGS + ["-DELSTM_SOFT_SQRT"])
    _assert_equal(cases, want, run_many(exe, cases), "soft sqrt")
    assert _magnitude_mismatches(exe, magnitude_cases) == [0] * len(MAGNITUDE_SCALES)


# ---- the comparison can fail

@pytest.mark.parametrize("bug, fix", [
    ("return p < 0 ? -p : 2 * (length - 1) - p;", "return p < 0 ? -p - 1 : 2 * length - 1 - p;"),   # symmetric pad
    ("x[p * C + o / mult]", "x[p * C + o % C]"),                        # depthwise channel order
    ("int32_t first = l * stride - r[CV_PADL];", "int32_t first = l * stride;"),   # left padding ignored
])
def test_harness_detects_a_wrong_conv_runtime(bug, fix, cases, want, tmp_path):
    exe = build_runner(tmp_path, cc="cc")
    src = tmp_path / "edgelstm.c"
    text = src.read_text()
    assert bug in text
    src.write_text(text.replace(bug, fix))
    subprocess.run(["cc", *STRICT_CFLAGS, "-I", str(tmp_path), "-o", str(exe), str(tmp_path / "multi_runner.c"),
                    str(src), str(tmp_path / "elstm_io.c"), "-lm"], check=True)
    with pytest.raises(AssertionError, match="differ"):
        _assert_equal(cases, want, run_many(exe, cases), "broken")


# ---- cross targets (slow: qemu)

@pytest.mark.slow
@needs_a64
@pytest.mark.parametrize("sdot", [False, True], ids=["neon", "neon-sdot"])
def test_hybrids_aarch64_under_qemu_bit_exact(sdot, cases, want, magnitude_cases, tmp_path):
    exe = build_runner(tmp_path, cc="aarch64-linux-gnu-gcc", cflags=A64_SDOT_CFLAGS if sdot else None,
                       ldflags=["-static"])
    runner = QEMU_A64_MAX if sdot else ["qemu-aarch64"]
    _assert_equal(cases, want, run_many(exe, cases, runner=runner), "aarch64/qemu")
    assert _magnitude_mismatches(exe, magnitude_cases, runner=runner) == [0] * len(MAGNITUDE_SCALES)


@pytest.mark.slow
@needs_m4
@pytest.mark.parametrize("dsp", [True, False], ids=["smlad", "portable"])
def test_hybrids_cortex_m4_under_qemu_bit_exact(dsp, cases, want, magnitude_cases, tmp_path):
    """Soft float: newlib's sqrtf and libgcc's float32 arithmetic give the pair table's values too."""
    exe = build_cortex_m_runner(tmp_path, extra_cflags=[] if dsp else ["-DELSTM_NO_SIMD"])
    _assert_equal(cases, want, run_many(exe, cases, runner=cortex_m_runner), "Cortex-M4/qemu")
    assert _magnitude_mismatches(exe, magnitude_cases, runner=cortex_m_runner) == [0] * len(MAGNITUDE_SCALES)


@pytest.mark.slow
def test_hybrids_sweep_200_models_host(tmp_path):
    """200 more random hybrids x 1,000 steps on host gcc (AVX2 where the CPU has it) and gcc ASan + UBSan."""
    many = frontend_cases(200, T=T, seed_base=8181)
    ref = [m.stream().step_many(X) for m, X in many]
    exe = build_runner(tmp_path / "gcc", cflags=AVX2_CFLAGS if _cpu_has_avx2() else None)
    _assert_equal(many, ref, run_many(exe, many), "host cc")
    exe = build_runner(tmp_path / "asan", sanitize=True)
    _assert_equal(many, ref, run_many(exe, many), "host cc ASan/UBSan")


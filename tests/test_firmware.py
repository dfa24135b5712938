"""C99 firmware runtime vs the Numba runtime, bit for bit (host gcc/clang, ASan/UBSan, aarch64 under qemu,
Cortex-M4 under qemu-system-arm). Cross toolchains missing -> the test is skipped with a loud reason."""
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import FirmwareError, ModelError
from edgelstm.export.to_c import to_c
from edgelstm.firmware_host import (CORTEX_M_CFLAGS, CORTEX_M_LDFLAGS, SANITIZE_FLAGS, STRICT_CFLAGS, build,
                                    build_cortex_m_runner, build_runner, check, cortex_m_runner, dot_path, run,
                                    run_many)
from c_cases import ALL_RECURRENT_VARIANTS, gru_tagger, layer_variants, stream_cases
from conftest import ROOT

DATA = ROOT / "edgelstm" / "data"
FIRMWARE = ROOT / "firmware_host"
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
X86 = platform.machine() in ("x86_64", "AMD64")


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return X86 and "avx2" in f.read().split()
    except OSError:
        return False


needs_avx2 = pytest.mark.skipif(not _cpu_has_avx2(), reason="SKIPPED LOUDLY: the AVX2 path needs an x86 CPU "
                                                              "with AVX2 to run on")
needs_a64 = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                               reason="SKIPPED LOUDLY: aarch64 cross build needs apt-get install "
                                      "gcc-aarch64-linux-gnu qemu-user")
AVX2_CFLAGS = STRICT_CFLAGS + ["-mavx2"]
A64_SDOT_CFLAGS = STRICT_CFLAGS + ["-march=armv8.2-a+dotprod"]
QEMU_A64_MAX = ["qemu-aarch64", "-cpu", "max"]   # a CPU model with the dot-product extension


def _numba(model, X):
    return model.stream().step_many(X)


def _assert_bits_equal(cases, outputs, what):
    bad = []
    for i, ((m, X), got) in enumerate(zip(cases, outputs)):
        want = _numba(m, X)
        if not np.array_equal(got.view(np.int32), want.view(np.int32)):
            t, o = np.argwhere(got.view(np.int32) != want.view(np.int32))[0]
            bad.append((i, [layer.kind for layer in m.spec.layers], int(t), int(o), got[t, o], want[t, o]))
    assert not bad, f"{what}: {len(bad)} of {len(cases)} models differ, first {bad[:3]}"
    # not vacuous: the outputs move over time (a stuck runtime printing constants would still 'match' rarely)
    assert sum(np.ptp(o, axis=0).max() > 0 for o in outputs) >= len(outputs) // 2


@pytest.fixture(scope="module")
def cases():
    out = stream_cases(24, T=200)
    # every recurrent kind and variant is in the first 8 (the Cortex-M subset) and the first 12 (ASan/UBSan):
    # GRU reset_after True / False and RNN tanh / relu as their int16 op graphs, LSTM as its own kernel
    assert layer_variants(out[:12]) >= ALL_RECURRENT_VARIANTS, layer_variants(out[:12])
    return out


@pytest.fixture(scope="module")
def lstm_tagger():
    m = el.load(DATA / "tagger_lstm.elstm")
    return el.quantize(m, calibration=np.load(DATA / "calibration.npy"), progress=False)


@needs_cc
def test_random_models_host_gcc_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="cc")   # x86-64 baseline: no AVX2, so the portable C dot loop
    if X86:
        assert dot_path(exe) == "portable"
    _assert_bits_equal(cases, run_many(exe, cases), "host cc")


@needs_cc
def test_no_simd_macro_selects_the_portable_path(tmp_path):
    flags = STRICT_CFLAGS + ["-DELSTM_NO_SIMD"] + (["-mavx2"] if X86 else [])
    assert dot_path(build_runner(tmp_path, cc="cc", cflags=flags)) == "portable"


@needs_avx2
@pytest.mark.parametrize("cc", ["cc", "clang"])
def test_random_models_host_avx2_bit_exact(cc, cases, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"SKIPPED LOUDLY: {cc} not installed")
    exe = build_runner(tmp_path, cc=cc, cflags=AVX2_CFLAGS)   # -std=c99 -Wall -Wextra -Werror -pedantic -mavx2
    assert dot_path(exe) == "avx2"
    _assert_bits_equal(cases, run_many(exe, cases), f"{cc} -mavx2")


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (apt-get install clang)")
def test_random_models_clang_strict_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="clang")          # -std=c99 -Wall -Wextra -Werror -pedantic
    _assert_bits_equal(cases, run_many(exe, cases), "clang")


@needs_cc
@pytest.mark.parametrize("simd", [False, pytest.param(True, marks=needs_avx2)], ids=["portable", "avx2"])
def test_random_models_under_asan_ubsan(simd, cases, tmp_path):
    exe = build_runner(tmp_path, cc="cc", sanitize=True,      # any finding aborts the run (no recovery)
                       cflags=AVX2_CFLAGS if simd else None)
    _assert_bits_equal(cases[:12], run_many(exe, cases[:12]), "ASan/UBSan")


@needs_a64
def test_random_models_aarch64_under_qemu_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="aarch64-linux-gnu-gcc", ldflags=["-static"])   # armv8-a: NEON, no sdot
    assert dot_path(exe, runner=["qemu-aarch64"]) == "neon"
    _assert_bits_equal(cases, run_many(exe, cases, runner=["qemu-aarch64"]), "aarch64/qemu")


@needs_a64
def test_random_models_aarch64_sdot_under_qemu_bit_exact(cases, tmp_path):
    exe = build_runner(tmp_path, cc="aarch64-linux-gnu-gcc", cflags=A64_SDOT_CFLAGS, ldflags=["-static"])
    assert dot_path(exe, runner=QEMU_A64_MAX) == "neon-sdot"
    _assert_bits_equal(cases, run_many(exe, cases, runner=QEMU_A64_MAX), "aarch64+dotprod/qemu")


needs_m4 = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                              reason="SKIPPED LOUDLY: Cortex-M build needs apt-get install gcc-arm-none-eabi "
                                     "libnewlib-arm-none-eabi qemu-system-arm")


@needs_m4
@pytest.mark.parametrize("dsp, tables", [(True, True), (True, False), (False, True)],
                         ids=["smlad-tables", "smlad-computed", "portable-tables"])
def test_random_models_cortex_m4_under_qemu_bit_exact(dsp, tables, cases, tmp_path):
    exe = build_cortex_m_runner(tmp_path, extra_cflags=[] if dsp else ["-DELSTM_NO_SIMD"])
    assert dot_path(exe, runner=cortex_m_runner) == ("dsp-smlad" if dsp else "portable")
    got = run_many(exe, cases[:8], runner=cortex_m_runner, tables=tables)
    _assert_bits_equal(cases[:8], got, "Cortex-M4/qemu")


def _activation_tables_as_computed(exe, runner=()):
    from edgelstm.quant.tables import sigmoid_table, tanh_table
    out = Path(tempfile.mkdtemp(prefix="edgelstm-act-")) / "acts.bin"
    cmd = [str(exe), str(out)]
    subprocess.run(runner(cmd) if callable(runner) else [*runner, *cmd], check=True, timeout=600)
    got = np.fromfile(out, np.int16).reshape(8, 65536)
    shutil.rmtree(out.parent)
    for k, (g, w) in enumerate(zip(got, [sigmoid_table()] + [tanh_table(b) for b in range(7)])):
        bad = np.flatnonzero(g != w)
        assert bad.size == 0, ("logistic Q3.12" if k == 0 else f"tanh bits {k - 1}", bad[:5] - 32768, g[bad[:5]])


@needs_cc
def test_computed_activations_equal_the_tables_exhaustively(tmp_path):
    """src/gemmlowp16.h (bundles exported without tables) == quant/tables.py for all 65,536 inputs of the
    Q3.12 logistic and of tanh on 0..6 integer bits, under ASan + UBSan."""
    exe = tmp_path / "act_tables"
    fw = FIRMWARE
    subprocess.run(["cc", *STRICT_CFLAGS, *SANITIZE_FLAGS, "-I", str(fw / "src"), "-o", str(exe),
                    str(fw / "harness" / "act_tables.c")], check=True)
    _activation_tables_as_computed(exe)


@needs_m4
def test_computed_activations_equal_the_tables_on_cortex_m4(tmp_path):
    fw = FIRMWARE
    exe = tmp_path / "act_tables.elf"
    subprocess.run(["arm-none-eabi-gcc", *CORTEX_M_CFLAGS, "-I", str(fw / "src"), "-o", str(exe),
                    str(fw / "harness" / "act_tables.c"), str(fw / "harness" / "cortexm_vectors.c"),
                    *CORTEX_M_LDFLAGS], check=True)
    _activation_tables_as_computed(exe, runner=cortex_m_runner)


@needs_cc
@pytest.mark.parametrize("simd", [False, pytest.param(True, marks=needs_avx2)], ids=["portable", "avx2"])
def test_random_models_without_tables_bit_exact(simd, cases, tmp_path):
    exe = build_runner(tmp_path, cc="cc", sanitize=True, cflags=AVX2_CFLAGS if simd else None)
    _assert_bits_equal(cases, run_many(exe, cases, tables=False), "computed activations")


@needs_cc
@pytest.mark.parametrize("tables", [True, False], ids=["tables", "computed"])
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_bundled_tagger_bundle_equals_numba_over_1000_frames(name, tables, lstm_tagger, tmp_path):
    model = gru_tagger() if name == "gru" else lstm_tagger
    X = np.load(DATA / "demo_features.npy")[:1000]
    report = check(model, X, workdir=tmp_path / "bundle", tables=tables)
    blob_len = int((tmp_path / "bundle" / "model_data.h").read_text().split("MODEL_BLOB_LEN ")[1].split()[0])
    # without tables: no 65,536-entry array in flash; the GRU's op graph has none either way (its int16
    # LOGISTIC / TANH interpolate a 256-entry table in prog), and the bundle carries no unused LSTM tables
    assert (blob_len >= 2 * 65536) == (tables and name == "lstm")
    assert report.frames == 1000 and report.equal, str(report)
    for f in ("model_data.c", "model_data.h", "edgelstm.h", "edgelstm.c", "main.c", "Makefile"):
        assert (tmp_path / "bundle" / f).exists(), f


@needs_cc
def test_bundle_makefile_builds_and_streamer_prints_codes(tmp_path):
    model = gru_tagger()
    bundle = to_c(model, tmp_path / "b")
    if shutil.which("make"):
        subprocess.run(["make", "-s", "-C", str(bundle)], check=True, capture_output=True)
        exe = bundle / "streamer"
    else:
        exe = build(bundle)
    X = np.load(DATA / "demo_features.npy")[:50]
    codes = run(exe, X, codes=True)
    s_out, zp_out = model.quant.act[-1]
    want = _numba(model, X)
    assert np.array_equal((codes.astype(np.float32) - np.float32(zp_out)) * np.float32(s_out), want)


@needs_cc
def test_streamer_rejects_bad_input(tmp_path):
    exe = build(to_c(gru_tagger(), tmp_path / "b"))
    for text, msg in (("1 2 3\n", "expected 40 numbers"), (" ".join(["nan"] * 40) + "\n", "NaN or inf")):
        res = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
        assert res.returncode == 2 and msg in res.stderr, (res.returncode, res.stderr)


def test_to_c_refuses_float_and_bidirectional_models(tmp_path):
    with pytest.raises(ModelError, match="quantize"):
        to_c(el.load(DATA / "tagger_lstm.elstm"), tmp_path / "f")
    spec = el.random_model([{"kind": "gru", "hidden_size": 4, "bidirectional": True}], input_size=3, seed=1)
    q = el.quantize(el.Model(spec), calibration=np.ones((1, 5, 3), np.float32), progress=False)
    with pytest.raises(ModelError, match="bidirectional"):
        to_c(q, tmp_path / "b")


def test_build_reports_missing_compiler(tmp_path):
    with pytest.raises(FirmwareError, match="not found"):
        build(tmp_path, cc="no-such-cc-edgelstm")


@needs_cc
def test_harness_detects_a_wrong_runtime(cases, tmp_path):
    """The comparison can fail: a runtime with a different rounding (RDBPOT ties toward zero) is caught."""
    exe = build_runner(tmp_path, cc="cc")
    fp = tmp_path / "fixedpoint.h"
    fp.write_text(fp.read_text().replace("(remainder > threshold ? 1 : 0)", "(remainder > threshold + 1 ? 1 : 0)"))
    subprocess.run(["cc", "-std=c99", "-O2", "-I", str(tmp_path), "-o", str(exe), str(tmp_path / "multi_runner.c"),
                    str(tmp_path / "edgelstm.c"), str(tmp_path / "elstm_io.c"), "-lm"], check=True)
    with pytest.raises(AssertionError, match="differ"):
        _assert_bits_equal(cases, run_many(exe, cases), "broken")


@needs_avx2
@pytest.mark.parametrize("bug", ["MADD8(t3, w3 + c16, x)", "acc[r + c] = dot_tail(w0 + (int64_t)c * cols, v, c8"])
def test_harness_detects_a_wrong_avx2_path(bug, cases, tmp_path):
    """The SIMD comparison can fail too: dropping the 8-column tail of one row of four, or starting the
    scalar tail one column late, is caught."""
    exe = build_runner(tmp_path, cc="cc", cflags=AVX2_CFLAGS)
    src = tmp_path / "edgelstm.c"
    text = src.read_text()
    assert bug in text
    src.write_text(text.replace(bug, "t3" if bug.startswith("MADD8") else bug + " + 1"))
    subprocess.run(["cc", *AVX2_CFLAGS, "-I", str(tmp_path), "-o", str(exe), str(tmp_path / "multi_runner.c"),
                    str(src), str(tmp_path / "elstm_io.c"), "-lm"], check=True)
    with pytest.raises(AssertionError, match="differ"):
        _assert_bits_equal(cases, run_many(exe, cases), "broken avx2")


@pytest.mark.slow
def test_random_models_sweep_1000_steps_all_targets(tmp_path):
    """300 random stacks x 1000 steps: host gcc (portable and AVX2; tables and computed activations), clang,
    ASan/UBSan, aarch64/qemu (NEON and NEON sdot), Cortex-M4/qemu (SMLAD: tables, 100 with computed
    activations; 100 with the portable loop)."""
    many = stream_cases(300, T=1000, seed_base=9109)
    exe = build_runner(tmp_path / "gcc")
    _assert_bits_equal(many, run_many(exe, many), "host cc")
    _assert_bits_equal(many, run_many(exe, many, tables=False), "host cc, computed activations")
    if _cpu_has_avx2():
        _assert_bits_equal(many, run_many(build_runner(tmp_path / "avx2", cflags=AVX2_CFLAGS), many), "avx2")
        exe = build_runner(tmp_path / "asan-avx2", sanitize=True, cflags=AVX2_CFLAGS)
        _assert_bits_equal(many[:60], run_many(exe, many[:60]), "asan avx2")
    if shutil.which("clang"):
        _assert_bits_equal(many, run_many(build_runner(tmp_path / "clang", cc="clang"), many), "clang")
    _assert_bits_equal(many[:60], run_many(build_runner(tmp_path / "asan", sanitize=True), many[:60]), "asan")
    if shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64"):
        exe = build_runner(tmp_path / "a64", cc="aarch64-linux-gnu-gcc", ldflags=["-static"])
        _assert_bits_equal(many, run_many(exe, many, runner=["qemu-aarch64"]), "aarch64/qemu")
        exe = build_runner(tmp_path / "a64-sdot", cc="aarch64-linux-gnu-gcc", cflags=A64_SDOT_CFLAGS,
                           ldflags=["-static"])
        _assert_bits_equal(many, run_many(exe, many, runner=QEMU_A64_MAX), "aarch64+dotprod/qemu")
    else:
        pytest.skip("SKIPPED LOUDLY: aarch64 toolchain or qemu-aarch64 missing")
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        exe = build_cortex_m_runner(tmp_path / "m4")          # DSP dot loop (SMLAD)
        _assert_bits_equal(many, run_many(exe, many, runner=cortex_m_runner), "Cortex-M4/qemu")
        got = run_many(exe, many[:100], runner=cortex_m_runner, tables=False)
        _assert_bits_equal(many[:100], got, "Cortex-M4/qemu, computed activations")
        exe = build_cortex_m_runner(tmp_path / "m4-portable", extra_cflags=["-DELSTM_NO_SIMD"])
        _assert_bits_equal(many[:100], run_many(exe, many[:100], runner=cortex_m_runner), "Cortex-M4/qemu portable")
    else:
        pytest.skip("SKIPPED LOUDLY: arm-none-eabi-gcc or qemu-system-arm missing")


@needs_cc
@pytest.mark.parametrize("cut", ["w8", "blob"])
def test_init_rejects_weights_that_do_not_fit(cut, cases, lstm_tagger, tmp_path, monkeypatch):
    """elstm_init checks every matrix against w8_len and every table against blob_len: one element short
    is a rejected model, not an out-of-bounds read (the GRU tagger's w8 ends with the Dense head; its blob is
    empty, its CONV16 weights live in w8: the blob case cuts the LSTM tagger's tables)."""
    import edgelstm.program.c_program as cm
    real = cm.c_arrays

    def short(prep, **kw):
        prog, w8, blob = real(prep, **kw)
        return (prog, w8[:-1], blob) if cut == "w8" else (prog, w8, blob[:-1])

    exe = build_runner(tmp_path, cc="cc")
    model = gru_tagger() if cut == "w8" else lstm_tagger
    X = np.zeros((2, model.input_size), np.float32)
    run_many(exe, [(model, X)])
    monkeypatch.setattr(cm, "c_arrays", short)
    with pytest.raises(FirmwareError, match="rejected"):
        run_many(exe, [(model, X)])


@needs_cc
@pytest.mark.parametrize("kind", ["KIND_GRU", "KIND_RNN"])
def test_init_rejects_gru_and_rnn_layer_records(kind, tmp_path, monkeypatch):
    """prepare() lowers int8 GRU / RNN layers to op graphs; the C runtime has no GRU / RNN step any more and
    elstm_init rejects a record of either kind (here the tagger's GRU op-graph record relabelled)."""
    import edgelstm.program.c_program as cm
    from edgelstm.program import layout as L
    real = cm.c_arrays
    gru = gru_tagger()
    assert [int(gru._prep.prog[int(gru._prep.prog[L.G_LAYER0 + k]) + L.L_KIND]) for k in range(2)] == \
        [L.KIND_OPS, L.KIND_DENSE]

    def relabelled(prep, **kw):
        prog, w8, blob = real(prep, **kw)
        prog = prog.copy()
        prog[int(prog[L.G_LAYER0]) + L.L_KIND] = getattr(L, kind)
        return prog, w8, blob

    exe = build_runner(tmp_path, cc="cc", sanitize=True)
    X = np.zeros((2, gru.input_size), np.float32)
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=0")   # the runner's early exit leaves its buffers
    run_many(exe, [(gru, X)])
    monkeypatch.setattr(cm, "c_arrays", relabelled)
    with pytest.raises(FirmwareError, match="rejected"):
        run_many(exe, [(gru, X)])


@needs_m4
def test_harness_detects_a_wrong_smlad_path(cases, tmp_path):
    """Row 2 of every two with its (w1, w3) products paired with the wrong inputs: caught under qemu."""
    build_cortex_m_runner(tmp_path)
    src = tmp_path / "edgelstm.c"
    text = src.read_text()
    assert "SMLAD4(s1, w1 + c, v02, v13);" in text
    src.write_text(text.replace("SMLAD4(s1, w1 + c, v02, v13);", "SMLAD4(s1, w1 + c, v02, v02);"))
    exe = tmp_path / "broken.elf"
    subprocess.run(["arm-none-eabi-gcc", *CORTEX_M_CFLAGS, "-I", str(tmp_path), "-o", str(exe),
                    *[str(tmp_path / f) for f in ("multi_runner.c", "edgelstm.c", "elstm_io.c", "cortexm_vectors.c")],
                    *CORTEX_M_LDFLAGS, "-lm"], check=True)
    with pytest.raises(AssertionError, match="differ"):
        _assert_bits_equal(cases[:8], run_many(exe, cases[:8], runner=cortex_m_runner), "broken smlad")

"""The no-JIT backend (C runtime through ctypes) equals the Numba JIT bit for bit, and loading + streaming on
it never imports Numba."""
import os
import subprocess
import sys

import numpy as np
import pytest

import edgelstm as el
from edgelstm.backends import native
from edgelstm.errors import InputError
from edgelstm.firmware_host import build_native
from c_cases import ALL_RECURRENT_VARIANTS, gru_tagger, layer_variants, stream_cases
from conftest import ROOT, native_library_env

pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v cc"], capture_output=True).returncode,
                                reason="no C compiler (cc) to build the native library")


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory):
    # whatever dot path this CPU got: these tests compare it
    with native_library_env(build_native(out=tmp_path_factory.mktemp("native") / native.LIB_NAME),
                            backend="native") as path:
        yield path


@pytest.fixture(scope="module")
def gru_file(tmp_path_factory):
    """The int8 GRU tagger as an .elstm file (for the fresh-process tests)."""
    path = tmp_path_factory.mktemp("gru") / "tagger_gru_int8.elstm"
    el.save(gru_tagger(), path)
    return path


def _kernel_with(monkeypatch, lib, backend, model=None):
    monkeypatch.setenv("EDGELSTM_NATIVE_LIB", str(lib))
    monkeypatch.setenv("EDGELSTM_BACKEND", backend)
    native._searched, native._lib = False, None
    try:
        model = model or gru_tagger()
        return type(model.stream()._step_kernel).__name__
    finally:
        native._searched, native._lib = False, None


def test_backend_choice_rule(lib_path, tmp_path, monkeypatch):
    """auto: native only when Numba is missing, else the (faster) JIT, SIMD library or not;
    EDGELSTM_BACKEND=native / jit force one."""
    portable = build_native(out=tmp_path / "portable" / native.LIB_NAME, portable=True, cflags=["-DELSTM_NO_SIMD"])
    assert native._load(portable).elstm_dot_path() == b"portable"
    assert _kernel_with(monkeypatch, portable, "auto") != "NativeStep"
    assert _kernel_with(monkeypatch, portable, "native") == "NativeStep"
    assert _kernel_with(monkeypatch, lib_path, "jit") != "NativeStep"
    assert _kernel_with(monkeypatch, lib_path, "auto") != "NativeStep"
    monkeypatch.setattr(native, "numba_importable", lambda: False)
    assert _kernel_with(monkeypatch, portable, "auto") == "NativeStep"


def test_stale_library_is_ignored_with_a_message(tmp_path, monkeypatch, capsys):
    src = tmp_path / "old.c"
    src.write_text("int elstm_step_f32(void) { return 0; }\n")   # a library from before format 2
    lib = tmp_path / native.LIB_NAME
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    monkeypatch.setenv("EDGELSTM_NATIVE_LIB", str(lib))
    native._searched, native._lib = False, None
    try:
        found = native.library()         # the next candidate, if another library is built, else None
        assert found is None or found._name != str(lib)
    finally:
        native._searched, native._lib = False, None
    assert f"ignoring {lib}" in capsys.readouterr().err


def test_stale_library_rebuilt_in_place_is_loaded(lib_path, tmp_path):
    """A stale library, then a current build at the same path (what the build on first use does after an
    upgrade): the second load gets the new library, not the stale copy dlopen still holds."""
    src = tmp_path / "old.c"
    src.write_text("int elstm_format_version(void) { return 1; }\n")
    lib = tmp_path / native.LIB_NAME
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    assert native._load(lib) is None
    tmp = tmp_path / "new.so"
    tmp.write_bytes(open(lib_path, "rb").read())
    os.replace(tmp, lib)
    fresh = native._load(lib)
    assert fresh is not None and fresh.elstm_format_version() == native.FORMAT_VERSION


def _jit_step(model):
    s = model.stream()
    s._step_kernel = model._kernel(frame=True)
    return s


def test_native_stream_equals_jit_bit_for_bit(lib_path):
    cases = stream_cases(16, T=150, seed_base=4242)
    assert layer_variants(cases) >= ALL_RECURRENT_VARIANTS        # GRU / RNN as op graphs, both variants each
    for model, X in cases + [(gru_tagger(), np.load(ROOT / "edgelstm" / "data" / "demo_features.npy")[:1000])]:
        s_nat, s_jit = model.stream(), _jit_step(model)
        assert isinstance(s_nat._step_kernel, native.NativeStep)
        a = np.array([s_nat.step(x).copy() for x in X])
        b = np.array([s_jit.step(x).copy() for x in X])
        assert np.array_equal(a.view(np.int32), b.view(np.int32))
        for k, (u, v) in enumerate(zip(s_nat.state, s_jit.state)):   # state lives where the JIT keeps it
            for du, dv in zip(u, v):
                for name in du:
                    assert np.array_equal(du[name], dv[name]), (k, name)


def test_native_streams_never_build_the_jit_blob(lib_path, gru_file, monkeypatch):
    """The JIT's model blob (block-packed weights, the 65,536-entry ACT16 tables) is made on first JIT use only:
    a model stepped on the C runtime (step and step_many) never computes it; the JIT's step_many builds it."""
    model = el.load(gru_file)
    s = model.stream()
    assert isinstance(s._step_kernel, native.NativeStep)
    X = np.load(ROOT / "edgelstm" / "data" / "demo_features.npy")[:20]
    ys = np.array([s.step(x).copy() for x in X])
    s.step_many(X[:3])
    assert "kernel_blob" not in vars(model._prep)
    jit = _jit_step(el.load(gru_file))
    np.testing.assert_array_equal(ys, np.array([jit.step(x).copy() for x in X]))
    monkeypatch.setenv("EDGELSTM_BACKEND", "jit")
    native._searched, native._lib = False, None
    try:
        jit_model = el.load(gru_file)
        jit_model.stream().step_many(X[:3])
        assert "kernel_blob" in vars(jit_model._prep)
    finally:
        native._searched, native._lib = False, None


def test_native_mixed_with_step_many_and_nan_rejected(lib_path):
    model, X = stream_cases(1, T=60, seed_base=77)[0]
    s = model.stream()
    ys = [s.step(x).copy() for x in X[:10]]
    ys.append(s.step_many(X[10:50]))                    # JIT kernel on the same state
    before = s.state
    bad = X[50].copy()
    bad[0] = np.nan
    with pytest.raises(InputError):
        s.step(bad)
    after = s.state
    assert all(np.array_equal(a[n], b[n]) for u, v in zip(before, after) for a, b in zip(u, v) for n in a)
    ys += [s.step(x).copy()[None] for x in X[50:]]
    got = np.concatenate([np.array(ys[:10]), ys[10]] + ys[11:])
    assert np.array_equal(got, model.run(X))


def test_load_and_stream_on_native_never_import_numba(lib_path, gru_file):
    code = ("import sys, numpy as np, edgelstm as el\n"
            f"s = el.load({str(gru_file)!r}).stream()\n"
            "y = s.step(np.zeros(40, np.float32))\n"
            "print(type(s._step_kernel).__name__, 'numba' in sys.modules)\n")
    env = dict(os.environ, EDGELSTM_NATIVE_LIB=str(lib_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["NativeStep", "False"]
    code_jit = code.replace("print(type(s._step_kernel).__name__, 'numba' in sys.modules)",
                            "print(type(s._step_kernel).__name__)")
    for backend in ("jit", ""):                      # forced, and the default (the JIT: its step is faster)
        env["EDGELSTM_BACKEND"] = backend
        out = subprocess.run([sys.executable, "-c", code_jit], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.split() != ["NativeStep"]


@pytest.fixture(scope="module")
def compiled_gru(tmp_path_factory):
    from edgelstm.export.to_c import to_c
    from edgelstm.firmware_host import STRICT_CFLAGS
    model = gru_tagger()
    b = to_c(model, tmp_path_factory.mktemp("deploy") / "b")
    lib = b / "libmodel.so"
    subprocess.run(["cc", *STRICT_CFLAGS, "-fPIC", "-shared", "-I", str(b), "-o", str(lib),
                    *[str(b / f) for f in ("model_data.c", "edgelstm.c", "elstm_io.c")], "-lm"], check=True)
    return model, lib


def test_deploy_compiled_model_equals_numba(compiled_gru):
    import array
    from edgelstm.deploy import CompiledModel
    model, lib = compiled_gru
    X = np.load(ROOT / "edgelstm" / "data" / "demo_features.npy")[:1000]
    s = CompiledModel(lib).stream()
    got = np.array([np.asarray(s.step(x)).copy() for x in X])
    assert np.array_equal(got.view(np.int32), model.stream().step_many(X).view(np.int32))
    s.reset()                                  # other input kinds: list, array.array, float64 array
    a = np.asarray(s.step(list(map(float, X[0])))).copy()
    s.reset()
    b = np.asarray(s.step(array.array("f", X[0].tobytes()))).copy()
    s.reset()
    c = np.asarray(s.step(X[0].astype(np.float64))).copy()
    assert np.array_equal(a, got[0]) and np.array_equal(b, got[0]) and np.array_equal(c, got[0])
    with pytest.raises(InputError):
        s.step([1.0, 2.0])
    with pytest.raises(InputError):
        s.step([float("nan")] * 40)


def test_deploy_imports_neither_numpy_nor_numba(compiled_gru):
    _, lib = compiled_gru
    code = ("import sys\nfrom edgelstm.deploy import CompiledModel\n"
            f"y = CompiledModel({str(lib)!r}).stream().step([0.25] * 40)\n"
            "print(len(y), 'numpy' in sys.modules, 'numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4", "False", "False"]


def test_deploy_rejects_a_library_that_is_not_a_model(tmp_path):
    from edgelstm.deploy import CompiledModel
    from edgelstm.errors import ArtifactError
    with pytest.raises(ArtifactError):
        CompiledModel(tmp_path / "missing.so")
    with pytest.raises(ArtifactError):
        CompiledModel(build_native(out=tmp_path / "l.so"))   # the runtime alone: no model_config


class _Tty:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_jit_compile_is_announced_once_on_a_tty_only(monkeypatch):
    import types
    from edgelstm import kernels
    fake = types.SimpleNamespace(signatures=[], _cache=types.SimpleNamespace(
        _cache_file=types.SimpleNamespace(_index_path="/nonexistent/edgelstm.nbi")))
    monkeypatch.setattr(kernels, "_announced", False)
    pipe = _Tty(False)
    kernels.announce_compile(fake, pipe)
    assert pipe.text == ""
    tty = _Tty(True)
    kernels.announce_compile(fake, tty)
    kernels.announce_compile(fake, tty)
    assert tty.text.count("compiling") == 1
    monkeypatch.setattr(kernels, "_announced", False)
    warm = _Tty(True)
    kernels.announce_compile(types.SimpleNamespace(signatures=["(int8,)"]), warm)   # already compiled
    assert warm.text == ""


def test_long_compile_prints_progress_until_compiled():
    import time
    import types
    from edgelstm import kernels
    fake = types.SimpleNamespace(signatures=[])
    tty = _Tty(True)
    thread = kernels._start_ticker(fake, tty, every=0.05)
    time.sleep(0.3)
    fake.signatures.append("(int8,)")      # the compile finished
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert tty.text.count("still compiling") >= 2 and tty.text.endswith("\n")


def test_c_header_and_python_bindings_agree_on_the_format_version():
    header = (ROOT / "firmware_host" / "include" / "edgelstm.h").read_text()
    assert f"#define ELSTM_FORMAT_VERSION {native.FORMAT_VERSION}\n" in header

"""The first `edgelstm tag` on a machine (issue 20): with the JIT kernels in no cache, the command steps the model
on the C runtime while a background `edgelstm warmup` compiles them; later runs use the JIT.  Events must be the
same either way (the two backends are bit-identical on int8 models)."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from edgelstm.backends import native
from edgelstm.cli import main

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the C runtime")


def _tag(env, *extra):
    res = subprocess.run([sys.executable, "-m", "edgelstm", "tag", "--json", *extra], env=env, capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    return [d["event"] for d in lines if "event" in d], lines[-1]["summary"], res.stderr


def _cold_env(tmp_path, **extra):
    """An empty Numba cache, and a user cache of its own (warmup marker and log; the C library is built there
    unless one sits next to the package)."""
    return {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "XDG_CACHE_HOME": str(tmp_path / "user"),
            **extra}


@pytest.fixture(scope="module")
def built_library(tmp_path_factory):
    from edgelstm.firmware_host import build_native
    return build_native(out=tmp_path_factory.mktemp("native") / native.LIB_NAME)


@pytest.fixture
def own_library(built_library):
    """A C library of its own: the in-process tests replace subprocess.Popen and empty the user cache, so the
    runtime must not need to build one (it would, when none sits next to the package yet)."""
    from conftest import native_library_env
    with native_library_env(built_library) as path:
        yield path


@pytest.mark.slow
def test_first_tag_runs_on_c_while_the_jit_compiles_in_the_background(tmp_path):
    env = _cold_env(tmp_path)
    t0 = time.perf_counter()
    first, s1, err1 = _tag(env)
    first_s = time.perf_counter() - t0
    assert s1["backend"] == "native" and s1["compile_seconds"] == 0, (s1, err1)
    assert "background `edgelstm warmup`" in err1
    log = tmp_path / "user" / "edgelstm" / "warmup.log"
    deadline = time.monotonic() + 1200
    while "ready (jit" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the background warmup did not finish"
        time.sleep(1)
    later, s2, err2 = _tag(env)
    assert s2["backend"] == "jit" and s2["compile_seconds"] == 0, (s2, err2)
    assert "C runtime" not in err2
    assert later == first
    # the JIT forced: the same events, compiled in this process (the measured first run it replaces)
    forced, s3, _ = _tag(_cold_env(tmp_path / "forced", EDGELSTM_BACKEND="jit"))
    assert forced == first and s3["backend"] == "jit" and s3["compile_seconds"] > 0
    print(f"first run {first_s:.1f} s wall; forced JIT compile {s3['compile_seconds']:.1f} s")


def test_a_second_cold_run_does_not_start_a_second_warmup(tmp_path, monkeypatch, capsys, own_library):
    """In process, kernels reported uncompiled: the command runs on the C runtime, the marker stops a second
    background warmup within 30 minutes, and the process's backend choice is restored afterwards."""
    from edgelstm import cli
    from edgelstm.runtime import Model
    started = []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("EDGELSTM_BACKEND", raising=False)
    monkeypatch.setattr(Model, "jit_ready", lambda self: False)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a[0]))
    outs = []
    for _ in range(2):
        assert main(["tag", "--json"]) == 0
        outs.append(capsys.readouterr())
    summaries = [json.loads(o.out.splitlines()[-1])["summary"] for o in outs]
    assert [s["backend"] for s in summaries] == ["native", "native"]
    assert len(started) == 1 and started[0][-2:] == ["warmup", str(cli.AUDIO_MODEL.resolve())]
    assert "; a background" in outs[0].err and "; an earlier background" in outs[1].err
    assert native.backend() == "auto"


def test_a_warmup_that_cannot_start_is_named(tmp_path, monkeypatch, capsys, own_library):
    """An unwritable user cache: the command still runs on the C runtime and says the warmup did not start."""
    from edgelstm.runtime import Model
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))     # a file: the cache folder cannot be made
    monkeypatch.delenv("EDGELSTM_BACKEND", raising=False)
    monkeypatch.setattr(Model, "jit_ready", lambda self: False)
    assert main(["tag", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.splitlines()[-1])["summary"]["backend"] == "native"
    assert "could not start" in out.err


def test_set_backend_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("EDGELSTM_BACKEND", "jit")
    try:
        native.set_backend("native")
        assert native.backend() == "native" and native.prefer_native(None)
    finally:
        native.set_backend(None)
    assert native.backend() == "jit"
    with pytest.raises(ValueError):
        native.set_backend("gpu")


def test_backend_names_the_kernel_run_uses(monkeypatch, own_library):
    """EDGELSTM_BACKEND=native moves int8 models to the C runtime; a float model stays on the JIT, and says so
    (the tag summary's "backend" once reported the environment's choice instead)."""
    import edgelstm as el
    from edgelstm.data import AUDIO_MODEL
    f32 = el.load(AUDIO_MODEL.with_name("audio_tagger_f32.elstm"))
    q = el.load(AUDIO_MODEL)
    monkeypatch.setenv("EDGELSTM_BACKEND", "native")
    native.set_backend(None)                     # the library is looked for again under the new environment
    assert f32.backend() == "jit" and q.backend() == "native"
    monkeypatch.setenv("EDGELSTM_BACKEND", "jit")
    assert q.backend() == "jit"

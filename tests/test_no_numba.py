"""Without Numba (32-bit Pi OS: no wheels), int8 models run on the C runtime, built on first use, and give the
JIT's outputs bit for bit: run (batched, with lengths), stream step / step_many, streams(n), the final states,
and `edgelstm tag`.  The child process blocks ``import numba`` the way a missing package does."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgelstm as el
from edgelstm.data import AUDIO_MODEL, DATA

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)
from pi_compare import outputs as _outputs  # noqa: E402  (bench/pi_compare.py: every way of running a model)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

BLOCK = "import sys; sys.modules['numba'] = None; sys.modules['llvmlite'] = None\n"
MODELS = ("tagger_lstm_int8.elstm", "tagger_gru_int8.elstm", os.path.basename(AUDIO_MODEL))


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "EDGELSTM_BACKEND": "auto"})


def test_int8_models_without_numba_equal_the_jit(tmp_path):
    code = ("import numpy as np, edgelstm as el, sys\n"
            "sys.path.insert(0, %r)\nfrom pi_compare import outputs as _outputs\n"
            "from edgelstm.backends import native\n"
            "for name in %r:\n"
            "    m = el.load(%r + '/' + name)\n"
            "    np.savez(%r + '/' + name + '.npz', **_outputs(m))\n"
            "print(native.library().elstm_dot_path().decode())\n") % (
                BENCH, MODELS, str(DATA), str(tmp_path))
    res = _child(code)
    assert res.returncode == 0, res.stderr
    assert "numba" not in res.stderr.lower() or "building the C runtime" in res.stderr
    for name in MODELS:
        want = _outputs(el.load(DATA / name))
        got = dict(np.load(tmp_path / f"{name}.npz"))
        assert sorted(got) == sorted(want)
        for key in want:
            assert np.array_equal(got[key], want[key]), (name, key)


def test_tag_without_numba_equals_the_jit():
    from edgelstm.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["tag", "--json"]) == 0
    want = [json.loads(line)["event"] for line in buf.getvalue().splitlines() if '"event"' in line]
    res = _child("from edgelstm.cli import main; raise SystemExit(main(['tag', '--json']))")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line)["event"] for line in res.stdout.splitlines() if '"event"' in line]
    assert got == want and len(want) > 0


def test_float_model_without_numba_is_a_clear_error():
    res = _child("import edgelstm as el\nfrom edgelstm.data import DATA\nm = el.load(DATA / 'tagger_lstm.elstm')\n"
                 "try:\n    m.stream()\nexcept el.ModelError as e:\n    print('ModelError:', e)\n")
    assert res.returncode == 0, res.stderr
    assert "ModelError: this float32 model needs Numba" in res.stdout


def test_native_backend_tags_without_importing_numba():
    """EDGELSTM_BACKEND=native with Numba installed: loading the audio tagger and tagging never import it."""
    code = ("import sys, io, contextlib\nfrom edgelstm.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['tag']) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "EDGELSTM_BACKEND": "native"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"

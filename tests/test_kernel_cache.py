"""The stale-cache guard (edgelstm/kernels/__init__.py) clears every place Numba keeps the kernels' cache, not only
the in-tree __pycache__: with NUMBA_CACHE_DIR set, Numba writes there, and an edited callee would otherwise
leave an old compiled kernel running."""
import os
import subprocess
import sys
from pathlib import Path

CACHE_PATH = "import edgelstm.kernels.program as p; print(p.forward_int8._cache._cache_path)"


def test_stale_guard_clears_numba_cache_dir(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    run = lambda: subprocess.run([sys.executable, "-c", CACHE_PATH], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip()
    cache = Path(run())
    assert cache.is_relative_to(tmp_path)
    stamp = cache / "edgelstm-kernels.stamp"
    current = stamp.read_text()
    stale = [cache / "program.forward_int8-1.py311.nbi", cache / "program.forward_int8-1.py311.1.nbc"]
    for f in stale:
        f.write_bytes(b"compiled from older kernel sources")
    stamp.write_text("an older edgelstm")
    run()
    assert not any(f.exists() for f in stale) and stamp.read_text() == current

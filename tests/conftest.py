"""pytest setup shared by the test suite."""
import contextlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # lets tests import the `naive` references however pytest is configured
    sys.path.insert(0, str(TESTS))


def bytes_allocated_by(fn, calls: int, warm: int = 200) -> int:
    """Bytes that ``calls`` calls of ``fn()`` leave allocated (tracemalloc snapshots), after ``warm`` calls."""
    import tracemalloc
    for _ in range(warm):   # warm every path first
        fn()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    for _ in range(calls):
        fn()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(d.size_diff for d in snap1.compare_to(snap0, "filename") if d.size_diff > 0)


@contextlib.contextmanager
def native_library_env(path, *, backend=None):
    """Point ``edgelstm.backends.native`` at the library ``path`` (and force ``EDGELSTM_BACKEND`` if given) while a test
    module runs; restores the environment and forgets the cached library afterwards."""
    from edgelstm.backends import native
    old = {k: os.environ.get(k) for k in ("EDGELSTM_NATIVE_LIB", "EDGELSTM_BACKEND")}
    os.environ["EDGELSTM_NATIVE_LIB"] = str(path)
    if backend:
        os.environ["EDGELSTM_BACKEND"] = backend
    native._searched, native._lib = False, None
    try:
        yield path
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        native._searched, native._lib = False, None

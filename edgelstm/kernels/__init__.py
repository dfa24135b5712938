"""@njit kernels: fixed-point primitives, int8 and float32 cells, the one-call program driver.

Numba's on-disk cache checks only the source file of each cached function, not the files of the functions
it calls (or of the modules whose globals it reads), so editing ``cells_int8.py`` would leave a cached ``program.py`` kernel running the old cells.
On import we stamp a hash of all kernel sources and drop this package's cache files when it changes.
"""
import hashlib
from pathlib import Path


def _drop_stale_cache() -> None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    # the record layout's constants are compiled into the kernels as globals, so its file counts too
    for src in sorted(here.glob("*.py")) + [here.parent / "config.py", here.parent / "program" / "layout.py"]:
        digest.update(src.read_bytes())
    cache = here / "__pycache__"
    stamp = cache / "edgelstm-kernels.stamp"
    want = digest.hexdigest()
    try:
        if stamp.exists() and stamp.read_text() == want:
            return
        cache.mkdir(exist_ok=True)
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        stamp.write_text(want)
    except OSError:  # read-only install: Numba falls back to its own cache locations
        pass


_drop_stale_cache()


_announced = False


def announce_compile(kernel, stream=None) -> None:
    """Say once per process, on a terminal, that the first call of ``kernel`` will compile (no disk cache
    entry yet), so a first run is not silent for ~30 s. A read-only install still caches: Numba then writes
    to its user-wide cache directory (``NUMBA_CACHE_DIR``, else ``~/.cache/numba``)."""
    global _announced
    import os
    import sys
    stream = stream if stream is not None else sys.stderr
    if _announced or not getattr(stream, "isatty", lambda: False)():
        return
    try:
        cached = bool(kernel.signatures) or os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:   # not a caching dispatcher: nothing to announce
        return
    if not cached:
        _announced = True
        print("edgelstm: compiling the kernels once (about 30 s); later runs load them from the disk cache",
              file=stream, flush=True)

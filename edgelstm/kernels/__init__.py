"""@njit kernels: fixed-point primitives, int8 and float32 cells, the one-call program driver.

Numba's on-disk cache checks only the source file of each cached function, not the files of the functions
it calls (or of the modules whose globals it reads), so editing ``cells_int8.py`` would leave a cached ``program.py`` kernel running the old cells.
On import we stamp a hash of all kernel sources into every directory Numba may cache them in (``_cache_dirs``:
``NUMBA_CACHE_DIR``, the in-tree ``__pycache__``, the user-wide cache a read-only install falls back to) and
drop this package's cache files there when it changes.
"""
import hashlib
from pathlib import Path


def _cache_dirs(here: Path) -> set:
    """The directory Numba caches this package's kernels in now, chosen by Numba's own locators (so
    ``NUMBA_CACHE_DIR`` and the read-only fallback to the user-wide cache are followed; it creates it, as it
    would on the first compile), plus every other location it may use that already exists."""
    dirs = {here / "__pycache__"}
    try:
        from numba.core import caching, config
    except ImportError:  # no Numba: nothing is cached
        return dirs
    try:
        dirs.add(Path(caching.FunctionCache(_drop_stale_cache).cache_path))  # a function of this folder
    except Exception:  # noqa: BLE001 - no usable location: Numba will not cache either
        pass
    for name in ("UserProvidedCacheLocator", "UserWideCacheLocator"):   # "_"-prefixed before Numba 0.60
        locator = getattr(caching, name, None) or getattr(caching, "_" + name, None)
        if locator is None or (name.startswith("UserProvided") and not config.CACHE_DIR):
            continue
        try:
            path = Path(locator(_drop_stale_cache, str(here / "__init__.py")).get_cache_path())
        except Exception:  # noqa: BLE001
            continue
        if path.is_dir():
            dirs.add(path)
    return dirs


def _drop_stale_cache() -> None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    # the record layout's constants are compiled into the kernels as globals, so its file counts too
    for src in sorted(here.glob("*.py")) + [here.parent / "config.py", here.parent / "program" / "layout.py"]:
        digest.update(src.read_bytes())
    want = digest.hexdigest()
    for cache in _cache_dirs(here):
        stamp = cache / "edgelstm-kernels.stamp"
        try:
            if stamp.exists() and stamp.read_text() == want:
                continue
            if not cache.is_dir():
                cache.mkdir()
            for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
                f.unlink(missing_ok=True)
            stamp.write_text(want)
        except OSError:  # not writable (a read-only install's own folder): Numba does not cache there either
            pass


_drop_stale_cache()


_announced = False


def is_compiled(kernel) -> bool:
    """Whether calling Numba dispatcher ``kernel`` needs no compile: compiled in this process, or an entry in
    Numba's disk cache (its index file; one index holds every signature).  True for anything else (the C
    runtime's callables compile nothing)."""
    import os
    try:
        return bool(kernel.signatures) or os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return True


def announce_compile(kernel, stream=None) -> None:
    """Say once per process, on a terminal, that the first call of ``kernel`` will compile (no disk cache
    entry yet), with an estimate, and while it compiles print the elapsed time every 15 s on the same line
    (minutes on a Raspberry Pi are otherwise silent). A read-only install still caches: Numba then writes
    to its user-wide cache directory (``NUMBA_CACHE_DIR``, else ``~/.cache/numba``)."""
    global _announced
    import platform
    import sys
    stream = stream if stream is not None else sys.stderr
    if _announced or not getattr(stream, "isatty", lambda: False)():
        return
    if is_compiled(kernel):
        return
    _announced = True
    # measured first compiles of the bundled tagger: ~15 s of CPU on a 2-core x86 VM; ARM boards are slower
    estimate = "about 15 s" if platform.machine().lower() in ("x86_64", "amd64") else "a minute or more"
    print(f"edgelstm: compiling the kernels for this model once ({estimate}; `edgelstm warmup` does it ahead); "
          "later runs load them from the disk cache", file=stream, flush=True)
    _start_ticker(kernel, stream)


def _start_ticker(kernel, stream, every: float = 15.0, give_up: float = 3600.0):
    """A daemon thread that prints "still compiling (N s)" every ``every`` seconds until ``kernel`` has a
    compiled signature, or ``give_up`` seconds (the compile holds no lock this thread needs: it only reads
    the dispatcher). Returns the thread."""
    import threading
    import time

    def tick():
        t0 = time.monotonic()
        while not kernel.signatures and time.monotonic() - t0 < give_up:
            time.sleep(min(0.5, every / 4))
            waited = time.monotonic() - t0
            if not kernel.signatures and waited >= every * (1 + tick.shown):
                tick.shown += 1
                print(f"\redgelstm: still compiling ({waited:.0f} s)", end="", file=stream, flush=True)
        if tick.shown:
            print(file=stream, flush=True)
    tick.shown = 0
    thread = threading.Thread(target=tick, name="edgelstm-compile-progress", daemon=True)
    thread.start()
    return thread

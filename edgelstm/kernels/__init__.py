"""@njit kernels: fixed-point primitives, int8 and float32 cells, the one-call program driver.

Numba's on-disk cache checks only the source file of each cached function, not the files of the functions
it calls (or of the modules whose globals it reads), so editing ``cells_int8.py`` would leave a cached ``program.py`` kernel running the old cells.
On import we stamp a hash of all kernel sources and drop this package's cache files when it changes.
"""
import hashlib
from pathlib import Path


def _cache_dirs(here: Path) -> list:
    """Every directory Numba may keep this package's cache files in, asked from Numba's own cache locators:
    ``$NUMBA_CACHE_DIR``'s copy of this folder, the in-tree ``__pycache__``, the user-wide cache (where a
    read-only install caches)."""
    dirs = [here / "__pycache__"]
    try:
        from numba.core import caching
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl   # renamed in Numba 0.6x
        for cls in impl._locator_classes:
            try:
                locator = cls.from_function(_cache_dirs, str(here / "program.py"))
            except Exception:   # noqa: BLE001  (a locator that does not apply to a plain source file)
                locator = None
            if locator is not None:
                dirs.append(Path(locator.get_cache_path()))
    except (ImportError, AttributeError):   # another Numba layout: the in-tree directory at least
        pass
    return list(dict.fromkeys(dirs))


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
            cache.mkdir(parents=True, exist_ok=True)
            for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
                f.unlink(missing_ok=True)
            stamp.write_text(want)
        except OSError:  # read-only location: Numba does not write there either
            pass


_drop_stale_cache()


_announced = False


def announce_compile(kernel, stream=None) -> None:
    """Say once per process, on a terminal, that the first call of ``kernel`` will compile (no disk cache
    entry yet), with an estimate, and while it compiles print the elapsed time every 15 s on the same line
    (minutes on a Raspberry Pi are otherwise silent). A read-only install still caches: Numba then writes
    to its user-wide cache directory (``NUMBA_CACHE_DIR``, else ``~/.cache/numba``)."""
    global _announced
    import os
    import platform
    import sys
    stream = stream if stream is not None else sys.stderr
    if _announced or not getattr(stream, "isatty", lambda: False)():
        return
    try:
        cached = bool(kernel.signatures) or os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:   # not a caching dispatcher: nothing to announce
        return
    if cached:
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

"""No-JIT backend: the C99 runtime (firmware_host/) as a shared library called through ctypes.

With ``EDGELSTM_BACKEND=native`` and the library present, ``Model.stream()`` steps int8 models through it: no
Numba import, no compile (the deployment path for a fast cold start), bit-identical to the JIT kernels (the
same integer program; tested). Build it once per machine:

    python -m edgelstm.firmware_host build-native        # needs a C compiler (gcc/clang), ~1 s

Where it is looked for, in order: ``$EDGELSTM_NATIVE_LIB``; ``libedgelstm_native.so`` inside the installed
``edgelstm/firmware_host``; the user cache (``$XDG_CACHE_HOME/edgelstm``, else ``~/.cache/edgelstm``).
``EDGELSTM_BACKEND=jit`` forces the Numba path, ``EDGELSTM_BACKEND=native`` the library; otherwise
``prefer_native`` decides (the JIT when Numba is importable: its pairwise kernels step faster).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

LIB_NAME = "libedgelstm_native.so"
FORMAT_VERSION = 5   # ELSTM_FORMAT_VERSION in firmware_host/include/edgelstm.h (the C data layout, program/c_program.py;
                     # 5: elstm_init validates with ELSTM_LIM_* and checks only when st is NULL)
_lib = None
_searched = False


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgelstm"


def candidate_paths() -> list[Path]:
    out = []
    if os.environ.get("EDGELSTM_NATIVE_LIB"):
        out.append(Path(os.environ["EDGELSTM_NATIVE_LIB"]))
    out.append(Path(__file__).resolve().parent.parent / "firmware_host" / LIB_NAME)   # editable install
    out.append(Path(__file__).resolve().parent / "firmware_host" / LIB_NAME)          # installed package
    out.append(user_cache_dir() / LIB_NAME)
    return out


class _Config(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in ("format_version", "input_size", "output_size", "width", "n_state",
                                              "scratch", "prog_len", "w8_len", "blob_len")] + \
               [("input_scale", ctypes.c_float), ("input_zp", ctypes.c_int32),
                ("output_scale", ctypes.c_float), ("output_zp", ctypes.c_int32)]


class _Weights(ctypes.Structure):
    _fields_ = [("prog", ctypes.c_void_p), ("w8", ctypes.c_void_p), ("blob", ctypes.c_void_p)]


class _State(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("state", "frames", "gates", "acc", "aux")]


class _Call(ctypes.Structure):   # elstm_call: every argument of elstm_step_f32, bound once
    _fields_ = [(n, ctypes.c_void_p) for n in ("cfg", "w", "st", "x", "y", "xq", "yq")]


def _load(path):
    """The library at path with its prototypes set, or None if unloadable or built for another format."""
    try:
        lib = ctypes.CDLL(str(path))
        lib.elstm_format_version.restype = ctypes.c_int
        lib.elstm_format_version.argtypes = []
        if lib.elstm_format_version() != FORMAT_VERSION:
            raise AttributeError("format")
        lib.elstm_step_call.restype = ctypes.c_int
        lib.elstm_step_call.argtypes = [ctypes.c_void_p]
        set_init_prototype(lib)
        lib.elstm_dot_path.restype = ctypes.c_char_p
        lib.elstm_dot_path.argtypes = []
    except (OSError, AttributeError):   # AttributeError: a stale build from an older edgelstm
        import sys
        print(f"edgelstm: ignoring {path}: not a native library of this edgelstm version; rebuild it with "
              "python -m edgelstm.firmware_host build-native", file=sys.stderr)
        return None
    return lib


def set_init_prototype(lib) -> None:
    """elstm_init(cfg, weights, state or NULL) -> status, on a library of this FORMAT_VERSION."""
    lib.elstm_init.restype = ctypes.c_int
    lib.elstm_init.argtypes = [ctypes.c_void_p] * 3


INIT_STATUS = {1: "built for another format version", 2: "a record field, size or offset outside what it accepts"}


def check_program(lib, cfg, weights, where: str, error=None) -> None:
    """The C runtime's own validation (elstm_init with no state: checks only, touches nothing) of a config and
    its arrays before anything is allocated from them or run; raises ``error`` (default ModelError) naming
    ``where``."""
    status = lib.elstm_init(ctypes.byref(cfg), ctypes.byref(weights), None)
    if status != 0:
        from ..errors import ModelError
        raise (error or ModelError)(f"{where}: the C runtime rejects the model (elstm_init status {status}: "
                                    f"{INIT_STATUS.get(status, 'unknown')})")


def backend() -> str:
    """EDGELSTM_BACKEND: "jit", "native" or "auto" (unset or anything else)."""
    b = os.environ.get("EDGELSTM_BACKEND", "auto").lower()
    return b if b in ("jit", "native") else "auto"


def library():
    """The loaded shared library, or None (not built, disabled with EDGELSTM_BACKEND=jit, or unloadable)."""
    global _lib, _searched
    if _searched:
        return _lib
    _searched = True
    if backend() == "jit":
        return None
    for p in candidate_paths():
        if p.is_file():
            _lib = _load(p)
            if _lib is not None:
                break
    return _lib


def numba_importable() -> bool:
    import importlib.util
    return importlib.util.find_spec("numba") is not None


def prefer_native(lib) -> bool:
    """The automatic choice (docs/firmware.md, "No-JIT deployment"): the native library when EDGELSTM_BACKEND=native or
    when Numba is not importable; otherwise the JIT, whose pairwise kernels were measured faster per step than
    the C library through ctypes, SIMD build included (bench/bench_speed.py)."""
    return backend() == "native" or not numba_importable()


class NativeStep:
    """Callable with the signature of ``kernels.program.step_int8`` (x, model, work) -> status, running the C
    runtime on its own copy of the program (``c_program.c_arrays``; ``model``, the JIT's blob, is not used); the
    recurrent state and the output live in the same work buffer as the JIT's, so state get/set, reset and
    step_many keep working on it. One pre-bound ``elstm_call`` struct: a step is one copy of x into the bound
    input buffer and a one-argument ctypes call."""

    reads_kernel_blob = False     # the stream passes None for ``model``, and the JIT's blob is never built

    def __init__(self, lib, prep):
        import numpy as np

        from ..program.c_program import c_arrays
        from ..program.layout import PAD, W_Y
        from ..program.work import work_views
        self._prep = prep
        self._work_views = work_views
        self._w_y = W_Y
        prog = prep.prog
        in_scale, out_scale = prog[6:8].view("float32")
        self._arrays = c_prog, w8, blob = c_arrays(prep, compact=False)   # int8 matrices; kept alive here
        self._cfg = _Config(FORMAT_VERSION, int(prog[1]), int(prog[2]), prep.width, prep.n_state, prep.scratch,
                            c_prog.size, w8.size, blob.size, float(in_scale), int(prog[4]), float(out_scale),
                            int(prog[5]))
        self._weights = _Weights(c_prog.ctypes.data, w8.ctypes.data, blob.ctypes.data)
        check_program(lib, self._cfg, self._weights, "native backend")   # the kernels trust what it accepts
        n = prep.scratch + PAD
        self._frames = np.zeros(2 * prep.width + PAD, np.int16)
        self._gates = np.zeros(n, np.int16)
        self._acc = np.zeros(n, np.int32)
        self._aux = np.zeros(n, np.int16)
        self._x = np.zeros(int(prog[1]), np.float32)
        self._xq = np.zeros(int(prog[1]), np.int8)
        self._yq = np.zeros(int(prog[2]), np.int8)
        self._st = _State()
        self._call = _Call(ctypes.addressof(self._cfg), ctypes.addressof(self._weights), ctypes.addressof(self._st),
                           self._x.ctypes.data, None, self._xq.ctypes.data, self._yq.ctypes.data)
        self._call_ptr = ctypes.c_void_p(ctypes.addressof(self._call))
        self._fn = lib.elstm_step_call
        self._work = None

    def _bind(self, work):
        _, state = self._work_views(self._prep, work, 1)
        self._st.state, self._st.frames = state.ctypes.data, self._frames.ctypes.data
        self._st.gates, self._st.acc, self._st.aux = self._gates.ctypes.data, self._acc.ctypes.data, \
            self._aux.ctypes.data
        self._call.y = work.ctypes.data + int(work[:64].view("int32")[self._w_y])   # the step output lives in work
        self._work = work      # referenced here: the bound pointers stay valid

    def __call__(self, x, model, work):
        if work is not self._work:
            self._bind(work)
        self._x[:] = x
        return self._fn(self._call_ptr)


def step_kernel(prep):
    """A NativeStep for an int8 prepared model when the library is present and preferred (prefer_native),
    else None (use the JIT)."""
    if not prep.quantized:
        return None
    lib = library()
    return NativeStep(lib, prep) if lib is not None and prefer_native(lib) else None


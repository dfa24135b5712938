"""No-JIT backend: the C99 runtime (firmware_host/) as a shared library called through ctypes.

With ``EDGELSTM_BACKEND=native`` and the library present, ``Model.stream()`` steps int8 models through it: no
Numba import, no compile (the deployment path for a fast cold start), bit-identical to the JIT kernels (the
same integer program; tested). Build it once per machine:

    python -m edgelstm.firmware_host build-native        # needs a C compiler (gcc/clang), ~1 s

The default is the Numba JIT: its pairwise SIMD kernels step faster than the portable C runtime behind
ctypes (LSTM 40-64-8: 4.0 vs 6.2 us per step, bench/bench_speed.py), at the price of importing Numba.
Where the library is looked for, in order: ``$EDGELSTM_NATIVE_LIB``; ``libedgelstm_native.so`` inside the
installed ``edgelstm/firmware_host``; the user cache (``$XDG_CACHE_HOME/edgelstm``, else
``~/.cache/edgelstm``). ``EDGELSTM_BACKEND=jit`` (or unset) uses the Numba path.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

LIB_NAME = "libedgelstm_native.so"
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
                                              "scratch", "prog_len", "blob_len")] + \
               [("input_scale", ctypes.c_float), ("input_zp", ctypes.c_int32),
                ("output_scale", ctypes.c_float), ("output_zp", ctypes.c_int32)]


class _Weights(ctypes.Structure):
    _fields_ = [("prog", ctypes.c_void_p), ("blob", ctypes.c_void_p)]


class _State(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("state", "frames", "gates", "acc", "aux")]


def library():
    """The loaded shared library, or None (not built, disabled, or unloadable)."""
    global _lib, _searched
    if _searched:
        return _lib
    _searched = True
    if os.environ.get("EDGELSTM_BACKEND", "").lower() == "jit":
        return None
    for p in candidate_paths():
        if p.is_file():
            try:
                lib = ctypes.CDLL(str(p))
            except OSError:
                continue
            lib.elstm_step_f32.restype = ctypes.c_int
            lib.elstm_step_f32.argtypes = [ctypes.c_void_p] * 7
            _lib = lib
            break
    return _lib


class NativeStep:
    """Callable with the signature of ``kernels.program.step_int8`` (x, model, work) -> status, running the C
    runtime on the row-major ``prep.prog`` / ``prep.weights`` (``model``, the JIT's blob, is not used); the
    recurrent state and the output live in the same work buffer as the JIT's, so state get/set, reset and
    step_many keep working on it."""

    def __init__(self, lib, prep):
        import numpy as np

        from .kernels.layout import PAD
        from .runtime import _work_views
        self._lib = lib
        self._prep = prep
        self._work_views = _work_views
        prog = prep.prog
        in_scale, out_scale = prog[6:8].view("float32")
        self._cfg = _Config(1, int(prog[1]), int(prog[2]), prep.width, prep.n_state, prep.scratch, prog.size,
                            prep.weights.size, float(in_scale), int(prog[4]), float(out_scale), int(prog[5]))
        self._weights = _Weights(prog.ctypes.data, prep.weights.ctypes.data)
        n = prep.scratch + PAD
        self._frames = np.zeros(2 * prep.width + PAD, np.int16)
        self._gates = np.zeros(n, np.int16)
        self._acc = np.zeros(n, np.int32)
        self._aux = np.zeros(n, np.int16)
        self._xq = np.zeros(int(prog[1]), np.int8)
        self._yq = np.zeros(int(prog[2]), np.int8)
        self._xq_ptr, self._yq_ptr = self._xq.ctypes.data, self._yq.ctypes.data
        self._work = None
        self._y_ptr = None
        self._args = None

    def _bind(self, work):
        _, state = self._work_views(self._prep, work, 1)
        self._st = _State(state.ctypes.data, self._frames.ctypes.data, self._gates.ctypes.data,
                          self._acc.ctypes.data, self._aux.ctypes.data)
        self._work = work
        self._y_ptr = work.ctypes.data + int(work[:64].view("int32")[12])   # layout.W_Y: the step output
        self._args = (ctypes.byref(self._cfg), ctypes.byref(self._weights), ctypes.byref(self._st))

    def __call__(self, x, model, work):
        if work is not self._work:
            self._bind(work)
        cfg, w, st = self._args
        return self._lib.elstm_step_f32(cfg, w, st, x.ctypes.data, self._y_ptr, self._xq_ptr, self._yq_ptr)


def step_kernel(prep):
    """A NativeStep for an int8 prepared model when ``EDGELSTM_BACKEND=native`` and the library is present,
    else None (use the JIT, the faster default)."""
    if not prep.quantized or os.environ.get("EDGELSTM_BACKEND", "").lower() != "native":
        return None
    lib = library()
    return NativeStep(lib, prep) if lib is not None else None

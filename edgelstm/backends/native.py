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
FORMAT_VERSION = 6   # ELSTM_FORMAT_VERSION in firmware_host/include/edgelstm.h (the C data layout, program/c_program.py;
                     # 5: elstm_init validates with ELSTM_LIM_* and checks only when st is NULL; 6: conv and map
                     # records)
_lib = None
_searched = False


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgelstm"


def candidate_paths() -> list[Path]:
    out = []
    if os.environ.get("EDGELSTM_NATIVE_LIB"):
        out.append(Path(os.environ["EDGELSTM_NATIVE_LIB"]))
    here = Path(__file__).resolve().parents
    out.append(here[2] / "firmware_host" / LIB_NAME)   # editable install: <clone>/firmware_host
    out.append(here[1] / "firmware_host" / LIB_NAME)   # installed package: edgelstm/firmware_host
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
    lib = None
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
        if lib is not None:   # unloaded: dlopen of the same path after a rebuild would return this stale copy
            import _ctypes
            getattr(_ctypes, "dlclose", lambda handle: None)(lib._handle)
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


_chosen = None    # set_backend: this process's choice, over EDGELSTM_BACKEND


def backend() -> str:
    """The backend this process asked for: set_backend's choice, else EDGELSTM_BACKEND: "jit", "native" or
    "auto" (unset or anything else)."""
    if _chosen is not None:
        return _chosen
    b = os.environ.get("EDGELSTM_BACKEND", "auto").lower()
    return b if b in ("jit", "native") else "auto"


def set_backend(name: str | None) -> None:
    """Choose "jit" or "native" for this process from now on (None: back to EDGELSTM_BACKEND); kernels already
    handed out keep theirs.  The library is looked for (for "native": built) again on its next use."""
    global _chosen, _searched
    if name not in (None, "jit", "native"):
        raise ValueError(f"backend must be 'jit', 'native' or None, got {name!r}")
    _chosen = name
    if _lib is None:
        _searched = False


def library():
    """The loaded shared library, or None (not built, disabled with EDGELSTM_BACKEND=jit, or unloadable)."""
    global _lib, _searched
    if _searched:
        return _lib
    _searched = True
    if backend() == "jit":
        return None
    _lib = _find()
    if _lib is None and (backend() == "native" or not numba_importable()) and _build():
        _lib = _find()
    return _lib


def _find():
    for p in candidate_paths():
        if p.is_file():
            lib = _load(p)
            if lib is not None:
                return lib
    return None


def _build() -> bool:
    """Build the library once, on first use, when it is the only way to run (no Numba, e.g. 32-bit Pi OS, or
    EDGELSTM_BACKEND=native) and a C compiler is on PATH: the documented ``build-native`` command, run as a
    subprocess (its code sits above this package's layer).  Says so on stderr; False when it cannot."""
    import shutil
    import subprocess
    import sys
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return False
    print("edgelstm: building the C runtime for this machine once (python -m edgelstm.firmware_host "
          "build-native, a few seconds)", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "edgelstm.firmware_host", "build-native", "--cc", os.environ.get("CC", "cc")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"edgelstm: the build failed ({res.returncode}):\n{res.stderr.strip()[-2000:]}", file=sys.stderr)
        return False
    return True


def unavailable_message(prep) -> str:
    """Why a model cannot run without the JIT, for the error raised when Numba is missing."""
    if not prep.quantized:
        return ("this float32 model needs Numba (pip install numba), which is not installed: the C runtime runs "
                "int8 models only (quantize it with el.quantize)")
    if prep.whole_sequence:
        return ("this bidirectional / reverse model needs Numba (pip install numba), which is not installed: the "
                "C runtime steps frame by frame")
    return ("Numba is not installed and the C runtime is not built: install a C compiler (sudo apt install gcc) "
            "and run python -m edgelstm.firmware_host build-native")


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

    def _bind(self, work, batch: int = 1):
        _, state = self._work_views(self._prep, work, batch)
        y0 = work.ctypes.data + int(work[:64].view("int32")[self._w_y])   # the step output lives in work
        # (state, y) addresses of each sequence of the work buffer
        self._rows = [(state[b].ctypes.data, y0 + 4 * self._yq.size * b) for b in range(batch)]
        self._st.state, self._call.y = self._rows[0]
        self._st.frames = self._frames.ctypes.data
        self._st.gates, self._st.acc, self._st.aux = self._gates.ctypes.data, self._acc.ctypes.data, \
            self._aux.ctypes.data
        self._work = work      # referenced here: the bound pointers stay valid

    def __call__(self, x, model, work):
        if work is not self._work:
            self._bind(work)
        self._x[:] = x
        return self._fn(self._call_ptr)


class NativeSteps(NativeStep):
    """``NativeStep`` for a work buffer of ``batch`` sequences (``Model.streams(n)``): x (batch, F), each row
    stepped through the C runtime on its own state, outputs to the rows of work's W_Y region; a frame with
    NaN or inf anywhere is refused (status 1) before any row moves, as the JIT does."""

    def __init__(self, lib, prep, batch: int):
        super().__init__(lib, prep)
        self._batch = batch

    def __call__(self, x, model, work):
        import numpy as np
        if work is not self._work:
            self._bind(work, self._batch)
        if not np.isfinite(x).all():
            return 1
        st, call, fn, ptr = self._st, self._call, self._fn, self._call_ptr
        for b, (state, y) in enumerate(self._rows):
            st.state, call.y = state, y
            self._x[:] = x[b]
            fn(ptr)
        return 0


class NativeForward:
    """Callable with the signature of ``kernels.program.forward_int8`` (x (B, T, F), y, model, work) -> status,
    stepping each sequence frame by frame through the C runtime on its own state in ``work`` (outputs past a
    sequence's length are 0, as in the JIT).  Refuses (status 1, nothing touched) input with NaN or inf."""

    reads_kernel_blob = False

    def __init__(self, lib, prep):
        self._lib, self._prep = lib, prep
        self._steps = {}

    def __call__(self, x, y, model, work):
        import numpy as np
        B = x.shape[0]
        lengths, _ = self._prep_views(work, B)
        if any(not np.isfinite(x[b, :lengths[b]]).all() for b in range(B)):
            return 1
        step = self._steps.get(B) or self._steps.setdefault(B, NativeSteps(self._lib, self._prep, B))
        step._bind(work, B)
        out = np.zeros(self._prep.out_size, np.float32)
        step._call.y = out.ctypes.data
        y[...] = 0.0
        for b in range(B):
            step._st.state = step._rows[b][0]
            for t in range(int(lengths[b])):
                step._x[:] = x[b, t]
                step._fn(step._call_ptr)
                y[b, t] = out
        step._work = None       # y pointed at ``out``: bind again before the next batched step
        return 0

    def _prep_views(self, work, batch):
        from ..program.work import work_views
        return work_views(self._prep, work, batch)


def step_kernel(prep, batch: int = 1):
    """A NativeStep (NativeSteps for batch > 1) for an int8 prepared model when the library is present and
    preferred (prefer_native), else None (use the JIT)."""
    if not prep.quantized or prep.whole_sequence:
        return None
    lib = library()
    if lib is None or not prefer_native(lib):
        return None
    return NativeStep(lib, prep) if batch == 1 else NativeSteps(lib, prep, batch)


def forward_kernel(prep):
    """A NativeForward for an int8 prepared model when the library is present and preferred, else None."""
    if not prep.quantized or prep.whole_sequence:
        return None
    lib = library()
    return NativeForward(lib, prep) if lib is not None and prefer_native(lib) else None


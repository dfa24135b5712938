"""The user-facing runtime: Model, Stream, Streams, State, and the choice of backend.

A Model prepares its program once (``edgelstm.program.prepare``: all float math) and runs it with the Numba
kernels (``edgelstm.kernels``) or the C runtime (``edgelstm.backends.native``); streams share the model's
constant program and keep their own work buffer and state.
"""
from __future__ import annotations

import threading

import numpy as np

from .errors import InputError, ModelError, StreamingError
from .ir.model import ModelSpec
from .program import chunk_frames, make_work, prepare, work_views
from .quant.cell_scales import rnn_h_scale
from .quant.params import QuantParams, validate_quant

_F32 = np.dtype(np.float32)
# kernel return codes (see kernels/program.py)
STATUS_NON_FINITE_INPUT, STATUS_NON_FINITE_OUTPUT = 1, 2
NON_FINITE_OUTPUT_MESSAGE = ("the float model produced NaN or inf (its weights or activations overflow "
                             "float32)")


def _describe(v) -> str:
    """Short description of a user value for error messages."""
    if isinstance(v, np.ndarray):
        return f"an array of shape {v.shape} and dtype {v.dtype}"
    text = repr(v)
    return f"{type(v).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _as_array(v, what: str, expect: str = "numbers") -> np.ndarray:
    """np.asarray that turns ragged nested lists and non-numeric objects into an InputError."""
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as e:
        raise InputError(f"{what}: expected {expect}, got a ragged or mixed sequence ({e})") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise InputError(f"{what}: expected {expect}, got {_describe(v)}")
    return a


class State(list):
    """Recurrent state: ``state[k][d]`` is a dict of arrays for layer k, direction d ({} for Dense).

    Float models hold float32 ``h`` (and ``c`` for LSTM).  int8 models hold the exact integers:
    LSTM ``h`` int8 (output quantization) and ``c`` int16 (scale 2**cell_exp); GRU ``h`` int16 Q0.15;
    RNN ``h`` int8.  Arrays carry a leading batch axis when the state belongs to a batched run."""

    def copy(self) -> "State":
        return State([[{n: a.copy() for n, a in dd.items()} for dd in layer] for layer in self])


class Model:
    """A runnable model: float32 (``quant is None``) or int8."""

    def __init__(self, spec: ModelSpec, quant: QuantParams | None = None, *, initial_state: State | None = None):
        if not isinstance(spec, ModelSpec):
            raise ModelError("Model needs an edgelstm.ModelSpec")
        if quant is None and not spec.has_weights:
            raise ModelError("a model without float weights needs quantized parameters")
        self.spec = spec
        self.audio = None  # edgelstm.audio.AudioConfig of an audio tagger (set by load / the training recipe)
        self.quant = validate_quant(spec, quant) if quant is not None else None
        self._prep = prepare(spec, self.quant)
        self._initial = None      # float State (unbatched) or None: zeros
        self._initial_native = None
        if initial_state is not None:
            self.initial_state = initial_state

    @property
    def initial_state(self) -> State | None:
        """The model's own start state in real (float) terms, e.g. ONNX ``initial_h``/``initial_c``
        initializers; ``run`` (without ``initial_state=``), ``stream`` and ``reset`` start from it.  None (the
        default) means zeros.  Set it with a ``zero_state()``-structured unbatched float state, with an int8
        model's own integer state (``stream.state``: kept exactly), or None."""
        return None if self._initial is None else self._initial.copy()

    @initial_state.setter
    def initial_state(self, st: State | None) -> None:
        if st is None:
            self._initial = self._initial_native = None
            return
        if not isinstance(st, (list, tuple)) or any(not isinstance(layer, (list, tuple)) for layer in st) or any(
                not isinstance(dd, dict) for layer in st for dd in layer):
            raise InputError(f"initial_state must be a State (per layer, per direction, a dict of arrays), got "
                             f"{_describe(st)}")
        arrays = State([[{n: _as_array(a, f"initial_state[{k}][{d}][{n!r}]") for n, a in dd.items()}
                         for d, dd in enumerate(layer)] for k, layer in enumerate(st)])
        if any(a.dtype.kind in "iu" for layer in arrays for dd in layer for a in dd.values()):
            # integers: an int8 model's native state (what stream.state returns), kept exactly; reading them as
            # real values would saturate the start state
            if not self.is_quantized:
                raise InputError("initial_state of a float model: expected float arrays, got integers")
            for k, d, name, dt, _, _ in self._state_fields():
                a = arrays[k][d].get(name) if k < len(arrays) and d < len(arrays[k]) else None
                if a is not None and a.dtype != dt:
                    raise InputError(f"initial_state[{k}][{d}][{name!r}]: integer state must be this int8 model's "
                                     f"native state ({dt}, as stream.state returns it), got {a.dtype}; or pass "
                                     f"real values as floats")
            self._write_state(make_work(self._prep, 1, 1), 1, arrays, batched=False)  # validates all of it
            self._initial, self._initial_native = self.state_to_float(arrays), arrays.copy()
            return
        as_float = State([[{n: a.astype(np.float32) for n, a in dd.items()} for dd in layer] for layer in arrays])
        for k, d, name, _, shape, _ in self._state_fields():
            a = as_float[k][d].get(name) if k < len(as_float) and d < len(as_float[k]) else None
            if a is None or a.shape != shape or not np.all(np.isfinite(a)):
                raise InputError(f"initial_state[{k}][{d}][{name!r}]: expected {shape} finite floats, got "
                                 f"{_describe(a)}")
        native = self.state_from_float(as_float)
        self._write_state(make_work(self._prep, 1, 1), 1, native, batched=False)  # validates the structure
        self._initial, self._initial_native = as_float, native

    # -------------------------------------------------------------- descriptions
    @property
    def is_quantized(self) -> bool:
        return self.quant is not None

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def output_size(self) -> int:
        return self.spec.output_size

    def describe(self) -> dict:
        n_params = sum(layer.n_w + layer.n_b if layer.kind == "ops" else
                       sum(int(np.prod(s)) for s in layer.param_shapes().values()) * (2 if layer.bidirectional else 1)
                       for layer in self.spec.layers)
        return {"dtype": "int8" if self.is_quantized else "float32", "input_size": self.input_size,
                "output_size": self.output_size, "parameters": n_params, "layers": self.spec.describe(),
                "act_quant": self.quant.to_plain() if self.quant else None}

    def __repr__(self) -> str:
        kinds = "-".join(d["kind"] for d in self.spec.describe())
        return f"<edgelstm.Model {'int8' if self.is_quantized else 'float32'} {kinds} " \
               f"{self.input_size}->{self.output_size}>"

    # -------------------------------------------------------------- state helpers
    def zero_state(self, *, batch: int | None = None) -> State:
        """The state that means 'all zeros' in real terms (int8 h equals its zero point)."""
        n = batch or 1
        work = make_work(self._prep, n, 1)
        self._reset_state(work, n, zero=True)
        return self._read_state(work, n, batched=batch is not None)

    def _state_fields(self):
        """(k, d, name, dtype, shape-without-batch, layout offset) for every state array."""
        out = []
        for k, layer in enumerate(self.spec.layers):
            for d, st in enumerate(self._prep.layout[k]):
                for name, (off, size) in st.items():
                    out.append((k, d, name, self._state_dtype(layer, name), (size,), off))
        return out

    def _state_dtype(self, layer, name):
        if not self.is_quantized:
            return np.dtype(np.float32)
        if layer.kind == "lstm":
            return np.dtype(np.int8 if name == "h" else np.int16)
        if layer.kind == "context":      # the last input values, at the input's quantization
            return np.dtype(np.int8)
        if layer.kind == "ops":          # each state tensor's own width (int16 in edgelstm's 16x8 graphs)
            return np.dtype(np.int16 if layer.state_bits(list(layer.state_shapes()).index(name)) == 16 else np.int8)
        return np.dtype(np.int16)          # GRU / RNN: the int16 state of their cell graphs

    def _reset_state(self, work, batch, *, zero: bool = False):
        """Write the model's initial state (zeros unless ``initial_state`` is set; ``zero=True``: zeros)."""
        if self._initial_native is not None and not zero:
            tiled = State([[{n: np.repeat(a[None], batch, axis=0) for n, a in dd.items()} for dd in layer]
                           for layer in self._initial_native])
            self._write_state(work, batch, tiled, batched=True)
            return
        _, state = work_views(self._prep, work, batch)
        state[:] = 0
        if self.is_quantized:
            for k, layer in enumerate(self.spec.layers):
                zp = self.quant.act[k + 1][1]
                for st in self._prep.layout[k]:
                    if layer.kind == "ops":     # each state tensor at its own zero point (real 0)
                        for i, (off, size) in enumerate(st.values()):
                            state[:, off:off + size] = layer.state_quant(i)[1]
                    elif layer.kind == "lstm":
                        off, size = st["h"]
                        state[:, off:off + size] = zp
                    elif layer.kind == "context":   # real zeros in the input's quantization
                        off, size = st["ctx"]
                        state[:, off:off + size] = self.quant.act[k][1]

    def _read_state(self, work, batch, *, batched: bool) -> State:
        _, state = work_views(self._prep, work, batch)
        out = State([[{} for _ in self._prep.layout[k]] for k in range(len(self.spec.layers))])
        for k, d, name, dt, shape, off in self._state_fields():
            a = state[:, off:off + shape[0]].astype(dt)
            out[k][d][name] = a if batched else a[0].copy()
        return out

    def _write_state(self, work, batch, st: State, *, batched: bool) -> None:
        """Validate a user state (structure, dtype, shape) completely, then write it into the work buffer:
        on any error nothing has been written."""
        n_layers = len(self.spec.layers)
        if not isinstance(st, (list, tuple)) or len(st) != n_layers:
            raise InputError(f"state must be a list with one entry per layer ({n_layers}), got "
                             f"{_describe(st)}")
        for k in range(n_layers):
            n_dir = len(self._prep.layout[k])
            if not isinstance(st[k], (list, tuple)) or len(st[k]) != n_dir:
                raise InputError(f"state[{k}]: expected a list of {n_dir} direction dict(s), got {_describe(st[k])}")
        staged = []
        for k, d, name, dt, shape, off in self._state_fields():
            entry = st[k][d]
            if not isinstance(entry, dict):
                raise InputError(f"state[{k}][{d}] must be a dict of arrays, got {_describe(entry)}")
            if name not in entry:
                raise InputError(f"state[{k}][{d}] lacks {name!r}")
            a = _as_array(entry[name], f"state[{k}][{d}][{name!r}]")
            want = (batch,) + shape if batched else shape
            if a.shape != want:
                raise InputError(f"state[{k}][{d}][{name!r}]: shape {a.shape}, expected {want}")
            if a.dtype != dt:
                raise InputError(f"state[{k}][{d}][{name!r}]: dtype {a.dtype}, expected {dt}")
            if dt.kind == "f" and not np.all(np.isfinite(a)):
                raise InputError(f"state[{k}][{d}][{name!r}] contains NaN or inf")
            staged.append((off, shape[0], a.reshape(batch, shape[0])))
        _, state = work_views(self._prep, work, batch)
        for off, n, a in staged:
            state[:, off:off + n] = a

    def state_to_float(self, st: State) -> State:
        """Dequantize a state (identity copy for float models)."""
        if not self.is_quantized:
            return st.copy()
        out = st.copy()
        for k, layer in enumerate(self.spec.layers):
            if layer.kind == "context":
                s_in, zp = self.quant.act[k]
                out[k][0]["ctx"] = ((out[k][0]["ctx"].astype(np.float32) - zp) * np.float32(s_in)).astype(np.float32)
                continue
            if not layer.state_shapes():
                continue
            if layer.kind == "ops":
                for i, name in enumerate(layer.state_shapes()):
                    s, zp = layer.state_quant(i)
                    out[k][0][name] = ((out[k][0][name].astype(np.float32) - zp) * np.float32(s)).astype(np.float32)
                continue
            s_out, zp = self.quant.act[k + 1]
            for d, entry in enumerate(out[k]):
                if layer.kind in ("gru", "rnn"):
                    s_h = np.float32(rnn_h_scale(layer, self.quant.layers[k][d]))
                    entry["h"] = (entry["h"].astype(np.float32) * s_h).astype(np.float32)
                else:
                    entry["h"] = ((entry["h"].astype(np.float32) - zp) * np.float32(s_out)).astype(np.float32)
                if layer.kind == "lstm":
                    e = int(self.quant.layers[k][d]["cell_exp"][0])
                    entry["c"] = (entry["c"].astype(np.float32) * np.float32(2.0 ** e)).astype(np.float32)
        return out

    def state_from_float(self, st: State) -> State:
        """Quantize a float state into this model's native state (identity copy for float models)."""
        if not self.is_quantized:
            return State([[{n: np.asarray(a, np.float32).copy() for n, a in dd.items()} for dd in layer]
                          for layer in st])
        out = State([[{} for _ in self._prep.layout[k]] for k in range(len(self.spec.layers))])
        for k, layer in enumerate(self.spec.layers):
            if layer.kind == "context":
                s_in, zp = self.quant.act[k]
                v = np.asarray(st[k][0]["ctx"], dtype=np.float64)
                out[k][0]["ctx"] = np.clip(np.round(v / s_in) + zp, -128, 127).astype(np.int8)
                continue
            if not layer.state_shapes():
                continue
            if layer.kind == "ops":
                for i, name in enumerate(layer.state_shapes()):
                    s, zp = layer.state_quant(i)
                    v = np.asarray(st[k][0][name], dtype=np.float64)
                    dt = self._state_dtype(layer, name)
                    info = np.iinfo(dt)
                    out[k][0][name] = np.clip(np.round(v / s) + zp, info.min, info.max).astype(dt)
                continue
            s_out, zp = self.quant.act[k + 1]
            for d in range(len(self._prep.layout[k])):
                src = st[k][d]
                h = np.asarray(src["h"], dtype=np.float64)
                if layer.kind in ("gru", "rnn"):
                    s_h = float(np.float32(rnn_h_scale(layer, self.quant.layers[k][d])))
                    out[k][d]["h"] = np.clip(np.round(h / s_h), -32768, 32767).astype(np.int16)
                else:
                    out[k][d]["h"] = np.clip(np.round(h / s_out) + zp, -128, 127).astype(np.int8)
                if layer.kind == "lstm":
                    e = int(self.quant.layers[k][d]["cell_exp"][0])
                    c = np.asarray(src["c"], dtype=np.float64)
                    out[k][d]["c"] = np.clip(np.round(c / 2.0 ** e), -32768, 32767).astype(np.int16)
        return out

    # -------------------------------------------------------------- running
    def _check_frames(self, X, what: str, *, expect: str = "", scan: bool = True) -> np.ndarray:
        """Float frames with the model's feature count, as a C-contiguous, writable float32 array (a
        read-only or differently typed input is copied: it would otherwise compile a new kernel variant).
        ``scan=False``: a float32 input is not scanned for NaN/inf here (the kernel does, before touching any
        state, without a (T, F) temporary), so working memory stays bounded for any T."""
        expect = expect or f"(..., {self.input_size}) float frames"
        if X is None or isinstance(X, (str, bytes, dict)):
            raise InputError(f"{what}: expected {expect}, got {_describe(X)}")
        X = _as_array(X, what, expect)
        if X.dtype.kind != "f":
            raise InputError(f"{what}: expected {expect}, got dtype {X.dtype} (convert integer frames to float "
                             f"yourself: their scale is yours to choose)")
        if X.shape[-1:] != (self.input_size,):
            raise InputError(f"{what}: expected {expect} ({self.input_size} features in the last axis), got "
                             f"shape {X.shape}")
        if X.size == 0:
            raise InputError(f"{what}: empty sequence (shape {X.shape})")
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: reported below
            X32 = np.ascontiguousarray(X, dtype=np.float32)
        if (scan or X.dtype != _F32) and not np.all(np.isfinite(X32)):
            bad = "overflows float32" if np.all(np.isfinite(X)) else "contains NaN or inf"
            raise InputError(f"{what} {bad}")
        if not X32.flags.writeable:
            X32 = X32.copy()
        return X32

    def run(self, X, *, lengths=None, initial_state: State | None = None, return_state: bool = False):
        """Run whole sequences. X: (T, F) or (B, T, F) float. lengths: (B,) valid steps per sequence
        (outputs past a sequence's length are 0; its final state is the state at its own length).
        Returns Y (same leading axes, output_size features), or (Y, State) with return_state=True."""
        expect = f"(T, {self.input_size}) or (B, T, {self.input_size}) float frames"
        X = self._check_frames(X, "X", expect=expect, scan=False)
        if X.ndim not in (2, 3):
            raise InputError(f"X: expected {expect}, got shape {X.shape}")
        batched = X.ndim == 3
        X3 = X if batched else X[None]
        B, T = X3.shape[0], X3.shape[1]
        if lengths is None:
            lens = np.full(B, T, dtype=np.int32)
        else:
            if not batched:
                raise InputError("lengths= needs batched input (B, T, F)")
            lens = _as_array(lengths, "lengths")
            if lens.shape != (B,) or lens.dtype.kind not in "iu":
                raise InputError(f"lengths must be {B} integers, got {lens.dtype} {lens.shape}")
            if np.any(lens < 1) or np.any(lens > T):
                raise InputError(f"lengths must lie in [1, {T}], got min {lens.min()} max {lens.max()}")
            lens = lens.astype(np.int32)
        work = make_work(self._prep, B, chunk_frames(self._prep, B, T))
        lens_view, _ = work_views(self._prep, work, B)
        lens_view[:] = lens
        if initial_state is None:
            self._reset_state(work, B)
        else:
            self._write_state(work, B, initial_state, batched=batched)
        Y = np.empty((B, T, self.output_size), dtype=np.float32)
        kernel = self._kernel()
        status = kernel(X3, Y, self._blob_for(kernel), work)
        if status == STATUS_NON_FINITE_OUTPUT:
            raise ModelError(NON_FINITE_OUTPUT_MESSAGE)
        if status:
            raise InputError("X contains NaN or inf")
        Y = Y if batched else Y[0]
        if return_state:
            return Y, self._read_state(work, B, batched=batched)
        return Y

    def _blob_for(self, kernel):
        """The JIT's model blob for a Numba kernel; None for the C runtime's, which never builds it."""
        return self._prep.kernel_blob if getattr(kernel, "reads_kernel_blob", True) else None

    def _kernel(self, *, frame: bool = False, batch: int = 1):
        from .backends import native
        kernel = native.step_kernel(self._prep, batch) if frame else native.forward_kernel(self._prep)
        if kernel is not None:        # the C runtime: preferred, or the only backend (no Numba)
            return kernel
        if not native.numba_importable():
            raise ModelError(native.unavailable_message(self._prep))
        from .kernels import announce_compile
        kernel = self._jit_kernel(frame=frame)
        announce_compile(kernel)
        return kernel

    def _jit_kernel(self, *, frame: bool):
        from .kernels import program
        entries = program.kernels_for(self._prep.prog, quantized=self.is_quantized)   # only what the model uses
        if frame:
            return entries.step_int8 if self.is_quantized else entries.step_f32
        return entries.forward_int8 if self.is_quantized else entries.forward_f32

    def jit_ready(self) -> bool:
        """Whether the JIT kernels ``warmup()`` compiles for this model need no compile: compiled in this process
        or in Numba's disk cache.  False without Numba."""
        from .backends import native
        if not native.numba_importable():
            return False
        from .kernels import is_compiled
        frames = (False,) if self.spec.needs_whole_sequence else (False, True)
        return all(is_compiled(self._jit_kernel(frame=f)) for f in frames)

    def warmup(self) -> str:
        """Compile (or load from Numba's disk cache) the kernels this model runs with, ahead of the first real
        call: ``run`` / ``step_many`` and a stream's ``step``; builds the C runtime instead where it is the
        backend (no Numba).  Returns the backend's name ("jit" or "native")."""
        X = np.zeros((1, 1, self.input_size), np.float32)
        self.run(X[0])
        if not self.spec.needs_whole_sequence:
            self.stream().step(X[0, 0])
        return self.backend()

    def backend(self) -> str:
        """The backend ``run`` uses now: "jit" (Numba) or "native" (the C runtime)."""
        return "jit" if getattr(self._kernel(), "reads_kernel_blob", True) else "native"

    def stream(self) -> "Stream":
        """A new streaming session (batch 1, state kept between calls). Many may exist at once."""
        self._check_streamable()
        return Stream(self)

    def streams(self, n: int) -> "Streams":
        """``n`` independent streaming sessions stepped together: ``step(X)`` takes X (n, F) and returns
        (n, O); each row is bit-identical to its own ``stream()``, and the matmuls read the weights once per
        step for all n (the way to serve many microphones or cameras from one thread)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"streams(n): n must be a positive integer, got {_describe(n)}")
        self._check_streamable()
        return Streams(self, int(n))

    def _check_streamable(self) -> None:
        if self.spec.needs_whole_sequence:
            raise StreamingError("a bidirectional or reverse model needs the whole sequence: use run(), not "
                                 "stream()")


def _compiled_entry(kernel, args):
    """The compiled entry point of Numba dispatcher ``kernel`` for the types of ``args`` (called directly it
    unboxes the arguments as those types, without checking them); ``kernel`` itself when it is not a Numba
    dispatcher (the C runtime's NativeStep) or has no such overload."""
    overloads = getattr(kernel, "overloads", None)
    if not overloads:
        return kernel
    from numba import typeof
    cres = overloads.get(tuple(typeof(a) for a in args))
    return getattr(cres, "entry_point", None) or kernel


class _StreamBase:
    """What Stream and Streams share: a work buffer for ``batch`` sequences, the one-caller guard, state."""

    _batched = False

    def __init__(self, model: Model, batch: int, step_kernel):
        self.model = model
        self._batch = batch
        self._step_kernel = step_kernel
        self._F = model.input_size
        # One caller at a time: the kernels run without the GIL on this stream's buffers, so a second thread
        # must not enter. A non-blocking acquire costs ~0.07 us and turns misuse into a clear error.
        self._busy = threading.Lock()
        self._acquire = self._busy.acquire      # bound once: the step fast path pays no attribute lookups
        self._release = self._busy.release
        self._alloc(1)
        self.reset()

    @property
    def _step_kernel(self):
        """The step kernel (the Numba dispatcher, or the C runtime's NativeStep); settable to switch backend."""
        return self._kernel_fn

    @_step_kernel.setter
    def _step_kernel(self, kernel) -> None:
        self._kernel_fn = kernel
        self._call = self._first_call        # the fast path's callable, resolved again on the next call
        # the JIT's model blob (made on first use); the C runtime's NativeStep reads its own arrays instead
        self._model_blob = self.model._blob_for(kernel)

    def _first_call(self, x, blob, work):
        """The first fast-path call goes through the kernel (compiling or loading it); later ones call its
        compiled entry point for exactly these argument types, skipping Numba's type dispatch (~0.2 us of a
        2.5 us step). The fast path only ever passes arguments of those types (float32 C-contiguous aligned
        writable x of the stream's shape, the stream's own blob and work buffer)."""
        status = self._kernel_fn(x, blob, work)
        self._call = _compiled_entry(self._kernel_fn, (x, blob, work))
        return status

    def _enter(self) -> None:
        if not self._acquire(False):
            self._refuse()

    @staticmethod
    def _refuse():
        raise StreamingError("this Stream is in use by another thread: a Stream serves one caller at a "
                             "time; give each thread its own model.stream()")

    def _alloc(self, frames: int) -> None:
        """(Re)make the work buffer for chunks of ``frames`` frames, keeping the state."""
        model = self.model
        prep = model._prep
        old = getattr(self, "_work", None)
        work = make_work(prep, self._batch, frames)
        if old is not None:
            _, s_new = work_views(prep, work, self._batch)
            _, s_old = work_views(prep, old, self._batch)
            s_new[:] = s_old
        lens, _ = work_views(prep, work, self._batch)
        self._lengths = lens
        self._work = work
        self._frames = frames
        y_off = int(work[:64].view(np.int32)[12])
        self._y = work[y_off:y_off + 4 * self._batch * model.output_size].view(np.float32).reshape(
            (self._batch, model.output_size))       # the step output buffer, written by the kernel
        self._out = self._y if self._batched else self._y[0]

    def step(self, x) -> np.ndarray:
        """One frame per stream in ((F,) for a Stream, (n, F) for Streams, float), the outputs out ((O,) or
        (n, O)): a reused buffer, overwritten by the next call."""
        # fast path: one identity test on the dtype, a cached shape tuple and ``carray`` (C-contiguous, aligned
        # and writable: a read-only array would compile a new kernel variant) (~0.1 us); else validate
        if type(x) is np.ndarray and x.dtype is _F32 and x.shape == self._in_shape and x.flags.carray:
            call = self._call
        else:
            x = self._check_step_input(x)
            call = self._kernel_fn                  # through Numba's dispatch: any other array type is safe
        if not self._acquire(False):
            self._refuse()
        try:
            status = call(x, self._model_blob, self._work)
            if status:
                self._raise_status(status, "x")
        finally:
            self._release()
        return self._out

    def _check_step_input(self, x) -> np.ndarray:
        expect = (f"one frame per stream, shape {self._in_shape}, float" if self._batched else
                  f"one frame of shape {self._in_shape}, float")
        x = self.model._check_frames(x, "x", expect=expect)
        if x.shape != self._in_shape:
            raise InputError(f"x: expected {expect}, got shape {x.shape}")
        return x

    def reset(self) -> None:
        """Back to the model's initial state (zeros unless ``model.initial_state`` is set)."""
        self._enter()
        try:
            self.model._reset_state(self._work, self._batch)
        finally:
            self._release()

    @property
    def state(self) -> State:
        """A copy of the current state (exact integers for int8 models)."""
        self._enter()
        try:
            return self.model._read_state(self._work, self._batch, batched=self._batched)
        finally:
            self._release()

    @state.setter
    def state(self, st: State) -> None:
        self._enter()
        try:
            self.model._write_state(self._work, self._batch, st, batched=self._batched)
        finally:
            self._release()

    def _raise_status(self, status: int, what: str) -> None:
        if status == STATUS_NON_FINITE_INPUT:
            raise InputError(f"{what} contains NaN or inf")
        # float32 overflow inside the model (e.g. huge weights): the state is no longer meaningful
        self.model._reset_state(self._work, self._batch)
        raise ModelError(NON_FINITE_OUTPUT_MESSAGE + "; the stream was reset to the model's initial state")


class Stream(_StreamBase):
    """Step-by-step inference with explicit state. ``step(x)``: one frame (F,) float32 in, one frame (O,)
    out; it allocates nothing: it returns a view of the stream's own output buffer, overwritten by the next
    call (copy it to keep it)."""

    def __init__(self, model: Model):
        # no-JIT hook: the C runtime when its library is built (edgelstm/backends/native.py), else the Numba kernel
        self._in_shape = (model.input_size,)
        super().__init__(model, 1, model._kernel(frame=True))

    def step_many(self, X) -> np.ndarray:
        """Many frames (T, F) in one jitted call; returns (T, O) (a new array). Equals T calls of step.
        Works through T in bounded chunks: the working memory does not grow with T."""
        expect = f"(T, {self._F}) float frames"
        X = self.model._check_frames(X, "X", expect=expect, scan=False)
        if X.ndim != 2:
            raise InputError(f"step_many: expected {expect}, got shape {X.shape}")
        T = X.shape[0]
        self._enter()
        try:
            want = chunk_frames(self.model._prep, 1, T)
            if want > self._frames:
                self._alloc(want)  # keeps the state
            self._lengths[0] = T
            Y = np.empty((1, T, self.model.output_size), np.float32)
            kernel = self.model._kernel()
            status = kernel(X[None], Y, self.model._blob_for(kernel), self._work)
            if status:
                self._raise_status(status, "X")
        finally:
            self._release()
        return Y[0]


class Streams(_StreamBase):
    """``n`` streams stepped by one call (``model.streams(n)``): ``step(X)`` with X (n, F) returns (n, O), a
    reused buffer; ``state`` / ``reset`` as for a Stream, with a leading n axis on every state array.  Row i
    is bit-identical to a lone ``stream()`` fed row i of every X."""

    _batched = True

    def __init__(self, model: Model, n: int):
        self._in_shape = (n, model.input_size)
        super().__init__(model, n, model._kernel(frame=True, batch=n))

    def __len__(self) -> int:
        return self._batch

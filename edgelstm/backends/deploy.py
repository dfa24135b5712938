"""Numpy-free deployment: run a model compiled into a shared library, through ctypes only.

    edgelstm export tagger-int8.elstm --to c -o tagger_c && make -C tagger_c libmodel.so
    from edgelstm.deploy import CompiledModel
    s = CompiledModel("tagger_c/libmodel.so").stream()
    y = s.step(frame)        # frame: F floats (array.array('f'), a list, a float32 numpy array, ...)

This module imports neither numpy nor Numba: a process that only streams frames starts in the time of the
Python interpreter plus one dlopen. ``step`` returns the stream's own ctypes float array (overwritten by the
next call; ``list(y)`` or ``numpy.asarray(y)`` copies/views it). Results equal ``Model.stream().step`` bit
for bit (tested).
"""
from __future__ import annotations

import ctypes
import os

from ..errors import ArtifactError, InputError
from .native import FORMAT_VERSION, _Call, _Config, _State, _Weights, check_program, set_init_prototype



class CompiledModel:
    """A model compiled into a shared library by its C bundle's Makefile (``make libmodel.so``)."""

    def __init__(self, path):
        path = os.fspath(path)
        try:
            self._lib = ctypes.CDLL(os.path.abspath(path))
            self._cfg = _Config.in_dll(self._lib, "model_config")
            self._weights = _Weights.in_dll(self._lib, "model_weights")
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: not a compiled edgelstm model ({e})") from None
        if self._cfg.format_version != FORMAT_VERSION:
            raise ArtifactError(f"{path}: format version {self._cfg.format_version}, this edgelstm reads "
                                f"{FORMAT_VERSION}: re-export the model")
        set_init_prototype(self._lib)
        # the runtime's checks before any buffer is sized from the config (a bad size: an error, not a crash)
        check_program(self._lib, self._cfg, self._weights, path, ArtifactError)
        self._lib.elstm_reset.restype = None
        self._lib.elstm_reset.argtypes = [ctypes.c_void_p] * 3
        self._lib.elstm_step_call.restype = ctypes.c_int
        self._lib.elstm_step_call.argtypes = [ctypes.c_void_p]
        self.path = path

    @property
    def input_size(self) -> int:
        return self._cfg.input_size

    @property
    def output_size(self) -> int:
        return self._cfg.output_size

    def stream(self) -> "CompiledStream":
        return CompiledStream(self)


class CompiledStream:
    """One streaming session on a CompiledModel; all its memory is allocated here, once."""

    def __init__(self, model: CompiledModel):
        c = model._cfg
        self._model = model
        self._F = c.input_size
        self._bufs = [(ctypes.c_int16 * max(c.n_state, 1))(), (ctypes.c_int16 * (2 * c.width))(),
                      (ctypes.c_int16 * c.scratch)(), (ctypes.c_int32 * c.scratch)(), (ctypes.c_int16 * c.scratch)()]
        self._st = _State(*[ctypes.addressof(b) for b in self._bufs])
        self._x = (ctypes.c_float * c.input_size)()
        self._x_bytes = memoryview(self._x).cast("B")
        self._y = (ctypes.c_float * c.output_size)()
        self._xq = (ctypes.c_int8 * c.input_size)()
        self._yq = (ctypes.c_int8 * c.output_size)()
        self._args = (ctypes.byref(c), ctypes.byref(model._weights), ctypes.byref(self._st))
        self._call = _Call(*[ctypes.addressof(o) for o in (c, model._weights, self._st, self._x, self._y,
                                                            self._xq, self._yq)])
        self._call_ptr = ctypes.c_void_p(ctypes.addressof(self._call))   # one bound argument per step
        if model._lib.elstm_init(*self._args) != 0:   # checked in CompiledModel: cannot fail here
            raise ArtifactError(f"{model.path}: the runtime rejected the model data")

    def reset(self) -> None:
        """Back to the zero state."""
        self._model._lib.elstm_reset(*self._args)

    def step(self, x):
        """One frame of input_size floats in; the stream's output array (output_size floats) out."""
        try:   # a contiguous float32 buffer (array.array('f'), numpy float32) is one memcpy
            mv = memoryview(x)
            if mv.format != "f" or mv.nbytes != len(self._x_bytes):
                raise TypeError
            self._x_bytes[:] = mv.cast("B")
        except (TypeError, ValueError):
            try:
                self._x[:] = x
            except (TypeError, ValueError):
                raise InputError(f"step takes {self._F} floats, got {x!r:.80}") from None
        if self._model._lib.elstm_step_call(self._call_ptr):
            raise InputError("x contains NaN or inf")
        return self._y

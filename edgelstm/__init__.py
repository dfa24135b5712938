"""edgelstm: int8 LSTM/GRU/RNN inference for the edge.

    import edgelstm as el
    m = el.load("tagger.elstm")
    q = el.quantize(m, calibration=X_calib)
    Y = q.run(X)
    s = q.stream(); y = s.step(x)

The public names below are imported on first use, so ``import edgelstm`` (and the numpy-free deployment
module ``edgelstm.deploy``) stay cheap: a no-JIT process starts without numpy or Numba.
"""
from .errors import (ArtifactError, AudioError, AudioWarning, EdgeLSTMError, EdgeLSTMWarning, FirmwareError,
                     ImportModelError, InputError, ModelError, StreamingError)

__version__ = "0.1.0"
_LAZY = {"Model": "runtime", "Stream": "runtime", "ModelSpec": "ir.model", "LSTM": "ir.model", "GRU": "ir.model",
         "RNN": "ir.model", "Dense": "ir.model", "random_model": "ir.model", "QuantParams": "quant.params",
         "load": "artifact", "save": "artifact", "quantize": "quantization",
         "quantize_tail": "quantization", "Chain": "topologies"}
__all__ = ["Model", "Stream", "ModelSpec", "LSTM", "GRU", "RNN", "Dense", "QuantParams", "load", "save",
           "quantize", "quantize_tail", "Chain", "random_model", "EdgeLSTMError", "ModelError", "InputError", "ArtifactError",
           "ImportModelError", "StreamingError", "FirmwareError", "AudioError", "EdgeLSTMWarning", "AudioWarning"]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

"""edgelstm: int8 LSTM/GRU/RNN inference for the edge.

    import edgelstm as el
    m = el.load("tagger.elstm")
    q = el.quantize(m, calibration=X_calib)
    Y = q.run(X)
    s = q.stream(); y = s.step(x)
"""
from .errors import (ArtifactError, EdgeLSTMError, FirmwareError, ImportModelError, InputError, ModelError,
                     StreamingError)
from .model import GRU, LSTM, RNN, Dense, ModelSpec, random_model
from .quant.params import QuantParams
from .runtime import Model, Stream
from .artifact import load, save
from .quant.ptq import quantize

__version__ = "0.1.0"
__all__ = ["Model", "Stream", "ModelSpec", "LSTM", "GRU", "RNN", "Dense", "QuantParams", "load", "save",
           "quantize", "random_model", "EdgeLSTMError", "ModelError", "InputError", "ArtifactError",
           "ImportModelError", "StreamingError", "FirmwareError"]

"""One exception tree for the whole package (librosa style).

Every error edgelstm raises on purpose derives from ``EdgeLSTMError`` so callers can catch one type.
"""


class EdgeLSTMError(Exception):
    """Base class of every edgelstm error."""


class ModelError(EdgeLSTMError, ValueError):
    """The model description is inconsistent (shapes, kinds, wiring, quantization parameters)."""


class InputError(EdgeLSTMError, ValueError):
    """Bad data passed to run/step: wrong shape, dtype, NaN/inf, empty, bad lengths or state."""


class ArtifactError(EdgeLSTMError, ValueError):
    """A model file is wrong, truncated, corrupt or from an unsupported format version."""


class ImportModelError(EdgeLSTMError, ValueError):
    """A framework model (PyTorch, ONNX, ...) cannot be converted."""


class StreamingError(EdgeLSTMError, RuntimeError):
    """The model cannot be run step by step (e.g. it has a bidirectional layer)."""


class AudioError(EdgeLSTMError, ValueError):
    """Audio input cannot be read: truncated or malformed WAV, unsupported encoding, empty, NaN/inf samples,
    raw-format flags that do not fit the stream, or a front end that does not match the model."""


class FirmwareError(EdgeLSTMError, RuntimeError):
    """A C bundle cannot be built or run (no compiler, a compile error, the program failed)."""


class EdgeLSTMWarning(UserWarning):
    """Base class of every warning edgelstm issues (the CLI prints them as one ``edgelstm: warning:`` line)."""


class AudioWarning(EdgeLSTMWarning):
    """Audio was read, but not all of what its header declared (a WAV file cut short)."""

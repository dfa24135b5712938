"""Reading a model file for an importer: one place that turns OS errors into ImportModelError."""
from __future__ import annotations

import os

from edgelstm.errors import ImportModelError


def read_model_file(path) -> tuple[bytes, str]:
    """(file bytes, the path as text for messages); ``bytes`` input passes through as ``"<bytes>"``."""
    if isinstance(path, (bytes, bytearray)):
        return bytes(path), "<bytes>"
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            return f.read(), where
    except OSError as e:
        raise ImportModelError(f"{where}: cannot read: {e.strerror or e}") from None

"""Training-side tools (imported as ``edgelstm.export``): framework importers and exporters.

Every importer returns a runnable ``edgelstm.Model``; every exporter takes one.  Heavy frameworks (torch,
onnx, h5py, flatbuffers, ...) are imported inside the functions that need them, so ``import edgelstm.export``
stays cheap.  ``IMPORTERS`` / ``EXPORTERS`` are the one dispatch table the CLI's ``convert`` / ``export``
commands use.
"""
from __future__ import annotations

import importlib
import os
import sys
import types

from edgelstm.errors import ImportModelError

from .from_torch import from_torch

# file suffix -> (module, function) of the importer that reads it
IMPORTERS = {
    ".tflite": ("from_tflite", "from_tflite"),
    ".onnx": ("from_onnx", "from_onnx"),
    ".keras": ("from_keras", "from_keras"),
    ".h5": ("from_keras", "from_keras"),
}
# --to target -> (module, function, what it writes)
EXPORTERS = {
    "tflite": ("to_tflite", "to_tflite", "a .tflite file"),
    "onnx": ("to_onnx", "to_onnx", "an .onnx file"),
    "c": ("to_c", "to_c", "a directory of C99 sources"),
}


def _resolve(module: str, func: str, what: str):
    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(__name__):
            raise ImportModelError(f"{what} is not available in this version of edgelstm") from None
        raise ImportModelError(f"{what} needs the optional package {e.name!r}; "
                               f"install it with pip (see the README's extras)") from None
    return getattr(mod, func)


def import_model(path):
    """Read a framework model file (.tflite, .onnx, .keras, .h5) into a runnable ``edgelstm.Model``."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in IMPORTERS:
        known = ", ".join(sorted(IMPORTERS))
        raise ImportModelError(f"{os.fspath(path)}: unknown model format {suffix or '(no suffix)'!r}; "
                               f"edgelstm imports {known} (and .elstm with edgelstm.load)")
    module, func = IMPORTERS[suffix]
    return _resolve(module, func, f"importing {suffix} files")(path)


def export_model(model, target: str, path, **options):
    """Write ``model`` as ``target`` (one of ``EXPORTERS``) to ``path``."""
    if target not in EXPORTERS:
        raise ImportModelError(f"unknown export target {target!r}; choose one of {', '.join(EXPORTERS)}")
    module, func, what = EXPORTERS[target]
    return _resolve(module, func, f"exporting to {target}")(model, path, **options)


def __getattr__(name):  # from_onnx, to_tflite, ... resolved lazily from the tables above
    for table in (IMPORTERS, EXPORTERS):
        for entry in table.values():
            if entry[1] == name:
                return _resolve(entry[0], entry[1], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FUNCTIONS = {entry[1] for table in (IMPORTERS, EXPORTERS) for entry in table.values()}


class _Package(types.ModuleType):
    """Each importer/exporter function shares its submodule's name (``to_tflite`` in ``to_tflite.py``). Python
    binds a submodule to its package's attribute when it first loads it, whoever imports it; this keeps the
    function there instead, so ``from edgelstm.export import to_tflite`` is the function in any import order."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["from_torch", "import_model", "export_model", "IMPORTERS", "EXPORTERS"]

"""`from edgelstm.export import to_tflite` is the function whatever was imported first (a submodule of the same
name used to shadow it when a test or user imported `edgelstm.export.to_tflite` before the function)."""
import subprocess
import sys

import pytest

from edgelstm import export


@pytest.mark.parametrize("name", sorted({e[1] for t in (export.IMPORTERS, export.EXPORTERS) for e in t.values()}))
def test_function_name_survives_importing_its_submodule_first(name):
    code = (f"import importlib, types; importlib.import_module('edgelstm.export.{name}'); "
            f"from edgelstm.export import {name} as f; "
            f"assert isinstance(f, types.FunctionType), f; print(f.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == name, out.stderr[-500:]

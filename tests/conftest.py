"""pytest setup shared by the test suite."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # lets tests import the `naive` references however pytest is configured
    sys.path.insert(0, str(TESTS))


# ---- TEMPORARY import hack: delete once edgelstm/__init__ imports cleanly and the package is installed
# ---- (pyproject maps export/ as edgelstm.export).  Touches sys.modules only, never files.
def _temporary_import_hack() -> None:
    import importlib.util
    import types

    try:
        import edgelstm  # noqa: F401
    except ImportError:
        # __init__ imports modules still being written: expose the package without running __init__.
        for name in [n for n in sys.modules if n == "edgelstm" or n.startswith("edgelstm.")]:
            del sys.modules[name]
        pkg = types.ModuleType("edgelstm")
        pkg.__path__ = [str(ROOT / "edgelstm")]
        pkg.__file__ = str(ROOT / "edgelstm" / "__init__.py")
        sys.modules["edgelstm"] = pkg
    import edgelstm

    if importlib.util.find_spec("edgelstm.export") is None:
        spec = importlib.util.spec_from_file_location(
            "edgelstm.export", ROOT / "export" / "__init__.py",
            submodule_search_locations=[str(ROOT / "export")])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["edgelstm.export"] = mod
        spec.loader.exec_module(mod)
        edgelstm.export = mod


_temporary_import_hack()
# ---- end TEMPORARY

"""The package's imports point down: IR < quant < program < kernels < backends < runtime < the tools above it.

The import graph is read from the source with ``ast`` (every import statement, also those inside functions), so
it holds for imports made lazily too. An import of ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first,
so it counts as an import of each of them (except a module's own packages, which Python handles).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# top-level folders and the package names they install as (pyproject's package-dir)
SOURCES = {"edgelstm": ROOT / "edgelstm", "edgelstm.export": ROOT / "export",
           "edgelstm.firmware_host": ROOT / "firmware_host"}

# Each module's layer; a module may import its own layer or lower ones only (longest prefix wins).
LAYERS = [
    ("edgelstm.errors", 0), ("edgelstm.config", 0), ("edgelstm._progress", 0), ("edgelstm.data", 0),
    ("edgelstm.limits", 0),
    ("edgelstm", 0),                   # the package itself: errors only, the rest resolved lazily by name
    ("edgelstm.ir", 1),
    ("edgelstm.quant", 2),
    ("edgelstm.program", 3),
    ("edgelstm.kernels", 4),
    ("edgelstm.backends", 5), ("edgelstm.deploy", 5),
    ("edgelstm.runtime", 6),
    ("edgelstm.artifact", 7), ("edgelstm.quantization", 7), ("edgelstm.topologies", 7),
    ("edgelstm.audio", 8), ("edgelstm.export", 8), ("edgelstm.firmware_host", 8),
    ("edgelstm.benchmark", 9), ("edgelstm.cli", 9), ("edgelstm.__main__", 9),
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [q for q in path.relative_to(folder).with_suffix("").parts if q != "__init__"]
            out[".".join([pkg] + parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports (resolved to known modules), with the packages each import initializes."""
    package = name if _is_package(path) else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            if mod == "export" or (mod or "").startswith("export."):
                raise AssertionError(f"{name} imports {mod!r}: always write edgelstm.export")
            if node.level and mod not in known:       # a relative import of a module that does not exist
                raise AssertionError(f"{name}: 'from {'.' * node.level}{node.module or ''} import ...' names "
                                     f"{mod}, which is not a module of the package")
            for a in node.names:                      # ``from pkg import submodule``
                targets.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    out = set()
    for t in targets:
        parts = t.split(".")
        for i in range(1, len(parts) + 1):           # the packages the import runs, then the module
            m = ".".join(parts[:i])
            if m in known and not (name == m or name.startswith(m + ".")):
                out.add(m)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {n: _imports(n, p, known) for n, p in mods.items()}


def _layer(name: str) -> int:
    best = max((p for p, _ in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_package():
    g = _graph()
    assert {"edgelstm.runtime", "edgelstm.ir.model", "edgelstm.program.records", "edgelstm.export.to_tflite",
            "edgelstm.firmware_host"} <= set(g)
    assert "edgelstm.program" in g["edgelstm.runtime"]          # so the checks below can fail
    assert "edgelstm.ir.model" in g["edgelstm.export.from_torch"]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_point_down():
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, ts in sorted(_graph().items()) for t in sorted(ts) if _layer(t) > _layer(m)]
    assert bad == []


def test_the_checks_can_fail():
    """A made-up cycle and an upward import are found."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _layer("edgelstm.ir.model") < _layer("edgelstm.program.records") < _layer("edgelstm.runtime")


@pytest.mark.parametrize("name", ["edgelstm.cli"])
def test_nothing_imports_the_cli(name):
    assert [m for m, ts in _graph().items() if name in ts and m != "edgelstm.__main__"] == []

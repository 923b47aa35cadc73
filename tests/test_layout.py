"""The package's layout holds: imports run downward only, parity never imports a converter.

The graph is read from the source of the installed package (every `import` and `from ... import`,
those inside functions included), so a lazy import that closes a circle is caught as surely as a
top-level one. Reading the files with `ast` imports no framework, so this runs in well under a second.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

# The small base anything may import; it imports nothing of porttax above it.
BASE = {
    "porttax.errors", "porttax.types", "porttax._frameworks", "porttax.saving", "porttax.progress",
    "porttax.tax", "porttax.layer_map", "porttax.torch_ir", "porttax.dtype_policy", "porttax.lazy_weights",
}
# room -> the rooms it may import (itself included); the orchestration (conversion, routes,
# inspection, audit, cli) sits on top and may import anything.
ALLOWED = {
    "base": {"base"},
    "converters": {"base", "converters"},
    "models": {"base", "models", "sources"},
    "sources": {"base", "sources", "models", "converters"},
    "tfjs": {"base", "tfjs"},
    "parity": {"base", "parity", "sources", "tfjs"},
    "targets": {"base", "targets", "sources", "converters", "parity", "models", "tfjs"},
}
SUB_PACKAGES = ("sources", "targets", "parity", "converters", "models", "audit", "tfjs", "operator_sets")


def _modules() -> dict[str, Path]:
    """{dotted name: file} for every module of the installed porttax (package-dir mapped folders too)."""
    found: dict[str, Path] = {}
    # converters/, parity/ and models/ are mapped into the namespace (pyproject's package-dir), so they
    # are not folders of porttax/ in a source checkout: ask the import system for each
    stack = ["porttax", "porttax.converters", "porttax.parity", "porttax.models"]
    while stack:
        pkg = stack.pop()
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.origin is not None, pkg
        found[pkg] = Path(spec.origin)
        for folder in spec.submodule_search_locations or []:
            for path in sorted(Path(folder).iterdir()):
                if path.suffix == ".py" and path.stem != "__init__":
                    found[f"{pkg}.{path.stem}"] = path
                elif (path / "__init__.py").is_file() and f"{pkg}.{path.name}" not in found:
                    stack.append(f"{pkg}.{path.name}")
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The porttax modules `name` imports, resolved to the deepest module that exists."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("porttax"):
                targets.add(target)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _room(module: str) -> str:
    if module in BASE:
        return "base"
    for room in SUB_PACKAGES:
        if module == f"porttax.{room}" or module.startswith(f"porttax.{room}."):
            return room
    return "orchestration"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_whole_package() -> None:
    graph = _graph()
    # a reader that found nothing would pass every check below
    assert {"porttax.conversion", "porttax.parity.runners", "porttax.converters.torch_to_keras.driver",
            "porttax.sources.torch_source", "porttax.targets.savedmodel"} <= set(graph)
    assert "porttax.parity.taps" in graph["porttax.parity.runners"]  # a lazy import inside a method
    assert "porttax.torch_ir" in graph["porttax.converters.torch_to_keras.driver"]


def test_no_import_circle() -> None:
    assert _cycles(_graph()) == []


def test_parity_never_imports_a_converter() -> None:
    bad = {m: sorted(t for t in targets if _room(t) == "converters")
           for m, targets in _graph().items() if _room(m) == "parity"}
    assert {m: t for m, t in bad.items() if t} == {}


def test_each_room_imports_only_downward() -> None:
    graph = _graph()
    wrong = [f"{m} ({_room(m)}) imports {t} ({_room(t)})"
             for m, targets in sorted(graph.items()) if _room(m) in ALLOWED
             for t in sorted(targets) if t != "porttax" and _room(t) not in ALLOWED[_room(m)]]
    assert wrong == []


def test_top_level_stays_small_and_each_sub_package_says_what_belongs_there() -> None:
    modules = _modules()
    top = [m for m in modules if m.count(".") == 1 and m.rpartition(".")[2] not in SUB_PACKAGES]
    assert len(top) + 1 <= 15, sorted(top)  # + porttax/__init__.py
    for room in SUB_PACKAGES:
        doc = ast.get_docstring(ast.parse(modules[f"porttax.{room}"].read_text()))
        assert doc and len(doc) > 80, f"porttax.{room} has no opening docstring saying what belongs there"

"""The package's imports form layers without cycles.

Every module of ``mtrl`` is parsed with :mod:`ast` (nothing is imported); every ``import`` /
``from ... import`` counts, at module level, inside functions or under ``TYPE_CHECKING``. An
import of ``a.b`` is an edge to the module ``a.b`` (``from a import b`` to ``a.b`` when ``b`` is
a module, else to ``a``); the implicit import of parent packages is not an edge.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import mtrl

ROOT = Path(mtrl.__file__).parent

# Layers, lowest first: a module imports only modules of its own layer or of a lower one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("mtrl.errors", "mtrl.serialization", "mtrl.registry")),
    ("core", ("mtrl.agents", "mtrl.nn", "mtrl.optim", "mtrl.envs", "mtrl.data", "mtrl.config")),
    ("training", ("mtrl.training",)),
    ("analysis", ("mtrl.analysis",)),
    # the commands and the public facade (``mtrl.load``, ``python -m mtrl``, the README's
    # ``mtrl.evaluation.MetaWorldAgent``)
    ("top", ("mtrl.cli", "mtrl.__main__", "mtrl.evaluation", "mtrl")),
]

# Known cycles, each an exact set of modules; remove an entry once its cycle is gone.
ALLOWED_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = ("mtrl", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                candidates = [f"{source}.{alias.name}" for alias in node.names] + [source]
                candidates = [c for c in candidates[:-1] if c in known] or [source]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in known:  # import a.b.c of a module a.b
                    candidate = candidate.rpartition(".")[0]
                if candidate.startswith("mtrl") and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def layer_of(name: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{name} is in no layer of tests/test_imports.py: add it"
    return best[0]


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "mtrl.training.loop" in graph["mtrl.cli.train"]
    assert "mtrl.training.hooks" in graph["mtrl.analysis.affinity"]
    assert "mtrl.serialization" in graph["mtrl.agents.base"]


def test_no_import_cycles() -> None:
    found = set(cycles(import_graph()))
    unexpected = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    assert not stale, f"these allowed cycles are gone: remove them from ALLOWED_CYCLES: {stale}"


def test_imports_point_down_the_layers() -> None:
    graph = import_graph()
    upward = [f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
              for src, targets in graph.items() for dst in sorted(targets)
              if layer_of(dst) > layer_of(src)]
    assert not upward, upward


def test_core_never_imports_the_application() -> None:
    core = LAYERS[1][1]
    application = ("mtrl.training", "mtrl.analysis", "mtrl.cli")
    graph = import_graph()
    bad = [(src, dst) for src, targets in graph.items() for dst in targets
           if src.startswith(core) and dst.startswith(application)]
    assert not bad, bad


def test_the_documented_python_entry_points_exist() -> None:
    assert callable(mtrl.load)
    assert importlib.import_module("mtrl.evaluation").MetaWorldAgent is \
        importlib.import_module("mtrl.training.evaluation").MetaWorldAgent
    optim = importlib.import_module("mtrl.optim")
    assert callable(optim.pcgrad) and callable(optim.cagrad)


def test_a_missing_optional_package_is_a_one_line_error(monkeypatch) -> None:
    import sys

    import pytest

    from mtrl.errors import MtrlError, require

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # imported earlier in the session: hide it
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MtrlError, match=r"^mtrl report needs matplotlib: pip install "
                                        r"'mtrl\[report\]'"):
        require("matplotlib.figure", "report", "mtrl report")

"""The package's import graph: no cycle between modules, no import from a lower layer to a higher one.

Every ``import`` and ``from … import`` of ``src/botmemory`` counts, including
those inside functions (a deferred import is still a dependency). Imports
under ``if TYPE_CHECKING:`` are left out: they exist for the type checker
only and never run (``retention/users.py`` names ``Store`` that way).

Layers, lowest first (``conventions.md``); a module may import its own
layer's modules (without a cycle) and lower layers only:

1. basics: errors, clock, expiry, keys, jsonpath, codec, limits, cancellation, version
2. backends/
3. kvs, then memory, then store, then sync
4. retention/ and dumpfile, then runtime/, then integrations/ and testing/
5. http/
6. cli/

``botmemory/__init__.py`` (the package's face: it re-exports the public
API and attaches retention to the store), ``__main__.py``, ``demo.py`` and
``starter/`` sit above everything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "botmemory"

_BASICS = ("errors", "clock", "expiry", "keys", "jsonpath", "codec", "limits", "cancellation", "version")
#: (module or package prefix under botmemory, rank); the longest match wins
_RANKS: tuple[tuple[str, float], ...] = (
    *((name, 1.0) for name in _BASICS),
    ("backends", 2.0),
    ("kvs", 3.0),
    ("memory", 3.1),
    ("store", 3.2),
    ("sync", 3.3),
    ("retention", 4.0),
    ("dumpfile", 4.0),
    ("runtime", 4.1),
    ("integrations", 4.2),
    ("testing", 4.2),
    ("http", 5.0),
    ("cli", 6.0),
    ("__main__", 9.0),
    ("demo", 9.0),
    ("starter", 9.0),
    ("", 9.0),  # botmemory/__init__.py
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _rank(module: str) -> float:
    rest = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    best = ""
    for prefix, _ in _RANKS:
        if (rest == prefix or rest.startswith(prefix + ".") or prefix == "") and len(prefix) >= len(best):
            best = prefix
    return dict(_RANKS)[best]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` refers to (the longest existing prefix), or None outside the package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges() -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported module, line)}."""
    modules = _modules()
    graph: dict[str, set[tuple[str, int]]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                # ``from pkg import sub`` imports the submodule ``pkg.sub``
                targets = [f"{stem}.{alias.name}" for alias in node.names] or [stem]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != module:
                    graph[module].add((resolved, node.lineno))
    return graph


def _cycles(graph: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph[v]:
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


def test_the_walker_sees_deferred_imports() -> None:
    graph = _edges()
    assert any(m == "botmemory.retention.janitor" for m, _ in graph["botmemory.runtime.engine"])
    assert any(m == "botmemory.retention.users" for m, _ in graph[PACKAGE])  # inside _attach_retention
    # TYPE_CHECKING-only imports are left out: retention/users.py names Store for the type checker only
    assert not any(m == "botmemory.store" for m, _ in graph["botmemory.retention.users"])


def test_no_import_cycles() -> None:
    graph = _edges()
    cycles = _cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        for module in component:
            lines += [f"  {module}:{line} -> {target}" for target, line in sorted(graph[module]) if target in members]
    assert not cycles, "import cycles:\n" + "\n".join(lines)


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"  {module}:{line} ({_rank(module):g}) -> {target} ({_rank(target):g})"
        for module, targets in sorted(_edges().items())
        for target, line in sorted(targets)
        if _rank(target) > _rank(module)
    ]
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)

"""The package layering in docs/ARCHITECTURE.md, enforced by walking imports with ast.

Every import counts, wherever it is: at module level, inside a function, under
``if TYPE_CHECKING:``. Importing ``a.b.c`` also imports the packages ``a.b`` and ``a`` (their
``__init__`` runs), except the importer's own packages, which are already being imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyzer", "sinks", "daemon")
FORBIDDEN = {
    "analyzer": {"daemon", "sinks", "pydantic_settings", "structlog"},
    "sinks": {"daemon"},
}
RENDER = "analyzer.render"
RENDER_MAY_IMPORT = {"analyzer.contract", "analyzer.severity"}
"""What the HTML renderer may import of the analyzer besides its own modules: the report's
contract, so a report renders the same whether it comes from a run or from a file."""


def _modules() -> dict[str, Path]:
    """Dotted name → file of every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(path: Path, module: str) -> Iterator[str]:
    """Every dotted name ``path`` imports (relative imports resolved), anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _project_module(name: str) -> str | None:
    """The project module ``name`` is, or is inside of (``a.b.Class`` → ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str) -> set[str]:
    """The project modules that importing ``module`` imports directly."""
    out = set()
    for name in _imported_names(MODULES[module], module):
        target = _project_module(name)
        if target is None:
            continue
        out.add(target)
        parent = target.rpartition(".")[0]
        while parent:
            if parent in MODULES and not (module == parent or module.startswith(f"{parent}.")):
                out.add(parent)
            parent = parent.rpartition(".")[0]
    out.discard(module)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component with more than one
    module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth first)."""
    start = min(component)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & component):
            if nxt == start:
                return [*path, start]
            if nxt not in path:
                paths.append([*path, nxt])
    return [start, start]


GRAPH = {module: _edges(module) for module in MODULES}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    """No module of a lower layer imports a higher one."""
    offenders = {
        f"{MODULES[module].relative_to(ROOT)} imports {name}"
        for module in MODULES if module.split(".")[0] == package
        for name in _imported_names(MODULES[module], module)
        if name.split(".")[0] in FORBIDDEN[package]
    }
    assert not offenders, sorted(offenders)


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a loop, at any import site."""
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_and_names_it() -> None:
    """The check above can fail: a function-level back edge is reported as a closed path."""
    graph = {"a.report": {"a.dataset"}, "a.dataset": {"a.errors", "a.report"},
             "a.errors": set()}
    assert _cycles(graph) == [["a.dataset", "a.report", "a.dataset"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_renderer_imports_only_the_contract() -> None:
    """The render package reads reports through the contract alone: it imports no other
    analyzer module (no profile, no statistics), nor sinks or daemon."""
    offenders = {
        f"{module} imports {target}"
        for module in MODULES if module == RENDER or module.startswith(f"{RENDER}.")
        for target in GRAPH[module]
        if target not in RENDER_MAY_IMPORT and not target.startswith(RENDER)
    }
    assert not offenders, sorted(offenders)
    assert GRAPH[f"{RENDER}.page"] & RENDER_MAY_IMPORT  # the walk sees its imports at all

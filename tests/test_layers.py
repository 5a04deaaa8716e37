"""The package's import graph: layered (pyproject's import-linter contract), no cycles,
and no import inside a function left over to dodge one."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "onefit"


def _graph() -> dict[str, set[str]]:
    """Module -> onefit modules it imports explicitly (TYPE_CHECKING imports left out)."""
    graph = grimp.build_graph("onefit", exclude_type_checking_imports=True)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycles() -> None:
    assert _cycles(_graph()) == []


def _function_level_imports(path: Path) -> list[str]:
    """``module:line`` of each onefit import inside a function of ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name == "onefit" or name.startswith("onefit.") for name in names):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_onefit_import_inside_a_function() -> None:
    # Optional third-party packages are imported where they are used; onefit's own
    # modules are always importable, so a local import of one only hides a cycle.
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _function_level_imports(path)]
    assert found == []


def test_layer_contract_holds() -> None:
    importlinter = pytest.importorskip("importlinter.cli")
    # The contract lives in pyproject.toml ([tool.importlinter]); 0 means every contract kept.
    root = PACKAGE.parents[1]
    assert importlinter.lint_imports(config_filename=str(root / "pyproject.toml")) == 0

"""The module graph has no cycle and no upward import (issue 10; docs/architecture.md §16).

Layers, lowest first: the shared base (top-level modules), `store/` and `cages/`, `core/` and
`harness/`, `dashboard/`, the entry points. Imports made at a module's top level count (a
function-local import still runs, but only when called); `if TYPE_CHECKING:` blocks do not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ENTRY = ("hyperhive.cli", "hyperhive.demo", "hyperhive.__main__", "hyperhive.offline_model")
LAYERS = {"store": 1, "cages": 1, "core": 2, "harness": 2, "dashboard": 3}


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in (SRC / "hyperhive").rglob("*.py") if "__pycache__" not in p.parts}


def layer(module: str) -> int:
    if any(module == e or module.startswith((e + ".", e + "_")) for e in ENTRY):
        return 4
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS and (len(parts) > 2 or module in MODULES):
        return LAYERS[parts[1]]
    return 0


def _imports(path: Path) -> set[str]:
    """Modules of this package imported at the top level of `path`."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in MODULES)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in MODULES:
                    found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                if isinstance(node, ast.Try):
                    visit(node.finalbody)
                    for handler in node.handlers:
                        visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found - {_name(path)}


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
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
                    out.append(sorted(component))
    return out


def test_no_two_modules_import_each_other() -> None:
    """No import cycle, of any length, among the package's modules."""
    assert len(GRAPH) > 50
    assert _cycles() == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    """A module imports only from its own layer or a lower one."""
    upward = sorted(
        f"{m} ({layer(m)}) -> {d} ({layer(d)})" for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m)
    )
    assert upward == []

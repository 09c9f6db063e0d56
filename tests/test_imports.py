"""The house rule on imports, checked on the source: they run one way
(cli -> site/api/auth -> transfer, db -> settings, states, errors), `transfer/` never
imports `db`, and no module imports itself back through others (type-only imports
count: a reader follows them too)."""

from __future__ import annotations

import ast
from pathlib import Path

import balsam_mp

ROOT = Path(balsam_mp.__file__).parent
LAYER = {"cli": 3, "site": 2, "api": 2, "auth": 2, "transfer": 1, "db": 1,
         "settings": 0, "states": 0, "errors": 0}


def module_name(path: Path) -> str:
    parts = ("balsam_mp", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the balsam_mp modules it imports, anywhere in its body."""
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("balsam_mp"):
                for alias in node.names:  # `from balsam_mp.api import inputs`: a module
                    sub = f"{node.module}.{alias.name}"
                    graph[name].add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name.startswith("balsam_mp")}
    return graph


def top(module: str) -> str:
    return (module.split(".") + [""])[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (last := stack.pop()) != node:
                group.append(last)
            if group:
                found.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_imports_run_one_way():
    upward = sorted((module, imported) for module, imports in import_graph().items()
                    for imported in imports
                    if top(module) in LAYER and top(imported) in LAYER
                    and top(module) != top(imported)
                    and LAYER[top(imported)] > LAYER[top(module)])
    assert upward == []


def test_transfer_never_imports_db():
    assert [(module, imported) for module, imports in import_graph().items()
            if top(module) == "transfer" for imported in imports if top(imported) == "db"] == []


def test_the_checks_see_a_cycle():
    """The cycle finder itself finds one (so an empty answer above means something)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

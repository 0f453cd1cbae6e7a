"""The house rules of src/bellman, checked on the source: no function over 100 lines, no import
cycle between bellman's modules (lazy imports inside functions count too), no two classes with
one name, and the lower floors never import the higher ones (DESIGN.md's picture)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / "bellman").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The bellman modules `name` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from bellman import run` imports the module bellman.run
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, tree) for name, tree in TREES.items()}


def test_no_function_is_longer_than_100_lines():
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 100
    ]
    assert not long, long


def _package_of(module: str) -> str:
    return module if (SRC / module.replace(".", "/") / "__init__.py").exists() else ""


def test_no_import_cycle():
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            # a package importing its own submodules to re-export them is not a cycle of design
            if target.startswith(module + ".") and _package_of(module):
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_no_two_classes_share_a_name():
    where = defaultdict(list)
    for name, tree in TREES.items():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    shared = {cls: modules for cls, modules in where.items() if len(modules) > 1}
    assert not shared, shared


#: DESIGN.md's floors, top to bottom: a module may import its own floor and the ones below.
#: `distributed/` (Ray) sits under the pillars, which call it: "the pillars -> distributed/".
FLOORS = [
    ("bellman.cli", "bellman.serve", "bellman.__main__"),
    ("bellman.api",),
    ("bellman.tabular", "bellman.algos", "bellman.zero", "bellman.lm"),
    ("bellman.distributed",),
]
PILLARS = FLOORS[2]


def _floor(module: str) -> int:
    if module == "bellman":  # the package's public API sits on the top floor, beside the CLI
        return 0
    for index, floor in enumerate(FLOORS):
        if any(module == top or module.startswith(top + ".") for top in floor):
            return index
    return len(FLOORS)  # the ground: run, loop, checkpoint, nets, games, search, envs, ...


def _pillar(module: str) -> str | None:
    return next((p for p in PILLARS if module == p or module.startswith(p + ".")), None)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_dependencies_point_down(module):
    upward = [t for t in GRAPH[module] if _floor(t) < _floor(module)]
    assert not upward, f"{module} imports a higher floor: {upward}"
    pillar = _pillar(module)
    if pillar is None:
        return
    across = [t for t in GRAPH[module] if _pillar(t) not in (None, pillar)]
    assert not across, f"{module} imports another pillar: {across}"

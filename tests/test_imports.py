"""Imports go one way: no module of relax_rl imports, directly or not, one that imports it back."""

import ast
from pathlib import Path

import relax_rl

PACKAGE = Path(relax_rl.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first; a module's own parent packages are
        # always imported before it, so an edge to them is no cycle.
        expanded = {".".join(t.split(".")[:i]) for t in targets for i in range(2, t.count(".") + 2)}
        graph[name] = {t for t in expanded if t in modules and t != name and not name.startswith(f"{t}.")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = _import_graph()
    assert "relax_rl.run.lifecycle" in graph and "relax_rl.cli.train" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_below_the_command_lines_imports_them():
    graph = _import_graph()
    upward = [
        f"{name} -> {target}"
        for name, targets in sorted(graph.items())
        if not name.startswith("relax_rl.cli")
        for target in sorted(targets)
        if target.startswith("relax_rl.cli")
    ]
    assert upward == []


def test_no_module_is_over_450_lines():
    # Past that, a module holds more than one concern (docs/design.md §6); split it along its seams.
    long = {
        p.relative_to(PACKAGE.parent): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450
    }
    assert long == {}

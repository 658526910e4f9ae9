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


def _code_lines(function: ast.FunctionDef, lines: list[str]) -> int:
    docstring = set()
    if ast.get_docstring(function) is not None:
        docstring = set(range(function.body[0].lineno, function.body[0].end_lineno + 1))
    code = [lines[i - 1].strip() for i in range(function.lineno, function.end_lineno + 1) if i not in docstring]
    return sum(1 for line in code if line and not line.startswith("#"))


def test_the_update_reads_in_one_screen():
    """RelaxA2C.train and the methods of its own it calls, without docstrings and comments, stay within 80 lines
    (CleanRL's standard): the losses, targets and logging live with the objects they concern."""
    path = PACKAGE / "agents" / "relax_a2c.py"
    lines = path.read_text().splitlines()
    (cls,) = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == "RelaxA2C"]
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    seen, todo = set(), ["train"]
    while todo:
        name = todo.pop()
        seen.add(name)
        called = {
            n.attr
            for n in ast.walk(methods[name])
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
        }
        todo += [m for m in called & set(methods) if m not in seen and m not in todo]
    assert {"train", "_fit_phi", "_fit_v_on_replay"} <= seen
    total = sum(_code_lines(methods[name], lines) for name in seen)
    assert total <= 80, f"the update is {total} lines over {sorted(seen)}"

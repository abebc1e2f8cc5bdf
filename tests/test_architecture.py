"""The import graph of src/caitool, read with `ast`: no loops (counting imports inside functions, which hide
loops at run time), and the lower layers never import the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "caitool"
LOWER_LAYERS = ("caitool.stages", "caitool.backends", "caitool.records", "caitool.errors", "caitool.runner")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """caitool modules imported anywhere in the file (module level or inside functions); `from pkg import
    name` counts as importing pkg.name when that is a module, else pkg. Imports only for type checking are
    not counted: they never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("caitool"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("caitool"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph = {module_name(path): imports_of(path, modules) for path in paths}
    # A package's __init__ re-exporting its modules is not a dependency of those modules on the package.
    for name, targets in graph.items():
        targets.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target.startswith(node + "."):
                continue  # a package importing its own submodules (stages/__init__ -> stages.sample)
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "caitool.evaluation.judges" in graph["caitool.evaluation.pairwise"]
    assert "caitool.runner" in graph["caitool.cli.common"]  # an import inside a function counts


def test_no_import_loop_at_module_or_function_level():
    assert find_cycle(import_graph()) is None, f"import loop: {' -> '.join(find_cycle(import_graph()) or [])}"


def test_the_cycle_finder_finds_a_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lower_layers_do_not_import_the_command_line():
    for name, targets in import_graph().items():
        if name.startswith(LOWER_LAYERS):
            upward = sorted(t for t in targets if t.startswith(("caitool.cli", "caitool.pipeline")))
            assert not upward, f"{name} imports {upward}"


def test_canaries_sit_below_training_and_evaluation_and_stats_math_at_the_bottom():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("caitool.canaries"):
            upward = sorted(
                t for t in targets if t.startswith(("caitool.training", "caitool.evaluation", "caitool.cli"))
            )
            assert not upward, f"{name} imports {upward}"
    assert graph["caitool.stats_math"] == set()
    # One home: no canary module outside the package.
    assert not [name for name in graph if "canar" in name and not name.startswith("caitool.canaries")]


def test_long_modules_say_why():
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > 300:
            docstring = ast.get_docstring(ast.parse("\n".join(lines))) or ""
            assert "long" in docstring.lower(), f"{path.name}: {len(lines)} lines; split it or say why"

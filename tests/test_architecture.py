"""The import graph of src/caitool, read with `ast`: no loops, and no import that climbs a layer (counting
imports inside functions, which hide both at run time); the layers are those of docs/architecture.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "caitool"
# docs/architecture.md's layers, lowest first: a module imports only from its own layer or below. An entry
# is a module or a package under caitool ("" is caitool/__init__.py, the Python API).
LAYERS = [
    (
        "errors",
        "defaults",
        "setting_sources",
        "progress",
        "shown",
        "transcripts",
        "stats_math",
        "option_fields",
    ),
    (
        *("records", "principles", "example_files", "constitution", "prompts"),
        *("models", "hub", "provenance", "diagnostics"),
    ),
    ("backends",),
    ("stages", "canaries"),
    (
        *(
            "runner",
            "pipeline",
            "evaluation",
            "training",
            "inspect",
            "inspect_render",
            "stats",
        ),
        "export",
        "hh_rlhf",
    ),
    ("cli", "__main__", ""),
]
# Imports known to climb, each to be removed with its fix (none now).
KNOWN_CLIMBS: set[tuple[str, str]] = set()
ERROR_NAMES = {"CaitoolError", "OptionError", "InputError"} | {
    name for name in re.findall(r"^(EXIT_\w+) =", (PACKAGE / "errors.py").read_text(), re.M)
}


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


LAYER = {entry: number for number, entries in enumerate(LAYERS, start=1) for entry in entries}


def layer_of(module: str) -> int | None:
    """The layer (1 = lowest) of a module: that of its top-level module or package under caitool."""
    return LAYER.get(module.removeprefix("caitool").removeprefix(".").split(".")[0])


def climbs(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a layer to a higher one, as 'importer (layer) -> imported (layer)'."""
    found = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer_of(name), layer_of(target)
            if low is not None and high is not None and high > low and (name, target) not in KNOWN_CLIMBS:
                found.append(f"{name} ({low}) -> {target} ({high})")
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in import_graph() if layer_of(name) is None)
    assert not unplaced, f"place {unplaced} in LAYERS here and in docs/architecture.md"


def test_no_import_climbs_a_layer():
    assert climbs(import_graph()) == []


def test_the_climb_finder_finds_an_import_from_below_and_allows_one_from_above():
    assert climbs({"caitool.records": {"caitool.cli.main"}}) == [
        "caitool.records (2) -> caitool.cli.main (6)"
    ]
    assert climbs({"caitool.stages.base": {"caitool.backends.base", "caitool.stages.compare"}}) == []
    assert climbs({"caitool.training.rl": {"caitool.training.io"}, "caitool": {"caitool.pipeline"}}) == []


def test_known_climbs_still_exist():
    # A fixed one is removed from KNOWN_CLIMBS, so that it cannot come back unnoticed.
    graph = import_graph()
    assert all(target in graph.get(name, set()) for name, target in KNOWN_CLIMBS), KNOWN_CLIMBS


def test_the_readme_names_every_layer_entry():
    readme = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    for entry in (entry for entries in LAYERS for entry in entries if entry):
        is_package = (PACKAGE / entry).is_dir()
        assert f"`{entry}/`" in section if is_package else f"`{entry}.py`" in section, entry


def test_error_classes_are_imported_from_errors_only():
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("caitool"):
                elsewhere = {alias.name for alias in node.names} & ERROR_NAMES
                assert node.module == "caitool.errors" or not elsewhere, (
                    f"{path}: {elsewhere} from {node.module}"
                )


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


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_no_module_is_over_the_limit():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def test_no_function_is_over_the_limit():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_interval_maths_is_imported_from_its_one_home():
    """wilson_interval and pearson live in stats_math; nothing takes them through another module."""
    pattern = re.compile(r"from caitool\.(?!stats_math\b)[\w.]+ import [^\n]*\b(wilson_interval|pearson)\b")
    found = [
        f"{path.relative_to(PACKAGE)}: {match.group(0)}"
        for path in PACKAGE.rglob("*.py")
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, found

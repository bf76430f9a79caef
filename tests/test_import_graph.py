"""The gateway's modules import each other without a cycle.

Imports only go downward (ARCHITECTURE.md). The walk reads every module under gateway/ with
`ast` and counts every import, including those under `if TYPE_CHECKING:` and inside functions:
a cycle that only the type checker sees still ties the modules into one unit that cannot be
read, tested or moved apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gateway"

# Edges still owed a fix, `(importer, imported)`: each closes a cycle. A new edge that closes a
# cycle fails the test; one fixed here must leave the list (the last test checks).
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset({})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The gateway modules `path` imports anywhere in its body (a package import counts as its
    `__init__`; `from package import module` counts as the module)."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            # `from package import module` is an import of the module; the package's
            # `__init__` runs first, as for any submodule, which is not an edge of its own.
            found.update(submodules if submodules else {target})
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted((PACKAGE_ROOT / PACKAGE).rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, known) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as the list of modules along it (first == last), or None."""
    done: set[str] = set()
    on_path: list[str] = []
    on_path_set: set[str] = set()

    def visit(module: str) -> list[str] | None:
        on_path.append(module)
        on_path_set.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path_set:
                return [*on_path[on_path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        on_path.pop()
        on_path_set.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def test_gateway_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    for importer, imported in KNOWN_CYCLE_EDGES:
        graph[importer].discard(imported)
    assert find_cycle(graph) is None


def test_the_protocol_modules_never_import_gateway_app() -> None:
    graph = import_graph()
    for module in ("gateway.smpp_server.server", "gateway.http.api", "gateway.services"):
        assert "gateway.app" not in graph[module], module


def test_the_walk_counts_imports_under_type_checking() -> None:
    # gateway.services imports gateway.config only under TYPE_CHECKING.
    assert "gateway.config" in import_graph()["gateway.services"]


def test_find_cycle_names_the_modules_along_it() -> None:
    graph = {"gateway.app": {"gateway.x"}, "gateway.x": {"gateway.y"}, "gateway.y": {"gateway.app"}}
    assert find_cycle(graph) == ["gateway.app", "gateway.x", "gateway.y", "gateway.app"]
    assert find_cycle({"gateway.app": {"gateway.x"}, "gateway.x": set()}) is None


def test_known_cycle_edges_are_still_present() -> None:
    # An edge fixed but left in the list would hide a new cycle through it: take it out.
    graph = import_graph()
    for importer, imported in KNOWN_CYCLE_EDGES:
        assert imported in graph[importer], (importer, imported)

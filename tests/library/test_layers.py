"""The package's layers: each private folder imports only the layers it builds on,
a provider package never imports another, and no modules import each other
in a circle (the layout docs/architecture.md describes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "stagefx"

BELOW: dict[str, set[str]] = {
    "_core": set(),
    "_env": {"_core"},
    "_codec": {"_core"},
    "_model": {"_core", "_env", "_codec"},
    "_runtime": {"_core", "_env", "_codec", "_model"},
}
PROVIDERS = ("openai", "anthropic", "gemini", "mcp", "dbos")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The stagefx modules `path` imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("stagefx"):
                found.add(node.module)  # and modules imported by name from a package:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("stagefx"))
    return found


MODULES = {_module(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("folder", sorted(BELOW))
def test_a_private_folder_imports_only_the_folders_below_it(folder: str) -> None:
    wrong = {
        (module, imported)
        for module, imports in MODULES.items()
        if _folder(module) == folder
        for imported in imports
        if _folder(imported) != folder and _folder(imported) not in BELOW[folder]
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_package_imports_no_other_provider(provider: str) -> None:
    wrong = {
        (module, imported)
        for module, imports in MODULES.items()
        if _folder(module) == provider
        for imported in imports
        if _folder(imported) in PROVIDERS and _folder(imported) != provider
    }
    assert not wrong, sorted(wrong)


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = {
        module: {imported for imported in imports if imported in MODULES and imported != module}
        for module, imports in MODULES.items()
    }
    # Package faces (`__init__`) re-export what lies below them: leave them out.
    faces = {module for module in MODULES if (PACKAGE.parent / module.replace(".", "/")).is_dir()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module] - faces):
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(set(MODULES) - faces):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_a_node_module_imports_no_other_node_module_nor_the_facade() -> None:
    nodes = "stagefx._runtime.nodes."
    above = ("stagefx._runtime.stage", "stagefx._runtime.batch", "stagefx._runtime.streaming")
    wrong = {
        (module, imported)
        for module, imports in MODULES.items()
        if module.startswith(nodes)
        for imported in imports
        if imported in MODULES and (imported.startswith(nodes) or imported in above)
    }
    assert not wrong, sorted(wrong)

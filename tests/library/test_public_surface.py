"""The public surface, httpx-style: a few public packages over private modules."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import types

import pytest

import stagefx

PUBLIC_PACKAGES = [
    "stagefx",
    "stagefx.openai",
    "stagefx.anthropic",
    "stagefx.gemini",
    "stagefx.mcp",
    "stagefx.testing",
]
PUBLIC_MODULES = {
    "stagefx",
    "stagefx.openai",
    "stagefx.anthropic",
    "stagefx.gemini",
    "stagefx.otel",
    "stagefx.testing",
    "stagefx.testing.laws",
    "stagefx.testing.strategies",
}
OPTIONAL_PUBLIC = {"stagefx.dbos", "stagefx.mcp"}  # the `dbos` and `mcp` extras' packages


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_public_name_reports_its_public_package(name: str) -> None:
    package = importlib.import_module(name)
    for public in package.__all__:
        value = getattr(package, public)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == name, f"{name}.{public} says {value.__module__}"


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    exposed = {
        attribute
        for attribute, value in vars(package).items()
        if not attribute.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exposed <= set(package.__all__), exposed - set(package.__all__)
    assert len(package.__all__) == len(set(package.__all__))


def test_every_implementation_module_is_private() -> None:
    found = {
        module.name
        for module in pkgutil.walk_packages(stagefx.__path__, "stagefx.")
        if not any(part.startswith("_") for part in module.name.split("."))
    }
    assert PUBLIC_MODULES <= found | {"stagefx"} <= PUBLIC_MODULES | OPTIONAL_PUBLIC


def test_a_failure_pickles_under_its_public_name() -> None:
    failure = stagefx.StageExecutionError("boom", state=stagefx.StageState(result="kept"))
    assert type(failure).__module__ == "stagefx"
    restored = pickle.loads(pickle.dumps(failure))
    assert type(restored) is stagefx.StageExecutionError
    assert restored.state == failure.state

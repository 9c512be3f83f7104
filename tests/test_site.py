"""The documentation site builds strictly, with every section and API page, and
every public name is documented."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "index.html": "Getting started",
    "guide/index.html": "The Stage guide",
    "core/index.html": "The functional core",
    "providers/index.html": "Providers",
    "observability/index.html": "Traces, usage and logs",
    "testing/index.html": "Testing your flows",
    "performance/index.html": "Performance",
    "reliability/index.html": "Reliability",
    "migration/index.html": "Coming from draive",
}
PUBLIC_MODULES = {
    "stagefx": "api/stagefx/index.html",
    "stagefx.openai": "api/openai/index.html",
    "stagefx.otel": "api/otel/index.html",
    "stagefx.testing": "api/testing/index.html",
    "stagefx.testing.strategies": "api/strategies/index.html",
    "stagefx.testing.laws": "api/laws/index.html",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "WARNING" not in built.stderr, built.stderr[-3000:]
    return target


@pytest.mark.parametrize(("page", "title"), SECTIONS.items())
def test_every_section_has_its_page(site: Path, page: str, title: str) -> None:
    html = (site / page).read_text()
    assert re.search(rf"<h1[^>]*>{re.escape(title)}", html), f"{page} has no <h1> {title!r}"


@pytest.mark.parametrize(("module", "page"), PUBLIC_MODULES.items())
def test_every_public_module_has_an_api_page_listing_its_names(
    site: Path, module: str, page: str
) -> None:
    html = (site / page).read_text()
    names = getattr(importlib.import_module(module), "__all__", [])
    assert names, f"{module} declares no public names"
    missing = [name for name in names if f'id="{module}.{name}"' not in html]
    assert missing == [], f"{page} does not document {missing}"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module: str) -> None:
    loaded = importlib.import_module(module)
    undocumented = []
    for name in loaded.__all__:
        value = getattr(loaded, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
            undocumented.append(name)
        if inspect.isclass(value) and value.__module__.startswith("stagefx"):
            for attribute, member in vars(value).items():
                if attribute.startswith("_") or not callable(member):
                    continue
                if not inspect.getdoc(member):
                    undocumented.append(f"{name}.{attribute}")
    assert undocumented == []

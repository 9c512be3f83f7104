"""The documentation site builds strictly, with every section and API page, and
every public name is documented: with annotated signatures, every field of the
data classes, and `ctx`'s methods. Mermaid diagrams draw with a copy of Mermaid
served by the site itself, never from a CDN."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import attrs
import pytest

from tests.helpers import ROOT

SECTIONS = {
    "index.html": "Getting started",
    "guide/index.html": "The Stage guide",
    "core/index.html": "The functional core",
    "architecture/index.html": "How the pieces fit",
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

MERMAID_SCRIPT = "javascripts/vendor/mermaid.min.js"
"""Where the site serves Mermaid from (docs/hooks/mermaid.py puts it there)."""


def _text(html: str) -> str:
    """The text of some HTML, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


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


@pytest.mark.parametrize(("module", "page"), PUBLIC_MODULES.items())
def test_the_api_pages_show_every_field_of_the_public_data_classes(
    site: Path, module: str, page: str
) -> None:
    html = (site / page).read_text()
    loaded = importlib.import_module(module)
    missing = []
    for name in loaded.__all__:
        value = getattr(loaded, name)
        if not inspect.isclass(value):
            continue
        if attrs.has(value):
            fields = [field.name for field in attrs.fields(value)]
        elif issubclass(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
            fields = list(value._fields)
        else:
            continue
        missing += [
            f"{name}.{field}"
            for field in fields
            if not field.startswith("_") and f'id="{module}.{name}.{field}"' not in html
        ]
    assert missing == [], f"{page} does not show the fields {missing}"


def test_the_api_signatures_show_their_annotations_and_defaults(site: Path) -> None:
    text = _text((site / "api/stagefx/index.html").read_text())
    for shown in (
        "tool_rounds: int = DEFAULT_TOOL_ROUNDS",  # Stage.completion
        "-> Result[StageState, StageException]",  # Stage.attempt
        "env: Env | None = None",  # Stage.execute
        "context: ModelContext = ()",  # StageState(...), made by the attrs extension
        "clock: Clock = SystemClock()",  # Env(...)
        "retry_after: float | None = None",  # ModelFailure(...)
    ):
        assert shown in text, f"the stagefx API page does not show {shown!r}"


def test_ctx_is_documented_with_its_scope_and_log_functions(site: Path) -> None:
    html = (site / "api/stagefx/index.html").read_text()
    headings = {_text(found) for found in re.findall(r"<h\d[^>]*>(.*?)</h\d>", html, re.S)}
    expected = {"ctx", "ctx.scope", "ctx.current"}
    expected |= {f"ctx.log_{level}" for level in ("debug", "info", "warning", "error")}
    assert expected <= headings, f"no heading for {sorted(expected - headings)}"


def test_mermaid_is_served_by_the_site_not_a_cdn(site: Path) -> None:
    script = site / MERMAID_SCRIPT
    assert script.is_file(), f"the site has no {MERMAID_SCRIPT}"
    assert script.stat().st_size > 1_000_000, "not the whole Mermaid bundle"
    assert 'globalThis["mermaid"]' in script.read_text(), "the script defines no `mermaid`"
    drawn = []
    for page in sorted(site.rglob("*.html")):
        html = page.read_text()
        where = page.relative_to(site)
        assert not re.search(r"(unpkg\.com|jsdelivr\.net|cdnjs)[^\"']*mermaid", html), where
        tags = re.findall(r"<script\b[^>]*>", html)
        mermaid_tags = [tag for tag in tags if "mermaid" in tag]
        for tag in mermaid_tags:
            source = re.search(r'\bsrc="([^"]+)"', tag)
            assert source is not None, f"{where}: {tag}"
            assert not re.match(r"^([a-z]+:)?//", source.group(1)), f"{where} loads {tag}"
            # Defined before Material looks for it (at DOMContentLoaded): not async.
            assert " async" not in tag, f"{where}: {tag}"
            path = source.group(1).split("?")[0]
            base = site if path.startswith("/") else page.parent  # 404.html: site-absolute
            served = (base / path.lstrip("/")).resolve()
            assert served == script.resolve(), f"{where} loads {source.group(1)}"
        if 'class="mermaid"' in html:
            assert mermaid_tags, f"{where} has a diagram but loads no Mermaid"
            drawn.append(str(where))
    assert {"pipeline-diagram/index.html", "architecture/index.html"} <= set(drawn)

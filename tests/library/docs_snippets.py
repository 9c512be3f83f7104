"""Code blocks of the README and docs/, as the docs tests run them."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import attrs

from tests.helpers import ROOT

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=indent)```", re.S | re.M
)
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@attrs.frozen
class Snippet:
    page: Path
    line: int
    code: str
    title: str | None

    @property
    def is_test_module(self) -> bool:
        return self.title is not None and self.title.startswith("test_")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match.group("info"))
        line = text.count("\n", 0, match.start()) + 2
        code = textwrap.dedent(match.group("code"))
        found.append(Snippet(page, line, code, title and title.group("title")))
    return found


def as_checked_module(page_snippets: list[Snippet]) -> str:
    """A page's plain snippets as one module a type checker accepts: top-level
    code (and its `await`s) goes inside an async function."""
    body = "\n".join(snippet.code for snippet in page_snippets if not snippet.is_test_module)
    indented = "\n".join(f"    {line}" if line else "" for line in body.splitlines())
    return f"async def _page() -> None:\n{indented or '    pass'}\n"

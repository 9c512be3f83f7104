"""Code snippets from the Stage guide: found in its text and ported to stagefx imports."""

from __future__ import annotations

import re
from pathlib import Path

_CODE_LINE = re.compile(
    r"^(\s*$|\s+\S|from |import |@|async |def |class |#|await |[)\]}]|[A-Za-z_][\w.]*\s*(=|\())"
)
_PORTS = (
    ("from draive.stages.types import", "from stagefx import"),
    ("from draive.openai import", "from stagefx.openai import"),
    ("from draive import", "from stagefx import"),
)


def snippets(guide: Path) -> list[str]:
    """Each code block of the guide: from a `from draive` line to the first prose line."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in guide.read_text().splitlines():
        if current is None:
            if not line.startswith("from draive"):
                continue
            current = []
        if _CODE_LINE.match(line):
            current.append(line)
        else:
            blocks.append(current)
            current = None
    if current:
        blocks.append(current)
    return [_port("\n".join(block).strip() + "\n") for block in blocks]


def _port(code: str) -> str:
    for old, new in _PORTS:
        code = code.replace(old, new)
    return code

"""Every code block of the README and docs/ runs, and passes strict pyright."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from stagefx.testing import FakeOpenAIServer
from tests.helpers import ROOT
from tests.library.docs_snippets import Snippet, as_checked_module, pages, snippets

EXECUTED: list[Snippet] = []
"""Snippets run in this session (the terminal summary reports the count)."""

PAGES = [page for page in pages() if snippets(page)]


@pytest.mark.anyio
@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
async def test_the_code_of_each_page_runs(
    page: Path,
    fake_openai: FakeOpenAIServer,  # the stagefx pytest plugin's fixture
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType(f"docs_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    namespace = module.__dict__
    for snippet in snippets(page):
        where = f"{page.relative_to(ROOT)}:{snippet.line}"
        if snippet.is_test_module:
            assert snippet.title is not None
            pytester.makepyfile(**{snippet.title.removesuffix(".py"): snippet.code})
            outcome = pytester.runpytest_subprocess("-p", "anyio", "-q")
            assert outcome.ret == 0, f"{where}\n" + "\n".join(outcome.outlines[-30:])
        else:
            code = compile(snippet.code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            pending = eval(code, namespace)  # our own documentation's code
            if pending is not None:
                await pending
        EXECUTED.append(snippet)


def test_the_code_of_every_page_passes_strict_pyright(tmp_path: Path) -> None:
    for page in PAGES:
        page_snippets = snippets(page)
        (tmp_path / f"page_{page.stem}.py").write_text(as_checked_module(page_snippets))
        for snippet in page_snippets:
            if snippet.is_test_module and snippet.title is not None:
                (tmp_path / snippet.title).write_text(snippet.code)
    # Strict, except for names a page defines only to show them.
    (tmp_path / "pyrightconfig.json").write_text(
        json.dumps(
            {
                "typeCheckingMode": "strict",
                "venvPath": str(ROOT),
                "venv": ".venv",
                "extraPaths": [str(ROOT)],  # pages may import the repository's examples
                "reportUnusedFunction": False,
                "reportUnusedVariable": False,
                "reportUnusedImport": False,
            }
        )
    )
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "pyright"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout[-4000:]

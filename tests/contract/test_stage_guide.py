"""Every snippet of the Stage guide (../shared/spec/stage-guide.txt) type-checks
under `mypy --strict` and runs with `from stagefx import ...`."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import mypy.api
import pytest
from returns.result import Success

from stagefx import Stage, StageState, ctx
from stagefx.testing import FakeOpenAIServer, FunctionModel, demo_answer
from tests.contract.shared import shared_file
from tests.contract.snippets import snippets

pytestmark = pytest.mark.anyio

DOCUMENT = (
    "stagefx composes typed stages into pipelines. Each stage is a pure value that "
    "maps a state to an effect. Combinators such as sequence, loop and concurrent "
    "obey laws that hypothesis checks. Providers arrive through a reader environment."
)


@pytest.fixture(scope="module")
def guide() -> list[str]:
    return snippets(shared_file("spec/stage-guide.txt"))


def test_the_guide_has_every_section_we_expect(guide: list[str]) -> None:
    assert len(guide) == 12
    assert "process_document" in guide[-1]


def test_every_snippet_passes_mypy_strict(guide: list[str], tmp_path: Path) -> None:
    for index, code in enumerate(guide):
        (tmp_path / f"snippet_{index:02d}.py").write_text(code)
    report, errors, status = mypy.api.run(
        [
            "--strict",
            "--disable-error-code=top-level-await",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(tmp_path),
        ]
    )
    assert status == 0, report + errors


@pytest.mark.parametrize("index", range(12))
async def test_every_snippet_runs(
    guide: list[str], index: int, fake_openai: FakeOpenAIServer
) -> None:
    code = compile(guide[index], f"snippet_{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": f"snippet_{index}"}
    model = FunctionModel(demo_answer)
    async with ctx.scope("guide", model):
        pending = eval(code, namespace)  # our own test input: the guide's snippets
        if pending is not None:
            await pending
        stages = {name: value for name, value in namespace.items() if isinstance(value, Stage)}
        for name, value in stages.items():
            outcome = await value.attempt(StageState(result=DOCUMENT))
            assert isinstance(outcome, Success), f"{name}: {outcome}"
    process = namespace.get("process_document")
    if callable(process):
        summary = await process(DOCUMENT)
        assert summary.startswith("Summary: stagefx composes typed stages")
        assert fake_openai.requests, "the end-to-end snippet did not reach the OpenAI server"
    else:
        assert stages or index == 0, "the snippet defined nothing to run"
    assert os.environ["OPENAI_BASE_URL"] == fake_openai.base_url

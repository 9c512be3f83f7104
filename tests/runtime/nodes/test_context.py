"""Context nodes: strip tool turns, volatile tool context, trim the context."""

from __future__ import annotations

import pytest

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    MultimodalContent,
    Stage,
    StageState,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


def _tool_turns() -> tuple[ModelInput | ModelOutput, ...]:
    request = ModelToolRequest("call_1", "lookup", {"q": "x"})
    return (
        ModelInput.of("question"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(
            tool_responses=(ModelToolResponse("call_1", "lookup", MultimodalContent.of("42")),)
        ),
        ModelOutput.of("it is 42"),
    )


STRIPPED = (ModelInput.of("question"), ModelOutput(), ModelInput(), ModelOutput.of("it is 42"))
"""`_tool_turns()` without tool traffic: emptied turns stay (draive keeps the length)."""


async def test_strip_context_tools_empties_tool_turns_and_keeps_the_length() -> None:
    state = await Stage.strip_context_tools().execute(StageState(context=_tool_turns()), env=ENV)
    assert state.context == STRIPPED


async def test_volatile_tools_context_empties_only_the_tool_turns_it_added() -> None:
    earlier = _tool_turns()
    adds_tools = Stage.transform_context(lambda context: (*context, *_tool_turns()))
    state = await adds_tools.with_volatile_tools_context().execute(
        StageState(context=earlier), env=ENV
    )
    assert state.context == (*earlier, *STRIPPED)


async def test_trim_context_keeps_the_first_turns_a_slice_or_none() -> None:
    context = (ModelInput.of("old"), ModelOutput.of("old answer"), *_tool_turns())

    async def trimmed(limit: int | slice | None) -> tuple[ModelInput | ModelOutput, ...]:
        state = await Stage.trim_context(limit=limit).execute(StageState(context=context), env=ENV)
        return state.context

    assert await trimmed(10) == context
    assert await trimmed(2) == context[:2]  # draive: the first n
    assert await trimmed(0) == ()
    assert await trimmed(slice(-4, None)) == _tool_turns()
    assert await trimmed(slice(1, 3)) == context[1:3]
    assert await trimmed(None) == ()  # draive: None clears the context
    assert Stage.trim_context().describe().details == {"limit": "none"}
    assert Stage.trim_context(limit=slice(-2, None)).describe().details == {"limit": "[-2::]"}

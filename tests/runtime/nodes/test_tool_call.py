"""`tool_call`: one tool called directly, the exchange recorded in the context."""

from __future__ import annotations

import pytest

from stagefx import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    MultimodalContent,
    Stage,
    StageState,
    ToolError,
    tool,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@tool
async def weather(location: str) -> str:
    """The weather somewhere."""
    return f"sunny in {location}"


@tool(stop_on_error=True)
async def strict(location: str) -> str:
    """Fails, and stops the pipeline."""
    raise RuntimeError("no data")


async def test_tool_call_records_the_exchange_and_leaves_the_result() -> None:
    start = StageState(context=(ModelInput.of("hi"),), result="r")
    state = await Stage.tool_call(weather, location="Oslo").execute(start)
    request = ModelToolRequest("weather-1", "weather", {"location": "Oslo"})
    response = ModelToolResponse("weather-1", "weather", MultimodalContent.of("sunny in Oslo"))
    assert state.context == (
        ModelInput.of("hi"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(tool_responses=(response,)),
    )
    assert state.result.as_string() == "r"
    assert Stage.tool_call(weather, location="Oslo").meta.values == {"tool_call": "weather"}


async def test_tool_call_errors_are_responses_unless_the_tool_stops() -> None:
    bad = await Stage.tool_call(weather, place="Oslo").execute()  # type: ignore[call-overload]  # the mistake under test
    turn = bad.context[-1]
    assert isinstance(turn, ModelInput)
    assert turn.tool_responses[0].error
    stopped = (await Stage.tool_call(strict, location="x").attempt()).failure()
    assert isinstance(stopped, ToolError)
    assert isinstance(stopped.__cause__, RuntimeError)
    with pytest.raises(TypeError, match="keyword"):
        Stage.tool_call(weather, "Oslo")
    with pytest.raises(TypeError, match="@tool"):
        Stage.tool_call(len)  # type: ignore[call-overload]  # the mistake under test

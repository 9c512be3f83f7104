"""@tool and the tool-calling loop."""

from __future__ import annotations

import anyio
import pytest

from stagefx import (
    Env,
    ModelOutput,
    Stage,
    ToolError,
    ToolRoundsExceededError,
    tool,
)
from stagefx._core.request import ModelRequest
from stagefx.testing import FunctionModel, ScriptedModel
from tests.helpers import asks, tool_responses

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@tool
async def calculate(a: int, b: int) -> int:
    """Add two numbers together."""
    return a + b


@tool
def shout(text: str, times: int = 1) -> str:
    """Upper-case text."""
    return text.upper() * times


async def test_tool_schema_name_and_description_come_from_the_function() -> None:
    assert calculate.name == "calculate"
    assert calculate.description == "Add two numbers together."
    assert calculate.spec.parameters["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert shout.spec.parameters["required"] == ["text"]
    assert await calculate(2, 3) == 5
    assert await shout("hi", times=2) == "HIHI"


async def test_the_model_calls_one_tool_and_sees_its_answer() -> None:
    model = ScriptedModel(asks(("calculate", {"a": 15, "b": 27})), "15 + 27 = 42")
    state = await Stage.completion("What is 15 + 27?", tools=[calculate]).execute(env=Env.of(model))
    assert state.result.as_string() == "15 + 27 = 42"
    (answer,) = tool_responses(model, 1)
    assert (answer.tool, answer.content.as_string(), answer.error) == ("calculate", "42", False)
    assert [tool.name for tool in model.requests[0].tools] == ["calculate"]
    assert len(state.context) == 4  # input, tool request, tool tool_responses, final output


async def test_several_tools_asked_at_once_run_concurrently_in_request_order() -> None:
    first_started, second_started = anyio.Event(), anyio.Event()

    @tool
    async def first() -> str:
        first_started.set()
        await second_started.wait()  # deadlocks unless both run at once
        return "one"

    @tool
    async def second() -> str:
        second_started.set()
        await first_started.wait()
        return "two"

    model = ScriptedModel(asks(("first", {}), ("second", {})), "both done")
    with anyio.fail_after(5):
        await Stage.completion("go", tools=[first, second]).execute(env=Env.of(model))
    assert [answer.content.as_string() for answer in tool_responses(model, 1)] == ["one", "two"]


async def test_tool_errors_unknown_tools_and_bad_arguments_are_shown_to_the_model() -> None:
    @tool
    async def explode(text: str) -> str:
        raise ValueError("cannot handle " + text)

    model = ScriptedModel(
        asks(
            ("explode", {"text": "this"}),
            ("delete_everything", {}),
            ("calculate", {"a": "not a number", "b": 1}),
            ("calculate", {"a": 1, "b": 2, "c": 3}),
        ),
        "recovered",
    )
    state = await Stage.completion("go", tools=[explode, calculate]).execute(env=Env.of(model))
    assert state.result.as_string() == "recovered"
    answers = tool_responses(model, 1)
    assert all(answer.error for answer in answers)
    texts = [answer.content.as_string() for answer in answers]
    assert texts[0] == "explode failed: ValueError: cannot handle this"
    assert texts[1] == "unknown tool 'delete_everything'; available tools: calculate, explode"
    assert texts[2].startswith(
        "invalid arguments for calculate: a: Input should be a valid integer"
    )
    assert "c: Extra inputs are not permitted" in texts[3]


async def test_a_tool_not_given_to_the_stage_never_runs() -> None:
    ran: list[str] = []

    @tool
    async def secret() -> str:
        ran.append("secret")
        return "leaked"

    model = ScriptedModel(asks(("secret", {})), "ok")
    await Stage.completion("go", tools=[calculate]).execute(env=Env.of(model))
    assert ran == []
    assert tool_responses(model, 1)[0].error


async def test_a_stop_on_error_tool_stops_the_pipeline_with_a_tool_error() -> None:
    @tool(stop_on_error=True)
    async def critical(value: int) -> int:
        raise PermissionError("forbidden")

    model = ScriptedModel(asks(("critical", {"value": 1})), "never")
    outcome = await Stage.completion("go", tools=[critical]).attempt(env=Env.of(model))
    error = outcome.failure()
    assert isinstance(error, ToolError)
    assert isinstance(error.__cause__, PermissionError)
    assert model.remaining == 1


async def test_a_model_that_keeps_asking_for_tools_hits_the_round_limit() -> None:
    def always_asks(request: ModelRequest) -> ModelOutput:
        return asks(("calculate", {"a": 1, "b": 1}))

    model = FunctionModel(always_asks)
    outcome = await Stage.completion("loop", tools=[calculate], tool_rounds=3).attempt(
        env=Env.of(model)
    )
    assert isinstance(outcome.failure(), ToolRoundsExceededError)
    assert len(model.requests) == 4


class Opaque:
    """A type pydantic cannot describe."""


def test_tools_with_undescribable_parameters_are_refused_at_decoration() -> None:
    class Local:
        pass

    def takes_local(value: Local) -> str:
        return "x"

    def takes_opaque(value: Opaque) -> str:
        return "x"

    def untyped(value):  # type: ignore[no-untyped-def]  # the mistake under test
        return value

    def variadic(*values: int) -> int:
        return 0

    with pytest.raises(TypeError, match="no JSON Schema"):
        tool(takes_opaque)
    with pytest.raises(TypeError, match="define the types it uses at module level"):
        tool(takes_local)
    with pytest.raises(TypeError, match="needs a type annotation"):
        tool(untyped)
    with pytest.raises(TypeError, match=r"\*args"):
        tool(variadic)
    with pytest.raises(ValueError, match="two tools are named 'calculate'"):
        Stage.completion("x", tools=[calculate, calculate])

"""Tools that take a `ToolContext`: the Env and state of the stage that called them."""

from __future__ import annotations

import pytest

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    Stage,
    StageState,
    Tool,
    ToolContext,
    ctx,
    tool,
)
from stagefx._core.schema import SchemaError
from stagefx._model.boundary import CallLayer, ToolPath
from stagefx.testing import ScriptedModel
from tests.helpers import asks, tool_responses

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name


@tool
async def greet(context: ToolContext, greeting: str, times: int = 1) -> str:
    """Greet the current tenant."""
    tenant = context.env.get(Tenant)
    return f"{greeting} {tenant.name if tenant else 'nobody'}" * times


@tool
def plain(text: str) -> str:
    """A tool without a context."""
    current = ctx.current()
    return f"{text} in {current.name if current else 'no env'}"


async def test_the_context_parameter_is_not_in_the_schema_the_model_sees() -> None:
    assert greet.takes_context
    assert not plain.takes_context
    properties = greet.spec.parameters["properties"]
    assert isinstance(properties, dict)
    assert set(properties) == {"greeting", "times"}
    assert greet.spec.parameters["required"] == ["greeting"]
    assert "ToolContext" not in repr(greet.spec.parameters)


async def test_a_tool_gets_the_env_of_the_stage_that_called_it() -> None:
    model = ScriptedModel(asks(("greet", {"greeting": "hi", "times": 2})), "done")
    state = await Stage.completion("go", tools=[greet]).execute(env=Env.of(model, Tenant("acme")))
    assert state.result.as_string() == "done"
    (answer,) = tool_responses(model, 1)
    assert (answer.content.as_string(), answer.error) == ("hi acmehi acme", False)


async def test_with_ctx_values_reach_the_tool() -> None:
    model = ScriptedModel(asks(("greet", {"greeting": "hello"})), "done")
    stage = Stage.completion("go", tools=[greet]).with_ctx(Tenant("globex"))
    await stage.execute(env=Env.of(model))
    assert tool_responses(model, 1)[0].content.as_string() == "hello globex"


async def test_the_state_given_holds_the_conversation_up_to_the_request() -> None:
    seen: list[StageState] = []

    @tool
    def look(context: ToolContext) -> str:
        seen.append(context.state)
        return "looked"

    model = ScriptedModel(asks(("look", {})), "done")
    start = StageState.empty.updated(Tenant("initech"))
    await Stage.completion("what is here?", tools=[look]).execute(start, env=Env.of(model))
    (state,) = seen
    assert state.context[0] == ModelInput.of("what is here?")
    assert isinstance(state.context[-1], ModelOutput)
    assert state.context[-1].tool_requests
    tenant = state.get(Tenant)
    assert tenant is not None
    assert tenant.name == "initech"


async def test_ctx_current_gives_the_explicit_env_inside_a_tool_only() -> None:
    model = ScriptedModel(asks(("plain", {"text": "ran"})), "done")
    assert ctx.current() is None
    await Stage.completion("go", tools=[plain]).execute(env=Env.of(model, name="explicit"))
    assert tool_responses(model, 1)[0].content.as_string() == "ran in explicit"
    assert ctx.current() is None


async def test_tool_call_stages_give_the_context_too() -> None:
    state = await Stage.tool_call(greet, greeting="hey").execute(env=Env.of(Tenant("umbrella")))
    last = state.context[-1]
    assert isinstance(last, ModelInput)
    assert last.tool_responses[0].content.as_string() == "hey umbrella"


async def test_a_tool_layer_calling_tool_call_passes_the_context_on() -> None:
    layered: list[str] = []

    class Layer(CallLayer):
        async def tool_call(
            self,
            tool: Tool[..., object],
            request: ModelToolRequest,
            context: ToolContext,
            inner: ToolPath,
        ) -> object:
            layered.append(tool.name)
            return await tool.call(request.arguments)

    model = ScriptedModel(asks(("greet", {"greeting": "yo"}), ("plain", {"text": "x"})), "done")
    env = Env.of(model, Layer(), Tenant("hooli"), name="layered")
    await Stage.completion("go", tools=[greet, plain]).execute(env=env)
    assert sorted(layered) == ["greet", "plain"]
    texts = [answer.content.as_string() for answer in tool_responses(model, 1)]
    assert texts == ["yo hooli", "x in layered"]


async def test_a_context_tool_called_outside_a_stage_needs_its_context() -> None:
    with pytest.raises(TypeError, match="needs a ToolContext"):
        await greet.call({"greeting": "hi"})
    context = ToolContext(Env.of(Tenant("direct")), StageState.empty)
    assert await greet.call({"greeting": "hi"}, context) == "hi direct"
    assert await greet(context, "hi") == "hi direct"


async def test_model_arguments_cannot_fill_the_context_parameter() -> None:
    model = ScriptedModel(asks(("greet", {"greeting": "hi", "context": {"env": 1}})), "done")
    await Stage.completion("go", tools=[greet]).execute(env=Env.of(model))
    (answer,) = tool_responses(model, 1)
    assert answer.error
    assert "context: Extra inputs are not permitted" in answer.content.as_string()


async def test_a_context_parameter_that_is_not_first_is_refused() -> None:
    async def late(text: str, context: ToolContext) -> str:
        return text

    with pytest.raises(SchemaError, match="must be the first one"):
        tool(late)


async def test_tool_context_is_frozen() -> None:
    context = ToolContext(Env.of(), StageState.empty)
    with pytest.raises(AttributeError):
        context.env = Env.of()  # type: ignore[misc]

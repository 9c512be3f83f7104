"""Output retries: output that fails validation is sent back to the model with
what is wrong, and it is asked again."""

from __future__ import annotations

import dataclasses

import pytest

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    MultimodalContent,
    OutputValidationError,
    RecordingTracer,
    Stage,
    StageState,
    TokenUsage,
    UsageTotals,
    tool,
)
from stagefx.testing import ScriptedModel

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@dataclasses.dataclass
class City:
    name: str
    population: int


def said(text: str, tokens: int = 10) -> ModelOutput:
    return ModelOutput(MultimodalContent.of(text), usage=TokenUsage("m", tokens, 1))


VALID = '{"name": "Oslo", "population": 700000}'
INVALID = '{"name": "Oslo", "population": "many"}'


def totals(*calls: int) -> UsageTotals:
    total = UsageTotals()
    for tokens in calls:
        total = total.plus(TokenUsage("m", tokens, 1))
    return total


async def test_the_validation_error_is_sent_back_and_the_model_asked_again() -> None:
    model = ScriptedModel(said(INVALID, 10), said(VALID, 20))
    stage = Stage.completion("Describe Oslo.", output=City, output_retries=1)
    state = await stage.execute(env=Env.of(model))
    assert state.result.artifact(City) == City("Oslo", 700000)
    assert len(model.requests) == 2
    retried = model.requests[1].context
    assert retried[0] == ModelInput.of("Describe Oslo.")
    assert retried[1] == said(INVALID, 10)  # the refused output stays in the conversation
    told = retried[2]
    assert isinstance(told, ModelInput)
    assert "population: Input should be a valid integer" in told.content.as_string()
    assert "not valid City" in told.content.as_string()
    assert len(state.context) == 4  # input, refused output, the errors, the valid output
    assert state.get(UsageTotals) == totals(10, 20)


async def test_without_output_retries_the_stage_fails_at_once() -> None:
    model = ScriptedModel(said(INVALID), said(VALID))
    failed = (await Stage.completion("go", output=City).attempt(env=Env.of(model))).failure()
    assert isinstance(failed, OutputValidationError)
    assert failed.raw == INVALID
    assert len(model.requests) == 1


async def test_after_n_failed_retries_the_stage_fails_with_every_call_counted() -> None:
    model = ScriptedModel(said(INVALID, 1), said("not json", 2), said(INVALID, 3), said(VALID))
    stage = Stage.completion("go", output=City, output_retries=2)
    failed = (await stage.attempt(env=Env.of(model))).failure()
    assert isinstance(failed, OutputValidationError)
    assert failed.raw == INVALID
    assert len(model.requests) == 3
    assert failed.state.get(UsageTotals) == totals(1, 2, 3)


async def test_each_retry_is_a_traced_model_call() -> None:
    tracer = RecordingTracer()
    model = ScriptedModel(said(INVALID, 1), said(INVALID, 2), said(VALID, 3))
    stage = Stage.completion("go", output=City, output_retries=5)
    await stage.execute(env=Env.of(model, tracer))
    calls = [span for span in tracer.spans if span.name == "generate"]
    assert [span.attributes.get("output_retry") for span in calls] == [None, 1, 2]
    assert [span.attributes["input_tokens"] for span in calls] == [1, 2, 3]
    assert tracer.usage() == totals(1, 2, 3)


async def test_tools_may_run_before_and_after_a_retry() -> None:
    @tool
    def population(city: str) -> int:
        """How many people live in a city."""
        return 700000

    asks = ModelOutput(tool_requests=(ModelToolRequest("c1", "population", {"city": "Oslo"}),))
    model = ScriptedModel(asks, said(INVALID), asks, said(VALID))
    stage = Stage.completion("go", tools=[population], output=City, output_retries=1, tool_rounds=1)
    state = await stage.execute(env=Env.of(model))
    assert state.result.artifact(City) == City("Oslo", 700000)
    assert len(model.requests) == 4


async def test_every_completion_constructor_takes_output_retries() -> None:
    model = ScriptedModel(said(INVALID), said(VALID), said(INVALID), said(VALID))
    env = Env.of(model)
    start = StageState.of(result="Describe Oslo.")
    stages = [
        Stage.result_completion(output=City, output_retries=1),
        Stage.prompting_completion(lambda: "Describe Oslo.", output=City, output_retries=1),
    ]
    for stage in stages:
        state = await stage.execute(start, env=env)
        assert state.result.artifact(City) == City("Oslo", 700000)
    looped = Stage.loopback_completion(output=City, output_retries=3)
    assert looped.describe().details["output_retries"] == 3


async def test_output_retries_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="output_retries needs an int >= 0"):
        Stage.completion("go", output=City, output_retries=-1)
    with pytest.raises(ValueError, match="output_retries needs an int >= 0"):
        Stage.completion("go", output=City, output_retries=1.5)  # type: ignore[arg-type]
    assert "output_retries" not in Stage.completion("go", output=City).describe().details
    assert Stage.completion("go", output=City, output_retries=2).describe().details == {
        "output": "City",
        "output_retries": 2,
    }

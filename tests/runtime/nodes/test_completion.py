"""The completion family against deterministic test models."""

from __future__ import annotations

import pytest
from returns.result import Failure

from stagefx import (
    Env,
    MissingEnvironmentError,
    ModelAuthenticationError,
    ModelContextTooLongError,
    ModelFailure,
    ModelInput,
    ModelInvalidRequestError,
    ModelOutput,
    ModelRateLimitError,
    ModelRefusalError,
    ModelUnavailableError,
    Stage,
    StageExecutionError,
    StageState,
    ctx,
)
from stagefx._core.request import FailureKind, ModelRequest
from stagefx.testing import FunctionModel, ScriptedModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def test_completion_adds_input_and_output_and_passes_instructions_and_extra() -> None:
    model = ScriptedModel("Quantum computers use qubits.")
    async with ctx.scope("test", model):
        state = await Stage.completion(
            "Explain quantum computing",
            instructions="Keep the answer concise and friendly.",
            temperature=0.2,
        ).execute()
    assert state.result.as_string() == "Quantum computers use qubits."
    assert state.context == (
        ModelInput.of("Explain quantum computing"),
        ModelOutput.of("Quantum computers use qubits."),
    )
    (request,) = model.requests
    assert request.instructions == "Keep the answer concise and friendly."
    assert request.extra == {"temperature": 0.2}
    assert request.context == (ModelInput.of("Explain quantum computing"),)


async def test_a_sequence_of_completions_sees_the_growing_context() -> None:
    model = ScriptedModel("patterns", "summary", "- bullet")
    pipeline = Stage.sequence(
        Stage.completion("dataset", instructions="Identify patterns."),
        Stage.completion("Summarize."),
        Stage.completion("Format as bullets."),
    )
    state = await pipeline.execute(env=Env.of(model))
    assert state.result.as_string() == "- bullet"
    assert [len(request.context) for request in model.requests] == [1, 3, 5]


async def test_prompting_completion_fetches_its_input_at_run_time() -> None:
    asked: list[str] = []

    async def get_user_query() -> str:
        asked.append("asked")
        return "What's the weather like today?"

    model = FunctionModel(lambda request: f"answer to {request.context[-1].content}")
    stage = Stage.prompting_completion(get_user_query, instructions="Answer clearly.")
    assert asked == []
    state = await stage.execute(env=Env.of(model))
    assert state.result.as_string() == "answer to What's the weather like today?"
    assert asked == ["asked"]


async def test_loopback_completion_feeds_the_last_output_back_as_input() -> None:
    model = ScriptedModel("draft answer", "polished answer")
    pipeline = Stage.sequence(
        Stage.completion("question"),
        Stage.loopback_completion(instructions="Polish the previous response for clarity."),
    )
    state = await pipeline.execute(env=Env.of(model))
    assert state.result.as_string() == "polished answer"
    assert model.requests[1].context == (ModelInput.of("draft answer"),)
    assert state.context == (ModelInput.of("draft answer"), ModelOutput.of("polished answer"))


async def test_loopback_without_an_output_to_loop_back_passes_the_state_on() -> None:
    model = ScriptedModel()
    state = StageState(context=(ModelInput.of("only a question"),))
    assert await Stage.loopback_completion().execute(state, env=Env.of(model)) == state
    assert model.requests == []


async def test_result_completion_uses_the_current_result_as_input() -> None:
    model = FunctionModel(lambda request: request.context[-1].content.as_string().upper())
    state = await Stage.result_completion().execute(StageState(result="shout"), env=Env.of(model))
    assert state.result.as_string() == "SHOUT"


async def test_a_completion_without_a_model_says_how_to_add_one() -> None:
    outcome = await Stage.completion("hi").attempt(env=Env.of())
    error = outcome.failure()
    assert isinstance(error, MissingEnvironmentError)
    assert "no GenerativeModel in the Env" in str(error)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("rate_limited", ModelRateLimitError),
        ("unavailable", ModelUnavailableError),
        ("refused", ModelRefusalError),
        ("context_too_long", ModelContextTooLongError),
        ("invalid_request", ModelInvalidRequestError),
        ("authentication", ModelAuthenticationError),
    ],
)
async def test_model_failures_become_their_typed_errors_with_the_last_good_state(
    kind: FailureKind, expected: type[Exception]
) -> None:
    start = StageState(result="before")
    model = ScriptedModel(ModelFailure(kind, f"provider said {kind}"))
    outcome = await Stage.completion("hi").attempt(start, env=Env.of(model))
    error = outcome.failure()
    assert type(error) is expected
    assert error.state == start
    assert error.message == f"provider said {kind}"


async def test_a_rate_limit_under_retry_waits_retry_after_on_the_clock_then_succeeds() -> None:
    clock = VirtualClock()
    model = ScriptedModel(ModelFailure("rate_limited", "slow down", retry_after=7.0), "done")
    stage = Stage.completion("hi").with_retry(limit=2, delay=1.0, catching=ModelRateLimitError)
    state = await stage.execute(env=Env.of(model, clock))
    assert state.result.as_string() == "done"
    assert clock.now() == 7.0


async def test_a_provider_that_raises_surfaces_as_an_execution_error_with_cause() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("provider bug")

    outcome = await Stage.completion("hi").attempt(env=Env.of(FunctionModel(broken)))
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, StageExecutionError)
    assert isinstance(error.__cause__, RuntimeError)


async def test_a_scripted_model_that_runs_out_fails_loudly() -> None:
    outcome = await Stage.completion("hi").attempt(env=Env.of(ScriptedModel()))
    assert "ScriptedModel ran out of answers: call 1 but only 0 scripted" in str(outcome.failure())


def test_completion_refuses_bad_settings_at_construction() -> None:
    with pytest.raises(ValueError, match="output must be"):
        Stage.completion("hi", output="xml")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(ValueError, match="tool_rounds"):
        Stage.completion("hi", tool_rounds=-1)
    with pytest.raises(TypeError, match="instructions must be a str"):
        Stage.completion("hi", instructions=None)  # type: ignore[arg-type]  # the mistake under test


async def test_loopback_replaces_from_the_last_input_and_skips_without_one() -> None:
    model = ScriptedModel("refined")
    context = (ModelInput.of("q"), ModelOutput.of("draft"), ModelOutput.of("second draft"))
    state = await Stage.loopback_completion().execute(
        StageState(context=context), env=Env.of(model)
    )
    assert state.context == (ModelInput.of("second draft"), ModelOutput.of("refined"))
    lone = StageState(context=(ModelOutput.of("hello"),))
    assert await Stage.loopback_completion().execute(lone, env=Env.of(model)) == lone

"""Leaf nodes: fixed turns (`predefined`), transforms, and `@stage` functions."""

from __future__ import annotations

import pytest
from returns.result import Failure, Success

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    MultimodalContent,
    Stage,
    StageException,
    StageExecutionError,
    StageState,
    stage,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


ENV = Env.of()


async def test_predefined_alternates_input_and_output_and_keeps_the_result() -> None:
    start = StageState(result="before")
    state = await Stage.predefined("question", "answer").execute(start, env=ENV)
    assert state.context == (ModelInput.of("question"), ModelOutput.of("answer"))
    assert state.result.as_string() == "before"  # draive: the result is left alone


async def test_predefined_content_after_an_explicit_turn_is_the_opposite_turn() -> None:
    state = await Stage.predefined(ModelOutput.of("hello"), "hi", "how can I help?").execute(
        env=ENV
    )
    assert state.context == (
        ModelOutput.of("hello"),
        ModelInput.of("hi"),
        ModelOutput.of("how can I help?"),
    )


async def test_predefined_with_only_inputs_keeps_the_result_unless_given() -> None:
    start = StageState(result="before")
    kept = await Stage.predefined(ModelInput.of("note")).execute(start, env=ENV)
    assert kept.result.as_string() == "before"
    given = await Stage.predefined(ModelInput.of("note"), result="set").execute(start, env=ENV)
    assert given.result.as_string() == "set"


async def test_transforms_accept_sync_and_async_callbacks() -> None:
    async def louder(content: MultimodalContent) -> MultimodalContent:
        return MultimodalContent.of(content.as_string().upper())

    pipeline = Stage.sequence(
        Stage.predefined("in", "out", result="out"),
        Stage.transform_result(lambda content: MultimodalContent.of("Transformed: ", content)),
        Stage.transform_result(louder),
        Stage.transform_context(lambda context: (*context, ModelInput.of("more"))),
    )
    state = await pipeline.execute(env=ENV)
    assert state.result.as_string() == "TRANSFORMED: OUT"
    assert state.context[-1] == ModelInput.of("more")


async def test_a_transform_returning_the_wrong_type_fails_clearly() -> None:
    bad = Stage.transform_result(lambda content: "not content")  # type: ignore[arg-type, return-value]  # the mistake under test
    outcome = await bad.attempt(env=ENV)
    assert isinstance(outcome, Failure)
    assert "must return MultimodalContent, got str" in str(outcome.failure())


async def test_custom_stage_exceptions_become_failures_with_cause_and_last_good_state() -> None:
    @stage
    async def explode(*, state: StageState) -> StageState:
        raise KeyError("missing")

    pipeline = Stage.sequence(
        Stage.predefined("a", "b", result="b"), explode.with_meta(name="explode")
    ).with_meta(name="pipeline")
    outcome = await pipeline.attempt(env=ENV)
    error = outcome.failure()
    assert isinstance(error, StageExecutionError)
    assert isinstance(error.__cause__, KeyError)
    assert error.stage_path == ("pipeline", "explode")
    assert error.state.result.as_string() == "b"
    assert str(error).startswith("[pipeline > explode] KeyError")
    with pytest.raises(StageExecutionError) as raised:
        await pipeline.execute(env=ENV)
    assert raised.value.stage_path == ("pipeline", "explode")


async def test_custom_stages_may_take_env_and_return_results() -> None:
    @stage
    async def reads_env(*, state: StageState, env: Env) -> StageState:
        return state.updated(result=env.name)

    @stage
    async def returns_result(*, state: StageState) -> Success[StageState]:
        return Success(state.updated(result="via Result"))

    @stage
    async def returns_failure(*, state: StageState) -> Failure[StageException]:
        return Failure(StageException("declined", state=state))

    assert (await reads_env.execute(env=Env.of(name="prod"))).result.as_string() == "prod"
    assert (await returns_result.execute(env=ENV)).result.as_string() == "via Result"
    failed = await returns_failure.attempt(env=ENV)
    assert failed.failure().message == "declined"


def test_stage_refuses_a_sync_function() -> None:
    def sync(*, state: StageState) -> StageState:
        return state

    with pytest.raises(TypeError, match="async function"):
        stage(sync)  # type: ignore[call-overload]  # the mistake under test

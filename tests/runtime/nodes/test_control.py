"""Control nodes: retry and fallback (what `catching` sees), and timeouts."""

from __future__ import annotations

import pytest
from returns.result import Failure

from stagefx import (
    Env,
    ModelFailure,
    ModelRateLimitError,
    ModelRequest,
    MultimodalContent,
    Stage,
    StageState,
    stage,
)
from stagefx.testing import FunctionModel, ScriptedModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


async def test_retry_waits_on_the_env_clock_and_catches_only_what_it_is_told() -> None:
    clock = VirtualClock()
    runs = 0

    @stage
    async def flaky(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        raise (ConnectionError if runs < 3 else ValueError)("down")

    outcome = await flaky.with_retry(
        limit=5, delay=lambda attempt, error: 2.0**attempt, catching=ConnectionError
    ).attempt(env=Env.of(clock))
    assert isinstance(outcome.failure().__cause__, ValueError)
    assert runs == 3
    assert clock.sleeps == [1.0, 2.0]
    assert clock.now() == 3.0


async def test_fallback_catching_a_predicate() -> None:
    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise PermissionError("no")

    primary = Stage.transform_result(refuse)
    backup = Stage.transform_result(lambda content: MultimodalContent.of("backup"))
    only_permission = primary.with_fallback(
        backup,
        catching=lambda error: isinstance(error, PermissionError),  # the original
    )
    assert (await only_permission.execute(env=ENV)).result.as_string() == "backup"
    never = primary.with_fallback(backup, catching=lambda error: False)
    assert isinstance(await never.attempt(env=ENV), Failure)


async def test_timeout_on_the_virtual_clock() -> None:
    from stagefx import StageTimeoutError

    clock = VirtualClock()

    @stage
    async def slow(*, state: StageState, env: Env) -> StageState:
        await env.clock.sleep(10)
        return state.updated(result="finished")

    late = await slow.with_timeout(5).attempt(env=Env.of(clock))
    assert isinstance(late.failure(), StageTimeoutError)
    assert clock.now() == 5.0
    in_time = await slow.with_timeout(20).execute(env=Env.of(clock))
    assert in_time.result.as_string() == "finished"


async def test_a_retry_predicate_sees_the_exception_a_model_raised() -> None:
    calls = 0

    def flaky(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    seen: list[Exception] = []

    def connection_errors(error: Exception) -> bool:
        seen.append(error)
        return isinstance(error, ConnectionError)

    retried = Stage.completion("q").with_retry(limit=3, catching=connection_errors)
    state = await retried.execute(env=Env.of(FunctionModel(flaky)))
    assert state.result.as_string() == "ok"
    assert [type(error) for error in seen] == [ConnectionError, ConnectionError]


async def test_a_retry_predicate_sees_a_model_failure_as_the_stage_exception() -> None:
    model = ScriptedModel(ModelFailure("rate_limited", "slow down"), "ok")
    retried = Stage.completion("q").with_retry(
        limit=1, catching=lambda error: isinstance(error, ModelRateLimitError)
    )
    state = await retried.execute(env=Env.of(model, VirtualClock()))
    assert state.result.as_string() == "ok"


async def test_fallback_catches_a_set_of_types() -> None:
    @stage
    async def broken(*, state: StageState) -> StageState:
        raise KeyError("missing")

    backup = Stage.transform_result(lambda content: MultimodalContent.of("backup"))
    caught = broken.with_fallback(backup, catching={ValueError, KeyError})
    assert (await caught.execute(env=ENV)).result.as_string() == "backup"
    missed = broken.with_fallback(backup, catching={ValueError, TypeError})
    assert isinstance((await missed.attempt(env=ENV)).failure().__cause__, KeyError)

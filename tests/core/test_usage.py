"""Usage adds up: every model call counts in the final state, and the trace agrees."""

from __future__ import annotations

import pytest
from returns.result import Result

from stagefx import (
    Env,
    ModelFailure,
    ModelOutput,
    ModelUnavailableError,
    MultimodalContent,
    RecordingTracer,
    Stage,
    StageException,
    StageState,
    StageTimeoutError,
    TokenUsage,
    UsageTotals,
    stage,
)
from stagefx.testing import ScriptedModel, VirtualClock
from tests.helpers import first_success, keep_first

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


def answer(text: str, tokens_in: int, tokens_out: int) -> ModelOutput:
    return ModelOutput(MultimodalContent.of(text), usage=TokenUsage("m", tokens_in, tokens_out))


DOWN = ModelFailure("unavailable", "try later")


def totals(*calls: tuple[int, int]) -> UsageTotals:
    total = UsageTotals()
    for tokens_in, tokens_out in calls:
        total = total.plus(TokenUsage("m", tokens_in, tokens_out))
    return total


async def run(pipeline: Stage, model: ScriptedModel) -> tuple[StageState, RecordingTracer]:
    tracer = RecordingTracer()
    state = await pipeline.execute(env=Env.of(model, VirtualClock(), tracer))
    return state, tracer


async def test_retried_attempts_all_count() -> None:
    # Attempt 1 spends 10/1 then fails on its second call; attempt 2 spends 20/2 + 30/3.
    model = ScriptedModel(answer("a", 10, 1), DOWN, answer("b", 20, 2), answer("c", 30, 3))
    pipeline = Stage.sequence(Stage.completion("one"), Stage.completion("two")).with_retry(limit=1)
    state, tracer = await run(pipeline, model)
    assert state.get(UsageTotals) == totals((10, 1), (20, 2), (30, 3))
    assert tracer.usage() == state.get(UsageTotals)


async def test_the_branch_that_failed_before_a_fallback_counts() -> None:
    model = ScriptedModel(answer("a", 10, 1), DOWN, answer("fallback", 5, 5))
    primary = Stage.sequence(Stage.completion("one"), Stage.completion("two"))
    state, tracer = await run(primary.with_fallback(Stage.completion("plan b")), model)
    assert state.result.as_string() == "fallback"
    assert state.get(UsageTotals) == totals((10, 1), (5, 5))
    assert tracer.usage() == state.get(UsageTotals)


async def test_the_default_router_counts_its_own_call() -> None:
    model = ScriptedModel(answer("billing", 7, 1), answer("refund issued", 40, 4))
    router = Stage.router(
        Stage.completion("bill").with_meta(name="billing", description="money"),
        Stage.completion("ship").with_meta(name="shipping", description="parcels"),
    )
    state, tracer = await run(router, model)
    assert state.result.as_string() == "refund issued"
    assert state.get(UsageTotals) == totals((7, 1), (40, 4))
    assert tracer.usage() == state.get(UsageTotals)
    assert sum(1 for span in tracer.spans if span.name == "generate") == 2


async def test_every_concurrent_branch_counts_failed_ones_too() -> None:
    model = ScriptedModel(answer("x", 1, 1), answer("y", 2, 2), answer("z", 3, 3), DOWN)
    failing = Stage.sequence(Stage.completion("c"), Stage.completion("c again"))
    fan = Stage.concurrent(
        Stage.completion("a"),
        Stage.completion("b"),
        failing,
        merge=keep_first,
        concurrent_tasks=1,  # one at a time: the script is answered in branch order
    )
    state, tracer = await run(fan, model)
    assert state.get(UsageTotals) == totals((1, 1), (2, 2), (3, 3))
    assert tracer.usage() == state.get(UsageTotals)


async def test_a_failure_carries_the_usage_spent_up_to_it() -> None:
    model = ScriptedModel(answer("a", 10, 1), answer("b", 20, 2), DOWN)
    pipeline = Stage.sequence(
        Stage.completion("one"), Stage.completion("two"), Stage.completion("three")
    ).with_retry(limit=0)
    start = StageState(result="in")
    failed = (await pipeline.attempt(start, env=Env.of(model))).failure()
    assert isinstance(failed, ModelUnavailableError)
    assert failed.usage == totals((10, 1), (20, 2))
    assert failed.state.get(UsageTotals) == failed.usage


async def test_nested_retries_fallbacks_and_branches_add_up_with_the_trace() -> None:
    model = ScriptedModel(
        answer("a", 1, 0), DOWN, answer("b", 2, 0), answer("c", 4, 0), answer("d", 8, 0)
    )
    flaky = Stage.completion("flaky").with_retry(limit=0).with_fallback(Stage.completion("b"))
    pipeline = Stage.sequence(
        Stage.completion("a"),
        Stage.concurrent(flaky, merge=keep_first).with_retry(limit=1),
        Stage.completion("c"),
        Stage.completion("d").with_volatile_context().ignore_result(),
    )
    state, tracer = await run(pipeline, model)
    assert state.get(UsageTotals) == totals((1 + 2 + 4 + 8, 0))
    assert tracer.usage() == state.get(UsageTotals)


# A failure may carry a state unrelated to its input: usage never goes back.


@stage
async def broken(*, state: StageState) -> StageState:
    raise ConnectionError("search backend down")


@stage
async def delegating(*, state: StageState) -> StageState | Result[StageState, StageException]:
    return await broken.attempt(StageState(result=state.result))  # a fresh state


@pytest.mark.parametrize(
    "tail",
    [
        delegating.with_fallback(Stage.noop),
        Stage.concurrent(Stage.noop, delegating, merge=first_success),
        Stage.concurrent(Stage.noop, delegating, delegating, merge=first_success),
    ],
    ids=["fallback", "one failing branch", "two failing branches"],
)
async def test_failures_with_fresh_states_neither_erase_nor_negate_usage(tail: Stage) -> None:
    model = ScriptedModel(answer("draft", 100, 50))
    state, tracer = await run(Stage.sequence(Stage.completion("hi"), tail), model)
    assert state.get(UsageTotals) == totals((100, 50)) == tracer.usage()


async def test_a_retry_after_a_fresh_state_failure_keeps_earlier_usage() -> None:
    attempts: list[int] = []

    @stage
    async def second_time_lucky(
        *, state: StageState
    ) -> StageState | Result[StageState, StageException]:
        attempts.append(1)
        if len(attempts) == 1:
            return await broken.attempt(StageState())
        return state

    model = ScriptedModel(answer("draft", 100, 50))
    pipeline = Stage.sequence(Stage.completion("hi"), second_time_lucky.with_retry(limit=1))
    state, tracer = await run(pipeline, model)
    assert state.get(UsageTotals) == totals((100, 50)) == tracer.usage()


async def test_a_timed_out_stage_carries_what_the_cut_off_work_spent() -> None:
    @stage
    async def slow(*, state: StageState, env: Env) -> StageState:
        await env.clock.sleep(10)
        return state

    model = ScriptedModel(answer("a", 3, 1), answer("b", 3, 1), answer("c", 3, 1))
    cut_off = Stage.sequence(Stage.completion("q"), slow).with_timeout(1)
    tracer = RecordingTracer()
    env = Env.of(model, VirtualClock(), tracer)
    failed = (await cut_off.attempt(env=env)).failure()
    assert isinstance(failed, StageTimeoutError)
    assert failed.usage == totals((3, 1)) == tracer.usage()
    retried = cut_off.with_retry(limit=1)
    again = (await retried.attempt(env=env)).failure()
    assert isinstance(again, StageTimeoutError)
    assert again.usage == totals((3, 1), (3, 1))


async def test_a_shared_cached_run_is_counted_once() -> None:
    model = ScriptedModel(answer("once", 3, 1))
    shared = Stage.completion("q").cached()
    state, tracer = await run(Stage.concurrent(shared, shared, merge=keep_first), model)
    assert state.get(UsageTotals) == totals((3, 1)) == tracer.usage()
    assert len(model.requests) == 1

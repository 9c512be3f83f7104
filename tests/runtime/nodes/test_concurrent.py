"""`concurrent`: branches on one state, merged in branch order, two at a time by default."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from stagefx import Env, MultimodalContent, Stage, StageException, StageState, stage

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


async def test_concurrent_merges_outcomes_in_branch_order_including_failures() -> None:
    received: list[str] = []

    async def merge(branches: Sequence[StageState | StageException]) -> StageState:
        received.extend(
            b.result.as_string() if isinstance(b, StageState) else f"error:{b.message}"
            for b in branches
        )
        successful = [b for b in branches if isinstance(b, StageState)]
        return successful[0].updated(result=MultimodalContent.of(*[s.result for s in successful]))

    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise RuntimeError("B down")

    fan = Stage.concurrent(
        Stage.transform_result(lambda content: MultimodalContent.of("A")),
        Stage.transform_result(refuse),
        Stage.transform_result(lambda content: MultimodalContent.of("C")),
        merge=merge,
    )
    state = await fan.execute(env=ENV)
    assert received == ["A", "error:RuntimeError: B down", "C"]
    assert state.result.as_string() == "AC"


def first_success_by_keyword(*, branches: Sequence[StageState | StageException]) -> StageState:
    for branch in branches:
        if isinstance(branch, StageState):
            return branch
    raise RuntimeError("no branch succeeded")


async def test_concurrent_calls_merge_by_keyword_when_it_takes_branches() -> None:
    def positional(outcomes: Sequence[StageState | StageException], /) -> StageState:
        state = outcomes[1]
        assert isinstance(state, StageState)
        return state

    a = Stage.transform_result(lambda content: MultimodalContent.of("a"))
    b = Stage.transform_result(lambda content: MultimodalContent.of("b"))
    by_keyword = await Stage.concurrent(a, b, merge=first_success_by_keyword).execute(env=ENV)
    by_position = await Stage.concurrent(a, b, merge=positional).execute(env=ENV)
    assert (by_keyword.result.as_string(), by_position.result.as_string()) == ("a", "b")


async def test_concurrent_runs_two_branches_at_a_time_by_default_and_any_with_none() -> None:
    running = 0
    peak = 0

    @stage
    async def busy(*, state: StageState) -> StageState:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return state

    await Stage.concurrent(*([busy] * 6), merge=first_success_by_keyword).execute(env=ENV)
    assert peak == 2  # draive's default
    peak = 0
    await Stage.concurrent(
        *([busy] * 6), merge=first_success_by_keyword, concurrent_tasks=None
    ).execute(env=ENV)
    assert peak == 6
    assert Stage.concurrent(busy, merge=first_success_by_keyword).describe().details == {
        "concurrent_tasks": 2
    }


@pytest.mark.parametrize("limit", [1, 3, 16])
async def test_concurrent_never_runs_more_branches_than_its_bound(limit: int) -> None:
    running = peak = 0

    @stage
    async def branch(*, state: StageState) -> StageState:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        running -= 1
        return state

    def merge(branches: Sequence[StageState | StageException]) -> StageState:
        assert all(isinstance(b, StageState) for b in branches)
        first = branches[0]
        assert isinstance(first, StageState)
        return first

    fan = Stage.concurrent(*([branch] * 50), merge=merge, concurrent_tasks=limit)
    await fan.execute(env=Env.of())
    assert peak == limit

"""Single flight under load, and the concurrency bound of `concurrent`."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from stagefx import Env, Stage, StageException, StageState, stage

pytestmark = pytest.mark.anyio


async def test_cached_runs_once_under_1000_concurrent_identical_calls() -> None:
    runs = 0
    release = anyio.Event()

    @stage
    async def expensive(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        await release.wait()
        return state.updated(result="computed")

    memo = expensive.cached()
    env = Env.of()
    results: list[str] = []

    async def call() -> None:
        results.append((await memo.execute(StageState(result="same"), env=env)).result.as_string())

    async with anyio.create_task_group() as group:
        for _ in range(1_000):
            group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert runs == 1
    assert results == ["computed"] * 1_000


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

"""Cancellation always propagates, is never a Failure, and leaves no task behind."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from stagefx import Env, Stage, StageState, stage
from stagefx.testing import VirtualClock
from tests.helpers import keep_first

pytestmark = pytest.mark.anyio


class Probe:
    """Counts stages that started and that were cancelled."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started = 0
        self.cancelled = 0
        self.all_started = anyio.Event()

    def blocking(self) -> Stage:
        @stage
        async def blocks(*, state: StageState) -> StageState:
            self.started += 1
            if self.started == self.expected:
                self.all_started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            return state

        return blocks


async def cancel_when_started(probe: Probe, pipeline: Stage, env: Env) -> list[object]:
    """Run `pipeline` and cancel it from outside once every probe stage started;
    return what `attempt` gave (nothing, if the cancellation propagated)."""
    tasks_before = len(asyncio.all_tasks())
    outcomes: list[object] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            outcomes.append(await pipeline.attempt(env=env))

        group.start_soon(run)
        await probe.all_started.wait()
        group.cancel_scope.cancel()
    assert len(asyncio.all_tasks()) == tasks_before, "a task outlived its stage"
    return outcomes


async def test_cancelling_concurrent_cancels_every_branch() -> None:
    probe = Probe(expected=5)
    pipeline = Stage.concurrent(
        *[probe.blocking() for _ in range(5)], merge=keep_first, concurrent_tasks=None
    )
    assert await cancel_when_started(probe, pipeline, Env.of()) == []
    assert probe.cancelled == 5


async def test_cancelling_a_bounded_concurrent_cancels_the_running_branches() -> None:
    probe = Probe(expected=2)
    branches = [probe.blocking() for _ in range(6)]
    pipeline = Stage.concurrent(*branches, merge=keep_first, concurrent_tasks=2)
    assert await cancel_when_started(probe, pipeline, Env.of()) == []
    assert (probe.started, probe.cancelled) == (2, 2)


@pytest.mark.parametrize("clock", [None, VirtualClock()])
async def test_cancelling_inside_with_timeout_propagates_rather_than_timing_out(
    clock: VirtualClock | None,
) -> None:
    probe = Probe(expected=1)
    env = Env.of() if clock is None else Env.of(clock)
    assert await cancel_when_started(probe, probe.blocking().with_timeout(3600), env) == []
    assert probe.cancelled == 1


async def test_cancelling_under_with_retry_does_not_retry() -> None:
    probe = Probe(expected=1)
    pipeline = probe.blocking().with_retry(limit=5, catching=BaseException)  # type: ignore[arg-type]  # even the broadest catch
    assert await cancel_when_started(probe, pipeline, Env.of()) == []
    assert (probe.started, probe.cancelled) == (1, 1)


async def test_cancelling_a_retry_delay_propagates() -> None:
    attempts = 0
    sleeping = anyio.Event()

    @stage
    async def fails(*, state: StageState) -> StageState:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    @stage
    async def announce(*, state: StageState) -> StageState:
        sleeping.set()
        return state

    probe = Probe(expected=1)
    probe.all_started = sleeping
    pipeline = Stage.sequence(announce, fails.with_retry(limit=3, delay=3600.0))
    assert await cancel_when_started(probe, pipeline, Env.of()) == []
    assert attempts == 1


async def test_a_cancelled_cached_leader_hands_over_to_a_waiting_call() -> None:
    runs = 0
    first_started = anyio.Event()

    @stage
    async def slow_once(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        if runs == 1:
            first_started.set()
            await anyio.sleep_forever()
        return state.updated(result="computed")

    memo = slow_once.cached()
    env = Env.of()
    results: list[str] = []
    async with anyio.create_task_group() as outer:
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await memo.execute(env=env)

        async def follower() -> None:
            results.append((await memo.execute(env=env)).result.as_string())

        outer.start_soon(leader)
        await first_started.wait()
        outer.start_soon(follower)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
    assert results == ["computed"]
    assert runs == 2

"""`cached_externally`: read before, write after a success, keep no failure."""

from __future__ import annotations

import pytest

from stagefx import Stage, StageState, TokenUsage, UsageTotals, stage

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


SPENT = UsageTotals((TokenUsage("m", 3, 4),))


async def test_cached_externally_reads_before_and_writes_after_a_success() -> None:
    store: dict[str, StageState] = {}
    runs: list[str] = []

    @stage
    async def shout(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state.updated(SPENT, result=state.result.as_string().upper())

    def key(*, state: StageState) -> str:
        return state.result.as_string()

    async def read(key: str) -> StageState | None:
        return store.get(key)

    def write(key: str, state: StageState) -> None:
        store[key] = state

    memo = shout.cached_externally(make_key=key, read=read, write=write)
    first = await memo.execute(StageState(result="a"))
    again = await memo.execute(StageState(result="a"))
    other = await memo.execute(StageState(result="b"))
    assert (first.result.as_string(), again.result.as_string()) == ("A", "A")
    assert other.result.as_string() == "B"
    assert runs == ["a", "b"]
    assert again.get(UsageTotals, SPENT) == UsageTotals()  # a hit spends nothing
    assert sorted(store) == ["a", "b"]


async def test_cached_externally_keeps_no_failure_and_survives_a_failing_write() -> None:
    writes: list[str] = []

    @stage
    async def broken(*, state: StageState) -> StageState:
        raise ValueError("no")

    def key(*, state: StageState) -> str:
        return "k"

    def read(key: str) -> StageState | None:
        return None

    def write(key: str, state: StageState) -> None:
        writes.append(key)
        raise ConnectionError("cache down")

    failing = broken.cached_externally(make_key=key, read=read, write=write)
    assert isinstance((await failing.attempt()).failure().__cause__, ValueError)
    assert writes == []
    kept = Stage.noop.cached_externally(make_key=key, read=read, write=write)
    assert await kept.execute(StageState(result="x")) == StageState(result="x")
    assert writes == ["k"]

    def garbage(key: str) -> StageState | None:
        return "not a state"  # type: ignore[return-value]  # the mistake under test

    wrong = Stage.noop.cached_externally(make_key=key, read=garbage, write=write)
    assert "StageState or None" in str((await wrong.attempt()).failure())

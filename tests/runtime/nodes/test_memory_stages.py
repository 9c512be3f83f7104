"""Memory nodes: `memory_recall` replaces or merges, `memory_remember` keeps,
`execute(memory=...)` does both; a failing memory fails the stage."""

from __future__ import annotations

import pytest

from stagefx import (
    Env,
    Memory,
    ModelInput,
    ModelOutput,
    Stage,
    StageExecutionError,
    StageState,
    TokenUsage,
    UsageTotals,
)
from stagefx.testing import FunctionModel

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()
SPENT = UsageTotals((TokenUsage("m", 3, 4),))


async def test_memory_recall_replaces_or_merges_and_keeps_the_runs_usage() -> None:
    stored = StageState.of(context=(ModelInput.of("stored"),), result="stored").updated(SPENT)
    memory = Memory.volatile(stored)
    current = StageState.of(context=(ModelInput.of("now"),), result="now").updated(
        UsageTotals((TokenUsage("m", 1, 1),))
    )
    replaced = await Stage.memory_recall(memory).execute(current, env=ENV)
    assert (replaced.context, replaced.result.as_string()) == ((ModelInput.of("stored"),), "stored")
    assert replaced.get(UsageTotals) == current.get(UsageTotals)  # not the stored run's
    merged = await Stage.memory_recall(memory, handling="merge").execute(current, env=ENV)
    assert merged.context == (ModelInput.of("now"), ModelInput.of("stored"))
    assert merged.result.as_string() == "nowstored"
    assert merged.get(UsageTotals) == current.get(UsageTotals)


async def test_memory_remember_keeps_the_state_and_passes_it_on() -> None:
    memory = Memory.volatile(StageState.empty)
    state = StageState(result="keep me")
    assert await Stage.memory_remember(memory).execute(state, env=ENV) == state
    assert await memory.recall() == state
    assert await Memory.constant(state).recall() is state


async def test_a_failing_memory_fails_the_stage_with_the_cause() -> None:
    def recalling() -> StageState:
        raise ConnectionError("db down")

    def remembering(*items: StageState) -> None:
        raise ConnectionError("db down")

    broken = Memory(recalling=recalling, remembering=remembering)
    for failing in (Stage.memory_recall(broken), Stage.memory_remember(broken)):
        error = (await failing.attempt(StageState(result="in"), env=ENV)).failure()
        assert isinstance(error, StageExecutionError)
        assert isinstance(error.__cause__, ConnectionError)
        assert error.state.result.as_string() == "in"
    with pytest.raises(ValueError, match="replace"):
        Stage.memory_recall(broken, handling="append")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="recall"):
        Stage.memory_remember(object())  # type: ignore[arg-type]  # the mistake under test


async def test_execute_from_a_memory_recalls_its_context_and_remembers_the_final_state() -> None:
    memory = Memory.volatile(StageState(context=(ModelInput.of("hi"), ModelOutput.of("hello"))))
    model = FunctionModel(lambda request: f"turns seen: {len(request.context)}")
    chat = Stage.completion("and now?")
    first = await chat.execute(memory=memory, env=Env.of(model))
    assert first.result.as_string() == "turns seen: 3"
    assert await memory.recall() == first
    second = await chat.execute(memory=memory, env=Env.of(model))
    assert second.result.as_string() == "turns seen: 5"
    given = await chat.execute(StageState(result="r"), memory=(), env=Env.of(model))
    assert given.result.as_string() == "turns seen: 1"

"""Sequences and loops: `loop` counts its iterations, caps them, and asks no more."""

from __future__ import annotations

import pytest

from stagefx import Env, MultimodalContent, Stage, StageState, stage

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


async def test_loop_counts_finished_iterations_in_both_modes() -> None:
    seen: list[int] = []

    async def below_three(*, state: StageState, iteration: int) -> bool:
        seen.append(iteration)
        return iteration < 3

    step = Stage.transform_result(lambda content: MultimodalContent.of(content, "."))
    post = await Stage.loop(step, condition=below_three).execute(env=ENV)
    assert post.result.as_string() == "..."
    assert seen == [1, 2, 3]
    seen.clear()
    pre = await Stage.loop(step, condition=below_three, mode="pre_check").execute(env=ENV)
    assert pre.result.as_string() == "..."
    assert seen == [0, 1, 2, 3]


async def test_loop_max_iterations_caps_the_runs() -> None:
    step = Stage.transform_result(lambda content: MultimodalContent.of(content, "."))
    looped = Stage.loop(step, step, condition=lambda *, state, iteration: True, max_iterations=4)
    assert (await looped.execute(env=ENV)).result.as_string() == "." * 8


async def test_a_loop_condition_returning_a_non_bool_fails_clearly() -> None:
    looped = Stage.loop(Stage.noop, condition=lambda *, state, iteration: "yes")  # type: ignore[arg-type]  # the mistake under test
    outcome = await looped.attempt(env=ENV)
    assert "loop condition must return a bool, got str" in str(outcome.failure())


async def test_a_loop_asks_no_question_past_its_cap() -> None:
    steps = ["outline", "draft"]
    asked: list[int] = []

    def more(*, state: StageState, iteration: int) -> bool:
        asked.append(iteration)
        return steps[iteration] != "done"  # an IndexError if asked past the cap

    @stage
    async def work(*, state: StageState) -> StageState:
        return state

    for body in (work, work.with_meta(name="composite")):
        asked.clear()
        outcome = await Stage.loop(body, condition=more, max_iterations=2).attempt(env=Env.of())
        assert outcome.unwrap() == StageState()
        assert asked == [1]
    asked.clear()
    capped = Stage.loop(
        work.with_meta(name="w"), condition=more, mode="pre_check", max_iterations=0
    )
    await capped.execute(env=Env.of())
    assert asked == []

"""Deep pipelines run as flat loops: no RecursionError however deep the nesting."""

from __future__ import annotations

import pytest

from stagefx import Env, MultimodalContent, Stage, StageState

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def test_a_10000_deep_nested_sequence_runs() -> None:
    tick = Stage.transform_result(lambda content: MultimodalContent.of(content, "."))
    pipeline = tick
    for _ in range(9_999):
        pipeline = Stage.sequence(pipeline, tick)
    right_nested = tick
    for _ in range(9_999):
        right_nested = Stage.sequence(tick, right_nested)
    for nested in (pipeline, right_nested):
        state = await nested.execute(env=Env.of())
        assert len(state.result.as_string()) == 10_000


async def test_a_million_iteration_loop_runs() -> None:
    checked: list[int] = []

    def below_a_million(*, state: StageState, iteration: int) -> bool:
        checked.append(iteration)
        return iteration < 1_000_000

    await Stage.loop(Stage.noop, condition=below_a_million).execute(env=Env.of())
    assert len(checked) == 1_000_000
    assert checked[-1] == 1_000_000

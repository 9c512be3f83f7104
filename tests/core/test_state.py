"""StageState: user values looked up and replaced by type, `of`, `get` and `merged`."""

from __future__ import annotations

import pytest

from stagefx import Env, Memory, ModelInput, ModelOutput, Stage, StageMeta, StageState, stage

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


async def test_user_state_is_looked_up_by_type_and_replaced_by_type() -> None:
    @stage
    async def count(*, state: StageState) -> StageState:
        return state.updated(state.get(int, 0) + 1)

    state = await Stage.sequence(count, count, count).execute(StageState(values=("x",)), env=ENV)
    assert state.get(int) == 3
    assert state.get(str) == "x"
    assert state.get(float) is None


async def test_state_of_get_required_and_merged() -> None:
    meta = StageMeta(name="x")
    state = StageState.of(meta, context=(ModelInput.of("a"),), result="r")
    assert state.get(StageMeta, required=True) is meta
    with pytest.raises(LookupError, match="Memory"):
        state.get(Memory, required=True)
    other = StageState.of(StageMeta(name="y"), context=(ModelOutput.of("b"),), result="s")
    merged = state.merged(other)
    assert merged.context == (ModelInput.of("a"), ModelOutput.of("b"))
    assert merged.result.as_string() == "rs"
    assert merged.get(StageMeta) == StageMeta(name="y")  # the other's values win

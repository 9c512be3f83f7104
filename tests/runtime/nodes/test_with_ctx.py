"""`with_ctx`: values reach what the stage runs, the model included, and no further."""

from __future__ import annotations

import anyio
import pytest

from stagefx import (
    Env,
    GenerativeModel,
    ModelFailure,
    ModelOutput,
    ModelRequest,
    Stage,
    StageState,
    stage,
)
from stagefx.testing import VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_with_ctx_values_reach_what_the_stage_runs_and_no_further() -> None:
    seen: list[str | None] = []

    @stage
    async def who(*, state: StageState, env: Env) -> StageState:
        tenant = env.get(Tenant)
        seen.append(None if tenant is None else tenant.name)
        return state

    pipeline = Stage.sequence(
        who.with_ctx(Tenant("outer")),
        Stage.sequence(who, who.with_ctx(Tenant("inner"))).with_ctx(Tenant("outer")),
        who,
    )
    await pipeline.execute(env=ENV)
    assert seen == ["outer", "outer", "inner", None]
    assert Stage.noop.with_ctx() is Stage.noop
    assert who.with_ctx(Tenant("x")).describe().details == {"values": "Tenant"}


async def test_with_ctx_reaches_the_model() -> None:
    seen: list[str] = []

    class TenantModel(GenerativeModel):
        async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
            tenant = env.get(Tenant)
            seen.append("none" if tenant is None else tenant.name)
            return ModelOutput.of("ok")

    env = Env.of(TenantModel())
    await Stage.completion("q").with_ctx(Tenant("acme")).execute(env=env)
    await Stage.completion("q").execute(env=env)
    assert seen == ["acme", "none"]


async def test_an_env_left_by_a_timeout_inside_with_ctx_is_the_outer_one() -> None:
    seen: list[str | None] = []

    @stage
    async def stuck(*, state: StageState) -> StageState:
        await anyio.Event().wait()
        return state

    @stage
    async def who(*, state: StageState, env: Env) -> StageState:
        tenant = env.get(Tenant)
        seen.append(None if tenant is None else tenant.name)
        return state

    timed = stuck.with_ctx(Tenant("inner")).with_timeout(5)
    recovered = timed.with_fallback(who)
    await Stage.sequence(recovered, who).execute(env=Env.of(VirtualClock()))
    assert seen == [None, None]

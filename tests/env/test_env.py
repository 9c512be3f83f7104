"""The reader environment: explicit `env=`, ambient `ctx.scope`, disposables, logging."""

from __future__ import annotations

import logging
from types import TracebackType

import attrs
import pytest

from stagefx import (
    CacheStore,
    Env,
    MissingEnvironmentError,
    ModelRequest,
    MultimodalContent,
    RecordingTracer,
    Stage,
    StageState,
    ctx,
    stage,
)
from stagefx._model.boundary import CallLayer, ModelPath
from stagefx._model.generative import ModelStream
from stagefx.testing import ScriptedModel, VirtualClock

pytestmark = pytest.mark.anyio


class Config:
    def __init__(self, value: str) -> None:
        self.value = value


@stage
async def read_config(*, state: StageState, env: Env) -> StageState:
    config = env.get(Config)
    return state.updated(result=config.value if config else "none")


class Resource:
    """A disposable that logs enter/exit and provides a Config."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __aenter__(self) -> Config:
        self.log.append(f"enter {self.name}")
        return Config(self.name)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.log.append(f"exit {self.name}")


async def test_without_any_env_only_what_needs_a_provider_fails_naming_it() -> None:
    state = StageState(result="kept")
    assert await Stage.noop.execute(state) == state
    shout = Stage.transform_result(lambda content: MultimodalContent.of("LOUD"))
    assert (await shout.execute()).result.as_string() == "LOUD"
    with pytest.raises(MissingEnvironmentError, match=r"no GenerativeModel in the Env"):
        await Stage.completion("hi").execute()
    outcome = await Stage.completion("hi").attempt(state)
    failed = outcome.failure()
    assert isinstance(failed, MissingEnvironmentError)
    assert failed.state == state


async def test_scope_makes_its_env_ambient_only_inside_the_block() -> None:
    async with ctx.scope("outer", Config("outer")) as env:
        assert ctx.current() is env
        assert (await read_config.execute()).result.as_string() == "outer"
        async with ctx.scope("inner", Config("inner")):
            assert (await read_config.execute()).result.as_string() == "inner"
        assert (await read_config.execute()).result.as_string() == "outer"
    assert ctx.current() is None


async def test_explicit_env_wins_over_the_ambient_one() -> None:
    async with ctx.scope("ambient", Config("ambient")):
        state = await read_config.execute(env=Env.of(Config("explicit")))
    assert state.result.as_string() == "explicit"


async def test_disposables_provide_and_exit_in_reverse_order_even_on_failure() -> None:
    log: list[str] = []
    seen: list[str] = []

    async def use_then_fail() -> None:
        async with ctx.scope("s", disposables=(Resource("a", log), Resource("b", log))):
            seen.append((await read_config.execute()).result.as_string())
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        await use_then_fail()
    assert seen == ["b"]
    assert log == ["enter a", "enter b", "exit b", "exit a"]


async def test_clock_and_tracer_providers_take_their_roles() -> None:
    clock, tracer = VirtualClock(), RecordingTracer()
    env = Env.of(Config("x"), clock, tracer, name="roles")
    assert (env.clock, env.tracer, env.providers, env.name) == (
        clock,
        tracer,
        (env.get(Config),),
        "roles",
    )


async def test_logs_are_structured_tagged_with_the_scope_and_free_of_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stagefx")
    async with ctx.scope("document_processor"):
        ctx.log_info(
            "called provider",
            api_key="sk-live-123456789",
            header="Authorization: Bearer abc.def",
            words=12,
        )
    (record,) = caplog.records
    assert record.stagefx_scope == "document_processor"  # type: ignore[attr-defined]  # set through `extra`
    assert record.stagefx_attributes["words"] == 12  # type: ignore[attr-defined]  # set through `extra`
    assert "sk-live" not in caplog.text
    assert "abc.def" not in caplog.text
    assert "called provider" in caplog.text


# Roles are explicit: a user's value is only ever a value, whatever its methods.


@attrs.frozen
class LooksLikeAClock:
    def now(self) -> float:
        raise AssertionError("a user value was used as the clock")

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("a user value was used as the clock")


@attrs.frozen
class LooksLikeATracer:
    def start(self, span_id: int, parent_id: int | None, name: str) -> None:
        raise AssertionError("a user value was used as the tracer")

    def end(self, span: object) -> None:
        raise AssertionError("a user value was used as the tracer")


@attrs.frozen
class LooksLikeACacheStore:
    async def load(self, key: object, now: float) -> StageState | None:
        raise AssertionError("a user value was used as the cache store")

    async def store(self, key: object, value: StageState, expires_at: float) -> None:
        raise AssertionError("a user value was used as the cache store")


@attrs.frozen
class LooksLikeAModel:
    async def generate(self, request: object, env: Env) -> object:
        raise AssertionError("a user value was used as the model")


async def test_values_with_role_shaped_members_take_no_role() -> None:
    lookalikes = (LooksLikeAClock(), LooksLikeATracer(), LooksLikeACacheStore())
    clock = VirtualClock()
    env = Env.of(*lookalikes, clock)
    assert env.clock is clock
    assert type(env.tracer).__name__ == "NoopTracer"
    assert env.get(CacheStore) is None
    for value in lookalikes:
        assert env.get(type(value)) is value
    # Retries wait on the real clock role, cached entries go to the stage's own
    # memory, and no span reaches the lookalike tracer.
    calls: list[int] = []

    @stage
    async def flaky(*, state: StageState) -> StageState:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return state.updated(result=f"call {len(calls)}")

    pipeline = flaky.with_retry(limit=1, delay=5).cached().with_timeout(60).traced(label="t")
    first = await pipeline.execute(env=env)
    again = await pipeline.execute(env=env)
    assert first.result.as_string() == again.result.as_string() == "call 2"
    assert sorted(clock.sleeps) == [5, 60, 60]  # the retry, then each run's watchdog
    tracer = RecordingTracer()
    assert (await pipeline.execute(env=Env.of(*lookalikes, tracer))).result.as_string()
    assert [span.name for span in tracer.spans if span.name == "t"] == ["t"]


async def test_a_value_with_a_generate_method_is_not_the_model() -> None:
    env = Env.of(LooksLikeAModel())
    failed = (await Stage.completion("hi").attempt(env=env)).failure()
    assert isinstance(failed, MissingEnvironmentError)
    model = ScriptedModel("answer")
    state = await Stage.completion("hi").execute(env=env.updated(model))
    assert state.result.as_string() == "answer"
    assert env.get(LooksLikeAModel) is not None


async def test_an_updated_env_sees_the_layers_and_model_added_to_it() -> None:
    """What each call needs from an Env (its model, its `CallLayer`s) is worked
    out once per Env: an Env made from it by `updated` works it out afresh."""
    seen: list[str] = []

    class Tag(CallLayer):
        def __init__(self, name: str) -> None:
            self.name = name

        def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
            seen.append(self.name)
            assert inner.model is not None
            return inner.stream(request, env)

    ask = Stage.completion("hi")
    first = Env.of(ScriptedModel("a", "b", "c"), Tag("outer"))
    assert (await ask.execute(env=first)).result == MultimodalContent.of("a")
    second = first.updated(Tag("inner"))
    assert (await ask.execute(env=second)).result == MultimodalContent.of("b")
    assert (await ask.execute(env=second.updated(ScriptedModel("new")))).result == (
        MultimodalContent.of("new")
    )
    assert seen == ["outer", "outer", "inner", "outer", "inner"]

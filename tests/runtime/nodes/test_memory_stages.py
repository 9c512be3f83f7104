"""draive 0.99.1's Stage features and behaviours, beyond its own tests: memory,
evaluation, `with_ctx`, `tool_call`, `cached_externally`, `meta=`, and the
behaviours that used to differ silently (see docs/migration.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio
import pytest

from stagefx import (
    Env,
    EvaluationError,
    EvaluatorResult,
    GenerativeModel,
    Memory,
    ModelContext,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRateLimitError,
    ModelRequest,
    ModelToolRequest,
    ModelToolResponse,
    MultimodalContent,
    Stage,
    StageException,
    StageExecutionError,
    StageMeta,
    StageState,
    TokenUsage,
    ToolError,
    UsageTotals,
    stage,
    tool,
)
from stagefx.openai._chat import encode_request as encode_chat
from stagefx.openai._responses import encode_request as encode_responses
from stagefx.testing import FunctionModel, ScriptedModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()
SPENT = UsageTotals((TokenUsage("m", 3, 4),))


def first_success(*, branches: Sequence[StageState | StageException]) -> StageState:
    for branch in branches:
        if isinstance(branch, StageState):
            return branch
    raise RuntimeError("no branch succeeded")


# Stages that use no provider run with no Env at all ------------------------


async def test_stages_without_providers_run_with_no_env_and_no_scope() -> None:
    pipeline = Stage.sequence(
        Stage.noop,
        Stage.predefined("q", "a"),
        Stage.transform_result(lambda content: MultimodalContent.of(content, "!")),
        Stage.trim_context(limit=1),
        Stage.strip_context_tools(),
    )
    state = await pipeline.execute(StageState(result="hi"))  # no env=, no ctx.scope
    assert state.result.as_string() == "hi!"
    assert state.context == (ModelInput.of("q"),)


# Concurrent: draive's merge(branches=...) and concurrent_tasks=2 -------------


async def test_concurrent_calls_merge_by_keyword_when_it_takes_branches() -> None:
    def positional(outcomes: Sequence[StageState | StageException], /) -> StageState:
        state = outcomes[1]
        assert isinstance(state, StageState)
        return state

    a = Stage.transform_result(lambda content: MultimodalContent.of("a"))
    b = Stage.transform_result(lambda content: MultimodalContent.of("b"))
    by_keyword = await Stage.concurrent(a, b, merge=first_success).execute(env=ENV)
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

    await Stage.concurrent(*([busy] * 6), merge=first_success).execute(env=ENV)
    assert peak == 2  # draive's default
    peak = 0
    await Stage.concurrent(*([busy] * 6), merge=first_success, concurrent_tasks=None).execute(
        env=ENV
    )
    assert peak == 6
    assert Stage.concurrent(busy, merge=first_success).describe().details == {"concurrent_tasks": 2}


# Retry and fallback: what `catching` sees ------------------------------------


async def test_a_retry_predicate_sees_the_exception_a_model_raised() -> None:
    calls = 0

    def flaky(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    seen: list[Exception] = []

    def connection_errors(error: Exception) -> bool:
        seen.append(error)
        return isinstance(error, ConnectionError)

    retried = Stage.completion("q").with_retry(limit=3, catching=connection_errors)
    state = await retried.execute(env=Env.of(FunctionModel(flaky)))
    assert state.result.as_string() == "ok"
    assert [type(error) for error in seen] == [ConnectionError, ConnectionError]


async def test_a_retry_predicate_sees_a_model_failure_as_the_stage_exception() -> None:
    model = ScriptedModel(ModelFailure("rate_limited", "slow down"), "ok")
    retried = Stage.completion("q").with_retry(
        limit=1, catching=lambda error: isinstance(error, ModelRateLimitError)
    )
    state = await retried.execute(env=Env.of(model, VirtualClock()))
    assert state.result.as_string() == "ok"


async def test_fallback_catches_a_set_of_types() -> None:
    @stage
    async def broken(*, state: StageState) -> StageState:
        raise KeyError("missing")

    backup = Stage.transform_result(lambda content: MultimodalContent.of("backup"))
    caught = broken.with_fallback(backup, catching={ValueError, KeyError})
    assert (await caught.execute(env=ENV)).result.as_string() == "backup"
    missed = broken.with_fallback(backup, catching={ValueError, TypeError})
    assert isinstance((await missed.attempt(env=ENV)).failure().__cause__, KeyError)


# Router: options=, and one route runs without asking -------------------------


async def test_a_router_of_one_stage_runs_it_without_asking_anyone() -> None:
    def never(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
        raise AssertionError("a single route needs no routing")

    only = Stage.transform_result(lambda content: MultimodalContent.of("only"))
    assert (await Stage.router(only).execute(env=ENV)).result.as_string() == "only"  # no model
    routed = Stage.router(only, routing=never)
    assert (await routed.execute(env=ENV)).result.as_string() == "only"


# StageState: of, get(required=True), merged -----------------------------------


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


# Memory ------------------------------------------------------------------------


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


# Evaluation --------------------------------------------------------------------


async def test_result_evaluation_passes_or_fails_with_the_evaluation_in_meta() -> None:
    def by_length(result: MultimodalContent) -> EvaluatorResult:
        return EvaluatorResult.of("length", score=len(result.as_string()), threshold=4)

    state = StageState(result="abc")
    assert await Stage.result_evaluation(by_length).execute(state, env=ENV) == state  # draive
    passing = StageState(result="abcd")
    assert await Stage.result_evaluation(by_length, raises=True).execute(passing) == passing
    error = (await Stage.result_evaluation(by_length, raises=True).attempt(state)).failure()
    assert isinstance(error, EvaluationError)
    assert str(error) == "Result evaluation failed with relative score: 75.00%"
    assert error.meta["evaluation_performance"] == 75.0
    assert error.meta["evaluation_score"] == 3.0
    assert error.meta["evaluation_threshold"] == 4.0
    assert "length: score 3 against threshold 4, failed" in str(error.meta["evaluation_report"])
    assert error.state == state


async def test_context_evaluation_scores_the_context() -> None:
    async def enough_turns(context: ModelContext) -> EvaluatorResult:
        return EvaluatorResult.of("turns", score=len(context), threshold=2)

    judged = Stage.context_evaluation(enough_turns, raises=True)
    error = (await judged.attempt(StageState(context=(ModelInput.of("a"),)))).failure()
    assert isinstance(error, EvaluationError)
    assert error.message.startswith("Context evaluation failed with relative score: 50.00%")
    two = StageState(context=(ModelInput.of("a"), ModelOutput.of("b")))
    assert await judged.execute(two) == two
    assert judged.describe().kind == "context_evaluation"


async def test_an_evaluator_returning_no_evaluation_fails_clearly() -> None:
    def wrong(result: MultimodalContent) -> float:
        return 1.0

    error = (await Stage.result_evaluation(wrong).attempt()).failure()  # type: ignore[arg-type]  # the mistake under test
    assert isinstance(error, StageExecutionError)
    assert "score, threshold, passed" in str(error)


# with_ctx ----------------------------------------------------------------------


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


# tool_call ---------------------------------------------------------------------


@tool
async def weather(location: str) -> str:
    """The weather somewhere."""
    return f"sunny in {location}"


@tool(stop_on_error=True)
async def strict(location: str) -> str:
    """Fails, and stops the pipeline."""
    raise RuntimeError("no data")


async def test_tool_call_records_the_exchange_and_leaves_the_result() -> None:
    start = StageState(context=(ModelInput.of("hi"),), result="r")
    state = await Stage.tool_call(weather, location="Oslo").execute(start)
    request = ModelToolRequest("weather-1", "weather", {"location": "Oslo"})
    response = ModelToolResponse("weather-1", "weather", MultimodalContent.of("sunny in Oslo"))
    assert state.context == (
        ModelInput.of("hi"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(tool_responses=(response,)),
    )
    assert state.result.as_string() == "r"
    assert Stage.tool_call(weather, location="Oslo").meta.values == {"tool_call": "weather"}


async def test_tool_call_errors_are_responses_unless_the_tool_stops() -> None:
    bad = await Stage.tool_call(weather, place="Oslo").execute()  # type: ignore[call-overload]  # the mistake under test
    turn = bad.context[-1]
    assert isinstance(turn, ModelInput)
    assert turn.tool_responses[0].error
    stopped = (await Stage.tool_call(strict, location="x").attempt()).failure()
    assert isinstance(stopped, ToolError)
    assert isinstance(stopped.__cause__, RuntimeError)
    with pytest.raises(TypeError, match="keyword"):
        Stage.tool_call(weather, "Oslo")
    with pytest.raises(TypeError, match="@tool"):
        Stage.tool_call(len)  # type: ignore[call-overload]  # the mistake under test


# cached_externally -------------------------------------------------------------


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


# meta= and tags ----------------------------------------------------------------


async def test_constructors_and_stage_take_meta_as_with_meta_does() -> None:
    @stage(meta={"name": "tagger", "description": "Tags", "tags": ["t"], "owner": "me"})
    async def tagger(*, state: StageState) -> StageState:
        raise ValueError("no")

    assert tagger.meta == StageMeta("tagger", "Tags", {"owner": "me"}, ("t",))
    assert (await tagger.attempt()).failure().stage_path == ("tagger",)
    made = Stage.predefined("q", meta=StageMeta(name="question"))
    assert made.meta.name == "question"
    assert Stage.completion("hi", meta={"name": "c"}).meta.name == "c"
    assert Stage.noop.with_meta(tags=["a", "b"]).with_meta(name="n").meta.tags == ("a", "b")
    with pytest.raises(TypeError, match="tags"):
        StageMeta.of({"tags": "ab"})


# The OpenAI provider skips turns left with nothing to send ---------------------


async def test_openai_requests_skip_turns_emptied_of_tool_traffic() -> None:
    request = ModelToolRequest("c1", "lookup", {})
    context = (
        ModelInput.of("question"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(tool_responses=(ModelToolResponse("c1", "lookup", MultimodalContent.of("42")),)),
        ModelOutput.of("it is 42"),
    )
    stripped = (await Stage.strip_context_tools().execute(StageState(context=context))).context
    assert len(stripped) == 4
    chat = encode_chat(ModelRequest("", stripped), "m", {})
    assert chat["messages"] == [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "it is 42"},
    ]
    responses = encode_responses(ModelRequest("", stripped), "m", {})
    items = responses["input"]
    assert isinstance(items, list)
    assert [item.get("role") for item in items] == ["user", "assistant"]


async def test_loopback_replaces_from_the_last_input_and_skips_without_one() -> None:
    model = ScriptedModel("refined")
    context = (ModelInput.of("q"), ModelOutput.of("draft"), ModelOutput.of("second draft"))
    state = await Stage.loopback_completion().execute(
        StageState(context=context), env=Env.of(model)
    )
    assert state.context == (ModelInput.of("second draft"), ModelOutput.of("refined"))
    lone = StageState(context=(ModelOutput.of("hello"),))
    assert await Stage.loopback_completion().execute(lone, env=Env.of(model)) == lone

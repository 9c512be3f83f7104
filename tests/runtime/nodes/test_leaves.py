"""What each stage and modifier does, and what it refuses at construction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from returns.result import Failure, Success

from stagefx import (
    ArtifactContent,
    CacheStore,
    Env,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    MultimodalContent,
    RoutingError,
    Stage,
    StageException,
    StageExecutionError,
    StageMeta,
    StageState,
    TokenUsage,
    stage,
)
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


ENV = Env.of()


async def test_predefined_alternates_input_and_output_and_keeps_the_result() -> None:
    start = StageState(result="before")
    state = await Stage.predefined("question", "answer").execute(start, env=ENV)
    assert state.context == (ModelInput.of("question"), ModelOutput.of("answer"))
    assert state.result.as_string() == "before"  # draive: the result is left alone


async def test_predefined_content_after_an_explicit_turn_is_the_opposite_turn() -> None:
    state = await Stage.predefined(ModelOutput.of("hello"), "hi", "how can I help?").execute(
        env=ENV
    )
    assert state.context == (
        ModelOutput.of("hello"),
        ModelInput.of("hi"),
        ModelOutput.of("how can I help?"),
    )


async def test_predefined_with_only_inputs_keeps_the_result_unless_given() -> None:
    start = StageState(result="before")
    kept = await Stage.predefined(ModelInput.of("note")).execute(start, env=ENV)
    assert kept.result.as_string() == "before"
    given = await Stage.predefined(ModelInput.of("note"), result="set").execute(start, env=ENV)
    assert given.result.as_string() == "set"


async def test_transforms_accept_sync_and_async_callbacks() -> None:
    async def louder(content: MultimodalContent) -> MultimodalContent:
        return MultimodalContent.of(content.as_string().upper())

    pipeline = Stage.sequence(
        Stage.predefined("in", "out", result="out"),
        Stage.transform_result(lambda content: MultimodalContent.of("Transformed: ", content)),
        Stage.transform_result(louder),
        Stage.transform_context(lambda context: (*context, ModelInput.of("more"))),
    )
    state = await pipeline.execute(env=ENV)
    assert state.result.as_string() == "TRANSFORMED: OUT"
    assert state.context[-1] == ModelInput.of("more")


async def test_a_transform_returning_the_wrong_type_fails_clearly() -> None:
    bad = Stage.transform_result(lambda content: "not content")  # type: ignore[arg-type, return-value]  # the mistake under test
    outcome = await bad.attempt(env=ENV)
    assert isinstance(outcome, Failure)
    assert "must return MultimodalContent, got str" in str(outcome.failure())


async def test_custom_stage_exceptions_become_failures_with_cause_and_last_good_state() -> None:
    @stage
    async def explode(*, state: StageState) -> StageState:
        raise KeyError("missing")

    pipeline = Stage.sequence(
        Stage.predefined("a", "b", result="b"), explode.with_meta(name="explode")
    ).with_meta(name="pipeline")
    outcome = await pipeline.attempt(env=ENV)
    error = outcome.failure()
    assert isinstance(error, StageExecutionError)
    assert isinstance(error.__cause__, KeyError)
    assert error.stage_path == ("pipeline", "explode")
    assert error.state.result.as_string() == "b"
    assert str(error).startswith("[pipeline > explode] KeyError")
    with pytest.raises(StageExecutionError) as raised:
        await pipeline.execute(env=ENV)
    assert raised.value.stage_path == ("pipeline", "explode")


async def test_custom_stages_may_take_env_and_return_results() -> None:
    @stage
    async def reads_env(*, state: StageState, env: Env) -> StageState:
        return state.updated(result=env.name)

    @stage
    async def returns_result(*, state: StageState) -> Success[StageState]:
        return Success(state.updated(result="via Result"))

    @stage
    async def returns_failure(*, state: StageState) -> Failure[StageException]:
        return Failure(StageException("declined", state=state))

    assert (await reads_env.execute(env=Env.of(name="prod"))).result.as_string() == "prod"
    assert (await returns_result.execute(env=ENV)).result.as_string() == "via Result"
    failed = await returns_failure.attempt(env=ENV)
    assert failed.failure().message == "declined"


def test_stage_refuses_a_sync_function() -> None:
    def sync(*, state: StageState) -> StageState:
        return state

    with pytest.raises(TypeError, match="async function"):
        stage(sync)  # type: ignore[call-overload]  # the mistake under test


async def test_user_state_is_looked_up_by_type_and_replaced_by_type() -> None:
    @stage
    async def count(*, state: StageState) -> StageState:
        return state.updated(state.get(int, 0) + 1)

    state = await Stage.sequence(count, count, count).execute(StageState(values=("x",)), env=ENV)
    assert state.get(int) == 3
    assert state.get(str) == "x"
    assert state.get(float) is None


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


async def test_concurrent_merges_outcomes_in_branch_order_including_failures() -> None:
    received: list[str] = []

    async def merge(branches: Sequence[StageState | StageException]) -> StageState:
        received.extend(
            b.result.as_string() if isinstance(b, StageState) else f"error:{b.message}"
            for b in branches
        )
        successful = [b for b in branches if isinstance(b, StageState)]
        return successful[0].updated(result=MultimodalContent.of(*[s.result for s in successful]))

    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise RuntimeError("B down")

    fan = Stage.concurrent(
        Stage.transform_result(lambda content: MultimodalContent.of("A")),
        Stage.transform_result(refuse),
        Stage.transform_result(lambda content: MultimodalContent.of("C")),
        merge=merge,
    )
    state = await fan.execute(env=ENV)
    assert received == ["A", "error:RuntimeError: B down", "C"]
    assert state.result.as_string() == "AC"


async def test_router_runs_the_chosen_route_and_fails_on_an_unknown_one() -> None:
    first = Stage.predefined("q", "first", result="first").with_meta(
        name="first", description="the first"
    )
    second = Stage.predefined("q", "second", result="second").with_meta(
        name="second", description="the second", tags=["b"]
    )
    offered: list[Mapping[str, StageMeta]] = []

    def choose(name: str) -> Stage:
        def routing(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
            offered.append(options)
            return name

        return Stage.router(first, second, routing=routing)

    assert (await choose("second").execute(env=ENV)).result.as_string() == "second"
    assert offered[0] == {"first": first.meta, "second": second.meta}  # draive's `options`
    assert offered[0]["second"].tags == ("b",)
    assert (await choose(" SECOND").execute(env=ENV)).result.as_string() == "second"
    failure = (await choose("third").attempt(env=ENV)).failure()
    assert isinstance(failure, RoutingError)
    assert "'third'" in str(failure)


def test_router_refuses_unnamed_undescribed_and_duplicate_routes() -> None:
    named = Stage.noop.with_meta(name="a", description="A")

    def routing(*, state: StageState, options: object) -> str:
        return "a"

    with pytest.raises(ValueError, match="has no name"):
        Stage.router(named, Stage.noop, routing=routing)
    with pytest.raises(ValueError, match="has no description"):
        Stage.router(named, Stage.noop.with_meta(name="b"), routing=routing)
    with pytest.raises(ValueError, match="two routes are named 'a'"):
        Stage.router(named, named, routing=routing)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Stage.sequence(), "needs at least one stage"),
        (lambda: Stage.concurrent(merge=lambda branches: StageState.empty), "at least one stage"),
        (lambda: Stage.trim_context(limit=-1), r"trim_context\(limit=...\) needs an int >= 0"),
        (lambda: Stage.noop.with_retry(limit=-1), r"with_retry\(limit=...\) needs an int >= 0"),
        (lambda: Stage.noop.with_retry(delay=-2.0), "delay"),
        (lambda: Stage.noop.cached(limit=0), r"cached\(limit=...\) needs an int >= 1"),
        (lambda: Stage.noop.cached(expiration=0), "expiration"),
        (lambda: Stage.noop.with_timeout(0), "seconds > 0"),
        (lambda: Stage.noop.with_meta(name=""), "non-empty"),
        (
            lambda: Stage.concurrent(
                Stage.noop, merge=lambda b: StageState.empty, concurrent_tasks=0
            ),
            "concurrent_tasks",
        ),
        (
            lambda: Stage.loop(
                Stage.noop,
                condition=lambda *, state, iteration: True,
                mode="sometimes",  # type: ignore[arg-type]  # the mistake under test
            ),
            "post_check",
        ),
    ],
)
def test_bad_arguments_are_refused_at_construction(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Stage.noop.when("yes"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.noop.with_retry(catching="ValueError"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.sequence(Stage.noop, "stage"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.transform_result("upper"),  # type: ignore[arg-type]  # the mistake under test
    ],
)
def test_values_of_the_wrong_kind_are_refused_at_construction(build: object) -> None:
    assert callable(build)
    with pytest.raises(TypeError):
        build()


async def test_retry_waits_on_the_env_clock_and_catches_only_what_it_is_told() -> None:
    clock = VirtualClock()
    runs = 0

    @stage
    async def flaky(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        raise (ConnectionError if runs < 3 else ValueError)("down")

    outcome = await flaky.with_retry(
        limit=5, delay=lambda attempt, error: 2.0**attempt, catching=ConnectionError
    ).attempt(env=Env.of(clock))
    assert isinstance(outcome.failure().__cause__, ValueError)
    assert runs == 3
    assert clock.sleeps == [1.0, 2.0]
    assert clock.now() == 3.0


async def test_fallback_catching_a_predicate() -> None:
    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise PermissionError("no")

    primary = Stage.transform_result(refuse)
    backup = Stage.transform_result(lambda content: MultimodalContent.of("backup"))
    only_permission = primary.with_fallback(
        backup,
        catching=lambda error: isinstance(error, PermissionError),  # the original
    )
    assert (await only_permission.execute(env=ENV)).result.as_string() == "backup"
    never = primary.with_fallback(backup, catching=lambda error: False)
    assert isinstance(await never.attempt(env=ENV), Failure)


async def test_timeout_on_the_virtual_clock() -> None:
    from stagefx import StageTimeoutError

    clock = VirtualClock()

    @stage
    async def slow(*, state: StageState, env: Env) -> StageState:
        await env.clock.sleep(10)
        return state.updated(result="finished")

    late = await slow.with_timeout(5).attempt(env=Env.of(clock))
    assert isinstance(late.failure(), StageTimeoutError)
    assert clock.now() == 5.0
    in_time = await slow.with_timeout(20).execute(env=Env.of(clock))
    assert in_time.result.as_string() == "finished"


async def test_cached_expires_on_the_env_clock_and_keeps_at_most_limit_entries() -> None:
    clock = VirtualClock()
    runs: list[str] = []

    @stage
    async def counted(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state

    memo = counted.cached(limit=2, expiration=60)
    env = Env.of(clock)
    for text in ["a", "a", "b", "c", "a"]:
        await memo.execute(StageState(result=text), env=env)
    assert runs == ["a", "b", "c", "a"]  # "a" was evicted by "c"
    clock.advance(61)
    await memo.execute(StageState(result="a"), env=env)
    assert runs == ["a", "b", "c", "a", "a"]


async def test_cached_handles_states_with_unhashable_artifacts() -> None:
    runs = 0

    @stage
    async def counted(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        return state

    memo = counted.cached()
    state = StageState(
        result=MultimodalContent.of(ArtifactContent({"k": [1, 2]})), values=({"a": 1},)
    )
    await memo.execute(state, env=ENV)
    await memo.execute(StageState(result=state.result, values=({"a": 1},)), env=ENV)
    assert runs == 1


async def test_failures_are_not_cached() -> None:
    runs = 0

    @stage
    async def fails_once(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise TimeoutError("first")
        return state

    memo = fails_once.cached()
    assert isinstance(await memo.attempt(env=ENV), Failure)
    assert isinstance(await memo.attempt(env=ENV), Success)


def _tool_turns() -> tuple[ModelInput | ModelOutput, ...]:
    request = ModelToolRequest("call_1", "lookup", {"q": "x"})
    return (
        ModelInput.of("question"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(
            tool_responses=(ModelToolResponse("call_1", "lookup", MultimodalContent.of("42")),)
        ),
        ModelOutput.of("it is 42"),
    )


STRIPPED = (ModelInput.of("question"), ModelOutput(), ModelInput(), ModelOutput.of("it is 42"))
"""`_tool_turns()` without tool traffic: emptied turns stay (draive keeps the length)."""


async def test_strip_context_tools_empties_tool_turns_and_keeps_the_length() -> None:
    state = await Stage.strip_context_tools().execute(StageState(context=_tool_turns()), env=ENV)
    assert state.context == STRIPPED


async def test_volatile_tools_context_empties_only_the_tool_turns_it_added() -> None:
    earlier = _tool_turns()
    adds_tools = Stage.transform_context(lambda context: (*context, *_tool_turns()))
    state = await adds_tools.with_volatile_tools_context().execute(
        StageState(context=earlier), env=ENV
    )
    assert state.context == (*earlier, *STRIPPED)


async def test_trim_context_keeps_the_first_turns_a_slice_or_none() -> None:
    context = (ModelInput.of("old"), ModelOutput.of("old answer"), *_tool_turns())

    async def trimmed(limit: int | slice | None) -> tuple[ModelInput | ModelOutput, ...]:
        state = await Stage.trim_context(limit=limit).execute(StageState(context=context), env=ENV)
        return state.context

    assert await trimmed(10) == context
    assert await trimmed(2) == context[:2]  # draive: the first n
    assert await trimmed(0) == ()
    assert await trimmed(slice(-4, None)) == _tool_turns()
    assert await trimmed(slice(1, 3)) == context[1:3]
    assert await trimmed(None) == ()  # draive: None clears the context
    assert Stage.trim_context().describe().details == {"limit": "none"}
    assert Stage.trim_context(limit=slice(-2, None)).describe().details == {"limit": "[-2::]"}


async def test_with_meta_and_traced_record_a_named_span() -> None:
    from stagefx import RecordingTracer

    tracer = RecordingTracer()
    traced = Stage.noop.with_meta(name="step", description="does nothing", owner="me").traced()
    await traced.execute(env=Env.of(tracer))
    (span,) = tracer.spans
    assert (span.name, span.outcome, dict(span.attributes)) == ("step", "success", {"owner": "me"})


async def test_a_cache_store_in_the_env_is_shared_by_stages_with_the_same_key() -> None:
    from stagefx import MemoryCacheStore

    runs: list[str] = []

    @stage
    async def summarise(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state.updated(result="summary")

    store = MemoryCacheStore()
    env = Env.of(store)
    first = summarise.cached(key="summary")
    second = summarise.cached(key="summary")  # another stage value, e.g. another process
    unnamed = summarise.cached()
    for memo in (first, second, unnamed, unnamed):
        assert (
            await memo.execute(StageState(result="doc"), env=env)
        ).result.as_string() == "summary"
    assert runs == ["doc", "doc"]  # once for the named entries, once for the unnamed stage
    assert len(store) == 2


async def test_a_custom_cache_store_sees_expiry_on_the_env_clock() -> None:
    from collections.abc import Hashable

    kept: dict[Hashable, tuple[StageState, float]] = {}

    class DictStore(CacheStore):
        async def load(self, key: Hashable, now: float) -> StageState | None:
            hit = kept.get(key)
            return hit[0] if hit is not None and hit[1] > now else None

        async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
            kept[key] = (value, expires_at)

    clock = VirtualClock(start=100.0)
    memo = Stage.transform_result(lambda content: MultimodalContent.of("x")).cached(
        expiration=60, key="x"
    )
    await memo.execute(env=Env.of(DictStore(), clock))
    ((key, (value, expires_at)),) = kept.items()
    assert isinstance(key, tuple)
    assert key[0] == "x"
    assert (value.result.as_string(), expires_at) == ("x", 160.0)


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


async def test_a_cached_stage_under_retry_keeps_hitting_its_cache() -> None:
    calls: list[int] = []

    def answer(request: object) -> ModelOutput:
        calls.append(1)
        return ModelOutput(
            MultimodalContent.of(f"draft {len(calls)}"), usage=TokenUsage("m", 10, 5)
        )

    checked: list[int] = []

    @stage
    async def validate(*, state: StageState) -> StageState:
        checked.append(1)
        if len(checked) == 1:
            raise ValueError("first draft rejected")
        return state

    summarise = (
        Stage.sequence(Stage.completion("Summarise."), validate).cached().with_retry(limit=2)
    )
    env = Env.of(FunctionModel(answer), VirtualClock())
    results = [
        (await summarise.execute(StageState(result="doc"), env=env)).result.as_string()
        for _ in range(3)
    ]
    assert len(calls) == 2  # the rejected draft and the kept one; later runs hit the cache
    assert results == ["draft 2"] * 3

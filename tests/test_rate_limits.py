"""RateLimits: every model call under an Env, paced within requests and tokens
per minute, spread evenly, reconciled with reported usage, paused by a 429.

Deterministic: models record `clock.now()` on a `VirtualClock`; nothing waits
in real time (but for the HTTP of the one FakeOpenAIServer test).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections.abc import Callable, Sequence

import anyio
import attrs
import pytest

from stagefx import (
    Clock,
    Env,
    GenerativeModel,
    ImageContent,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRateLimitError,
    ModelRequest,
    ModelToolRequest,
    MultimodalContent,
    OutputSpec,
    Stage,
    StageException,
    StageExecutionError,
    StageState,
    SystemClock,
    TokenUsage,
    ToolSpec,
    tool,
)
from stagefx._rate_limits import DEFAULT_OUTPUT_TOKENS, IMAGE_TOKENS, RateLimits, estimate_tokens
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

RPM, TPM = 600, 60_000
"""10 requests and 1,000 tokens per one-second window."""
EPSILON = 1e-9


@attrs.frozen
class Sent:
    """One call as the model saw it: when, and the tokens it reported using."""

    at: float
    tokens: int


def busiest(sent: Sequence[Sent]) -> tuple[int, int]:
    """The most requests and the most tokens sent in any one-second window
    [t, t + 1): the busiest window starts at some call."""
    ordered = sorted(sent, key=lambda call: call.at)
    most_requests = most_tokens = 0
    for first, call in enumerate(ordered):
        window = [other for other in ordered[first:] if other.at < call.at + 1 - EPSILON]
        most_requests = max(most_requests, len(window))
        most_tokens = max(most_tokens, sum(other.tokens for other in window))
    return most_requests, most_tokens


def metered(
    clock: VirtualClock,
    limits: RateLimits,
    *,
    latency: float = 0.0,
    used: Callable[[int, int], int | None] = lambda index, estimate: estimate,
    fail: Callable[[int], ModelFailure | None] = lambda index: None,
) -> tuple[FunctionModel, list[Sent]]:
    """A model that records each call's time and the tokens it reports: `used(call
    index, estimate)` (None: no usage reported, the estimate stands)."""
    sent: list[Sent] = []
    counter = itertools.count()

    async def answer(request: ModelRequest) -> ModelOutput | ModelFailure:
        index = next(counter)
        estimate = limits.estimate(request)
        tokens = used(index, estimate)
        sent.append(Sent(clock.now(), estimate if tokens is None else tokens))
        if latency:
            await clock.sleep(latency)
        failed = fail(index)
        if failed is not None:
            return failed
        usage = None if tokens is None else TokenUsage("m", tokens - 10, 10)
        return ModelOutput(MultimodalContent.of("ok"), usage=usage)

    return FunctionModel(answer), sent


def sized(index: int) -> Stage:
    """A completion whose estimate is 60 to 170 tokens (20-79 input, 40-99 output)."""
    return Stage.completion("x" * 4 * (20 + index * 37 % 60), max_tokens=40 + index * 13 % 60)


async def run_all(stages: Sequence[Stage], env: Env) -> list[StageState | StageException]:
    """Every stage at once, as branches of one `Stage.concurrent`."""
    outcomes: list[StageState | StageException] = []

    def merge(branches: Sequence[StageState | StageException]) -> StageState:
        outcomes.extend(branches)
        return StageState.empty

    fan = Stage.concurrent(*stages, merge=merge, concurrent_tasks=len(stages))
    await fan.execute(env=env)
    return outcomes


# Spread evenly, without over-throttling -------------------------------------------


async def test_200_concurrent_completions_stay_within_a_sixtieth_per_second() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)
    model, sent = metered(clock, limits, latency=0.5)
    outcomes = await run_all([sized(index) for index in range(200)], Env.of(model, limits, clock))

    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    assert len(sent) == 200
    requests, tokens = busiest(sent)
    assert requests <= RPM // 60  # 10
    assert tokens <= TPM // 60  # 1,000
    # Not over-throttled: calls go out in whole-second waves (a wave's charges
    # expire together), and each wave took every call in line that fit: the
    # first call of the next wave would not have.
    waves: dict[float, list[Sent]] = {}
    for call in sent:
        waves.setdefault(call.at, []).append(call)
    assert list(waves) == [float(second) for second in range(len(waves))]
    for second in range(len(waves) - 1):
        wave, first_next = waves[float(second)], waves[float(second + 1)][0]
        assert len(wave) == 10 or sum(call.tokens for call in wave) + first_next.tokens > 1000
    # So the run takes about what the budgets allow (the first share being free at once).
    total = sum(call.tokens for call in sent)
    floor = max(200 / (RPM / 60), total / (TPM / 60)) - 1
    last = max(call.at for call in sent)
    # 22.72 <= 25.0 here; FIFO packing of any order of these calls gives 24 or 25.
    assert floor <= last <= floor * 1.15, (floor, last)
    assert tokens > 1000 - 170  # the busiest second is nearly full (1,000 here)


async def test_a_call_larger_than_a_seconds_share_goes_alone_and_pays_it_off() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)  # 1,000 a second
    model, sent = metered(clock, limits)
    big = Stage.completion("", max_tokens=2500)
    small = Stage.completion("", max_tokens=500)
    env = Env.of(model, limits, clock)
    for stage in (small, big, small, small):
        await stage.execute(env=env)
    # 500 at 0; 2,500 must wait for an empty window (1); it then counts for 2.5
    # seconds; the next 500 goes at 3.5, the last with it (1,000 fits).
    assert [call.at for call in sent] == [0.0, 1.0, 3.5, 3.5]


async def test_fewer_than_60_requests_a_minute_space_calls_out() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=30)
    model, sent = metered(clock, limits)
    env = Env.of(model, limits, clock)
    for _ in range(4):
        await Stage.completion("hi").execute(env=env)
    assert [call.at for call in sent] == [0.0, 2.0, 4.0, 6.0]


# Reconciliation --------------------------------------------------------------------


async def paced(used: Callable[[int, int], int | None]) -> list[float]:
    """Times at which 12 calls estimated at 500 tokens go out, one after another."""
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    model, sent = metered(clock, limits, used=used)
    env = Env.of(model, limits, clock)
    stage = Stage.completion("", max_tokens=500)
    assert limits.estimate(ModelRequest("", (ModelInput.of(""),), extra={"max_tokens": 500})) == 500
    for _ in range(12):
        await stage.execute(env=env)
    return [call.at for call in sent]


async def test_reported_usage_below_the_estimate_lets_later_calls_go_sooner() -> None:
    estimated = await paced(lambda index, estimate: None)  # no usage: estimates stand
    reconciled = await paced(lambda index, estimate: 100)  # each gives 400 back
    # Estimates alone: two calls of 500 a second. Given back: the window holds
    # 100 per call sent, so six fit (5 x 100 + 500 <= 1,000) before the next wait.
    assert estimated == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]
    assert reconciled == [0.0] * 6 + [1.0] * 6
    assert reconciled[-1] < estimated[-1]


async def test_a_give_back_lets_the_next_in_line_go_at_once() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)  # 1,000 a second
    model, sent = metered(clock, limits, latency=0.5, used=lambda index, estimate: 100)
    env = Env.of(model, limits, clock)
    stage = Stage.completion("", max_tokens=600)
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(functools.partial(stage.execute, env=env))
    # The second waits for room; the first's answer at 0.5 gives 500 back, and
    # the second goes then, not when the first's charge expires at 1.
    assert [call.at for call in sent] == [0.0, 0.5, 1.0]


async def test_reported_usage_above_the_estimate_takes_the_difference() -> None:
    overshot = await paced(lambda index, estimate: 900)  # each takes 400 more
    # 900 in the window: the next 500 waits for it to expire.
    assert overshot == [float(second) for second in range(12)]


async def test_overshoot_of_the_estimate_is_bounded_by_one_call() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)

    def used(index: int, estimate: int) -> int:  # every third call uses 40 more
        return estimate + 40 if index % 3 == 0 else estimate - 20

    model, sent = metered(clock, limits, used=used)
    stages = [Stage.completion("x" * 240, max_tokens=40) for _ in range(120)]  # 100 each
    outcomes = await run_all(stages, Env.of(model, limits, clock))
    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    # Each call is admitted against what the earlier ones really used, so a
    # second holds at most 1,000 plus its last call's overshoot: here 140 +
    # 80 + 80 + ... + 140 = 1,040 (the tenth call fits at 900 and uses 140).
    assert busiest(sent) == (10, 1040)
    assert max(call.at for call in sent) == 11.0


# A 429 pauses everyone ---------------------------------------------------------------


async def test_a_429_storm_pauses_every_caller_and_with_retry_every_item_completes() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)
    storm = 15
    answered_429: list[float] = []

    def fail(index: int) -> ModelFailure | None:
        if index < storm:
            answered_429.append(clock.now())
            return ModelFailure("rate_limited", "slow down", retry_after=5)
        return None

    model, sent = metered(clock, limits, latency=0.2, fail=fail)
    items = [
        Stage.completion(f"item {index}", max_tokens=50).with_retry(limit=5) for index in range(30)
    ]
    outcomes = await run_all(items, Env.of(model, limits, clock))

    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    assert len(sent) == 30 + storm
    # Ten go at 0 and are refused at 0.2: nobody sends until 5.2; ten go then,
    # five are refused at 5.4: nobody sends until 10.4; then ten a second.
    assert sorted(set(answered_429)) == pytest.approx([0.2, 5.4])
    for start in answered_429:
        assert not [call for call in sent if start < call.at < start + 5 - EPSILON]
    waves = [0.0] * 10 + [5.2] * 10 + [10.4] * 10 + [11.4] * 10 + [12.4] * 5
    assert [call.at for call in sent] == pytest.approx(waves)
    assert busiest(sent)[0] == 10


async def test_the_429_reaches_its_caller_and_the_pause_is_capped() -> None:
    clock = VirtualClock()
    limits = RateLimits(max_pause=2.0)  # no budgets: only the shared pause
    answers = iter([ModelFailure("rate_limited", "slow down", retry_after=30), None, None])
    model, sent = metered(clock, limits, fail=lambda index: next(answers))
    env = Env.of(model, limits, clock)

    refused = (await Stage.completion("a").attempt(env=env)).failure()
    assert isinstance(refused, ModelRateLimitError)
    assert refused.retry_after == 30
    assert limits.paused_until() == 2.0
    await Stage.completion("b").execute(env=env)
    assert [call.at for call in sent] == [0.0, 2.0]


async def test_a_429_without_retry_after_pauses_everyone_one_second() -> None:
    clock = VirtualClock()
    limits = RateLimits()
    answers = iter([ModelFailure("rate_limited", "slow down"), None])
    model, sent = metered(clock, limits, fail=lambda index: next(answers))
    env = Env.of(model, limits, clock)
    assert (await Stage.completion("a").attempt(env=env)).failure() is not None
    await Stage.completion("b").execute(env=env)
    assert [call.at for call in sent] == [0.0, 1.0]


# Cancellation -----------------------------------------------------------------------


async def test_cancelled_waiters_leave_no_task_and_take_no_budget() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=60, tokens_per_minute=6000)  # 1 and 100 a second
    model, sent = metered(clock, limits)
    env = Env.of(model, limits, clock)
    stage = Stage.completion("", max_tokens=60)
    before = len(anyio.get_running_tasks())

    await stage.execute(env=env)  # at 0: the second's request, and 60 tokens
    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(functools.partial(stage.execute, env=env))  # each waits for t=1
        await clock.sleep(0.5)  # wakes before them
        group.cancel_scope.cancel()

    assert len(anyio.get_running_tasks()) == before
    assert [call.at for call in sent] == [0.0]
    # Nothing leaked either way: the next call goes when the first expires, as
    # if the waiters never were, and finds the whole second's budget.
    await Stage.completion("", max_tokens=100).execute(env=env)
    await stage.execute(env=env)
    assert [call.at for call in sent] == [0.0, 1.0, 2.0]


class HookedClock(Clock):
    """A VirtualClock that runs `on_wake` in the sleeper's task as it wakes."""

    def __init__(self) -> None:
        self.virtual = VirtualClock()
        self.on_wake: Callable[[], object] = lambda: None

    def now(self) -> float:
        return self.virtual.now()

    async def sleep(self, seconds: float) -> None:
        await self.virtual.sleep(seconds)
        self.on_wake()


async def test_a_caller_admitted_then_cancelled_before_it_runs_gives_its_charge_back() -> None:
    clock = HookedClock()
    limits = RateLimits(tokens_per_minute=6000)  # 100 a second
    times: dict[str, float] = {}
    late = anyio.CancelScope()

    def answer(request: ModelRequest) -> str:
        times[request.instructions] = clock.now()
        return "ok"

    env = Env.of(FunctionModel(answer), limits, clock)

    def asking(name: str, tokens: int) -> Stage:  # the name is one token of them
        return Stage.completion("", instructions=name, max_tokens=tokens - 1)

    async def b() -> None:
        with late:
            await asking("b", 40).execute(env=env)

    await asking("x", 100).execute(env=env)  # the first second's whole share
    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(asking("a", 40).execute, env=env))
        await clock.sleep(0.5)  # a is first in line, waiting for 1
        clock.on_wake = late.cancel  # as a wakes at 1, b is cancelled ...
        group.start_soon(b)
    clock.on_wake = lambda: None
    # ... and a, first in line, admits a and b together (40 + 40 fit) before b
    # runs. b never sends: its 40 come back, and c fits beside a (40 + 60 = 100).
    await asking("c", 60).execute(env=env)
    assert times == {"x": 0.0, "a": 1.0, "c": 1.0}
    assert late.cancelled_caught


async def test_waiters_are_served_in_fifo_order_without_overtaking() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=60, tokens_per_minute=6000)  # 1 and 100 a second
    order: list[tuple[str, float]] = []

    def answer(request: ModelRequest) -> str:
        order.append((request.instructions, clock.now()))
        return "ok"

    env = Env.of(FunctionModel(answer), limits, clock)
    async with anyio.create_task_group() as group:
        for name in "abcdef":
            stage = Stage.completion("", instructions=name, max_tokens=9)
            group.start_soon(functools.partial(stage.execute, env=env))
            await clock.sleep(0.1)
    assert order == [(name, float(second)) for second, name in enumerate("abcdef")]

    # A small call behind a big one waits its turn, though it would fit now.
    tokens = RateLimits(tokens_per_minute=6000)
    order.clear()
    env = Env.of(FunctionModel(answer), tokens, clock)
    start = clock.now()
    await Stage.completion("", instructions="x", max_tokens=49).execute(env=env)  # 50
    async with anyio.create_task_group() as group:
        for name, size in (("big", 80), ("small", 10)):
            stage = Stage.completion("", instructions=name, max_tokens=size - 1)
            group.start_soon(functools.partial(stage.execute, env=env))
            await clock.sleep(0.1)
    assert order == [("x", start), ("big", start + 1), ("small", start + 1)]


# Every call under the Env ----------------------------------------------------------------


async def test_tool_rounds_and_retries_are_paced_too() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=60)
    times: list[float] = []

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return "sunny"

    asks_for_the_tool = ModelOutput.of(
        tool_requests=(ModelToolRequest("c1", "lookup", {"query": "q"}),)
    )
    script: list[ModelOutput | ModelFailure] = [
        asks_for_the_tool,
        ModelFailure("unavailable", "down"),  # the second round fails: retried
        asks_for_the_tool,
        ModelOutput.of("done"),
    ]

    def answer(request: ModelRequest) -> ModelOutput | ModelFailure:
        times.append(clock.now())
        return script[len(times) - 1]

    env = Env.of(FunctionModel(answer), limits, clock)
    stage = Stage.completion("weather?", tools=[lookup]).with_retry(limit=1)
    state = await stage.execute(env=env)
    assert state.result.as_string() == "done"
    # Round 1 at 0, round 2 (refused) at 1, the retry's rounds at 2 and 3.
    assert times == [0.0, 1.0, 2.0, 3.0]


async def test_a_tokenizer_counts_the_input_exactly() -> None:
    counted: list[ModelRequest] = []

    def tokenizer(request: ModelRequest) -> int:
        counted.append(request)
        return 7

    limits = RateLimits(tokens_per_minute=TPM, tokenizer=tokenizer)
    request = ModelRequest("x" * 4000, (), extra={"max_output_tokens": 3})
    assert limits.estimate(request) == 10
    assert counted == [request]

    broken = RateLimits(tokens_per_minute=TPM, tokenizer=lambda request: -1)
    env = Env.of(FunctionModel(lambda request: "ok"), broken, VirtualClock())
    failed = (await Stage.completion("hi").attempt(env=env)).failure()
    assert isinstance(failed, StageExecutionError)
    assert isinstance(failed.__cause__, ValueError)
    assert "tokenizer must return an int >= 0" in str(failed.__cause__)


async def test_the_estimate_formula() -> None:
    schema = {"type": "object"}  # {"type":"object"}: 17 characters
    request = ModelRequest(
        "i" * 10,
        (
            ModelInput(MultimodalContent.of("u" * 20, ImageContent.of_url("https://x/cat.png"))),
            ModelOutput.of("o" * 5, tool_requests=(ModelToolRequest("c", "look", {"q": 1}),)),
        ),
        tools=(ToolSpec("look", "d" * 3, schema),),
        output=OutputSpec(mode="schema", schema=schema),
    )
    # 10 + 20 + 5 + (4 + 7) + (4 + 3 + 17) + 17 = 87 characters: 22 tokens
    assert estimate_tokens(request) == 22 + IMAGE_TOKENS + DEFAULT_OUTPUT_TOKENS
    for key in ("max_output_tokens", "max_completion_tokens", "max_tokens"):
        limited = attrs.evolve(request, extra={key: 5})
        assert estimate_tokens(limited) == 22 + IMAGE_TOKENS + 5


# Arguments, clocks, event loops ---------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.5, "10", math.inf])
async def test_budgets_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimits(requests_per_minute=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens_per_minute"):
        RateLimits(tokens_per_minute=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, "1", None])
async def test_max_pause_must_be_finite_seconds(bad: object) -> None:
    with pytest.raises(ValueError, match="max_pause"):
        RateLimits(max_pause=bad)  # type: ignore[arg-type]


async def test_good_arguments_are_kept() -> None:
    with pytest.raises(TypeError, match="tokenizer"):
        RateLimits(tokenizer=5)  # type: ignore[arg-type]
    limits = RateLimits(1, 2, max_pause=0)
    assert (limits.requests_per_minute, limits.tokens_per_minute, limits.max_pause) == (1, 2, 0.0)
    assert repr(limits) == "RateLimits(requests_per_minute=1, tokens_per_minute=2)"
    assert RateLimits.place == "pacing"


async def test_one_rate_limits_refuses_two_clocks() -> None:
    limits = RateLimits(requests_per_minute=RPM)
    model = FunctionModel(lambda request: "ok")
    await Stage.completion("a").execute(env=Env.of(model, limits, VirtualClock()))
    failed = (
        await Stage.completion("b").attempt(env=Env.of(model, limits, VirtualClock()))
    ).failure()
    assert isinstance(failed, StageExecutionError)
    assert "different clocks" in str(failed.__cause__)
    # Any two SystemClocks tell the same time.
    shared = RateLimits(requests_per_minute=RPM)
    for _ in range(2):
        await Stage.completion("c").execute(env=Env.of(model, shared, SystemClock()))


async def test_no_model_under_the_limits_is_a_missing_model() -> None:
    outcome = await Stage.completion("a").attempt(env=Env.of(RateLimits(), VirtualClock()))
    assert "no GenerativeModel" in str(outcome.failure())


def test_one_rate_limits_serves_one_event_loop_after_another() -> None:
    limits = RateLimits(requests_per_minute=6000)
    model = FunctionModel(lambda request: "ok")

    async def burst() -> None:
        env = Env.of(model, limits)
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(functools.partial(Stage.completion("hi").execute, env=env))

    anyio.run(burst, backend="asyncio")
    anyio.run(burst, backend="trio")
    assert len(model.requests) == 6


# Against a real HTTP server --------------------------------------------------------------


class IdleClock(Clock):
    """Virtual time for a test with real I/O: it moves only while no HTTP call
    is in flight, so the server sees each request at the time it was sent."""

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, int]] = []
        self._order = itertools.count()
        self.in_flight = 0

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        entry = (self._now + max(seconds, 0.0), next(self._order))
        heapq.heappush(self._sleepers, entry)
        try:
            quiet = 0
            while quiet < 3:  # next by deadline, with nothing in flight, three polls running
                await anyio.sleep(0.001)  # real time: lets the HTTP traffic move
                idle = self.in_flight == 0 and self._sleepers[0] is entry
                quiet = quiet + 1 if idle else 0
        finally:
            self._sleepers.remove(entry)
            heapq.heapify(self._sleepers)
        self._now = max(self._now, entry[0])


class Counted(GenerativeModel):
    """The real provider, counting the calls in flight for the clock."""

    def __init__(self, inner: GenerativeModel, clock: IdleClock) -> None:
        self.inner = inner
        self.clock = clock

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        self.clock.in_flight += 1
        try:
            return await self.inner.generate(request, env)
        finally:
            self.clock.in_flight -= 1


async def test_the_server_never_sees_more_than_allowed_in_any_window() -> None:
    from stagefx.openai import OpenAI, OpenAIChatConfig
    from stagefx.testing import FakeOpenAIServer

    clock = IdleClock()
    arrived: list[Sent] = []

    def answer(request: ModelRequest) -> str | ModelFailure:
        arrived.append(Sent(clock.now(), 0))
        if len(arrived) <= 3:  # sent as a real 429 with "Retry-After: 2"
            return ModelFailure("rate_limited", "slow down", retry_after=2)
        return "ok"

    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)
    items = [Stage.completion(f"item {index}").with_retry(limit=3) for index in range(40)]
    with FakeOpenAIServer(answer) as server:
        async with OpenAI(api_key="sk-test-0123456789", base_url=server.base_url) as provider:
            env = Env.of(OpenAIChatConfig(model="m"), Counted(provider, clock), limits, clock)
            outcomes = await run_all(items, env)
        statuses = len(server.requests)

    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    assert statuses == 43  # 40 items and the 3 refused first tries
    # Each call is estimated at 258 tokens (a few characters, and 256 for the
    # output), so three fit the first second; the server refuses them, which
    # pauses everyone until 2; from then the answers report 3 tokens used,
    # giving the rest back, and the requests budget binds: ten a second.
    times = [call.at for call in arrived]
    assert times == [0.0] * 3 + [2.0] * 10 + [3.0] * 10 + [4.0] * 10 + [5.0] * 10
    assert busiest(arrived)[0] == 10

"""RateLimits: every model call under an Env, paced within requests and tokens
per minute, spread evenly, reconciled with reported usage, paused by a 429,
and held when a provider's rate-limit hint says less is left than its own
budget would send (never loosened by one).

Deterministic: models record `clock.now()` on a `VirtualClock`; nothing waits
in real time (but for the HTTP of the one FakeOpenAIServer test).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    RateLimitHint,
    Stage,
    StageException,
    StageExecutionError,
    StageState,
    SystemClock,
    TokenUsage,
    ToolSpec,
    tool,
)
from stagefx._codec import decode_answer, encode_answer
from stagefx._model.rate_limits import (
    DEFAULT_OUTPUT_TOKENS,
    IMAGE_TOKENS,
    RateLimits,
    _Timeline,  # pyright: ignore[reportPrivateUsage]  # its arithmetic, seen directly
    estimate_tokens,
)
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

RPM, TPM = 600, 60_000
"""A request every 0.1 s, a token every millisecond: 10 and 1,000 a second."""
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


# Spaced, not in bursts, without over-throttling -------------------------------------


def spacing(rpm: int | None, tpm: int | None, tokens: int) -> float:
    """Seconds a call of `tokens` holds the budgets before the next may go."""
    return max(0.0 if rpm is None else 60 / rpm, 0.0 if tpm is None else tokens * 60 / tpm)


async def test_200_concurrent_completions_are_spaced_within_a_sixtieth_per_second() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)
    model, sent = metered(clock, limits, latency=0.5)
    outcomes = await run_all([sized(index) for index in range(200)], Env.of(model, limits, clock))

    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    assert len(sent) == 200
    requests, tokens = busiest(sent)
    assert requests <= RPM // 60  # 10
    assert tokens <= TPM // 60 + 170  # 1,000, and the last call's (170 at most)
    # Spaced: each call goes exactly when the one before has held the budgets
    # long enough, 0.1 s (a request) or its tokens' share, whichever is longer.
    # (Per-second windows sent whole waves at once: ten calls at 0, ten at 1.)
    # So nothing is over-throttled either: the run takes what the budgets allow.
    for before, call in itertools.pairwise(sent):
        assert call.at - before.at == pytest.approx(spacing(RPM, TPM, before.tokens))
    assert len({call.at for call in sent}) == 200  # no two calls at once


async def test_a_call_larger_than_a_seconds_share_holds_the_budget_for_its_tokens() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)  # 1,000 a second
    model, sent = metered(clock, limits)
    big = Stage.completion("", max_tokens=2500)
    small = Stage.completion("", max_tokens=500)
    env = Env.of(model, limits, clock)
    for stage in (small, big, small, small):
        await stage.execute(env=env)
    # 500 at 0 holds the budget for 0.5 s; 2,500 then holds it for 2.5 s; each
    # 500 after it for 0.5 s. (Per-second windows sent the last two together.)
    assert [call.at for call in sent] == [0.0, 0.5, 3.0, 3.5]


async def test_request_budgets_that_are_not_multiples_of_60_are_spaced_exactly() -> None:
    for rpm, spaced in ((30, [0.0, 2.0, 4.0, 6.0]), (90, [0.0, 2 / 3, 4 / 3, 2.0])):
        clock = VirtualClock()
        limits = RateLimits(requests_per_minute=rpm)
        model, sent = metered(clock, limits)
        env = Env.of(model, limits, clock)
        for _ in range(4):
            await Stage.completion("hi").execute(env=env)
        # 90 a minute: every 2/3 s (per-second windows rounded it down to 60).
        assert [call.at for call in sent] == pytest.approx(spaced)


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
    # Estimates alone: a call of 500 every 0.5 s. Given back before the next
    # call: each holds the budget only for the 100 it used, 0.1 s. (Per-second
    # windows sent two at 0, two at 1, ...; and six at 0, six at 1.)
    assert estimated == pytest.approx([0.5 * index for index in range(12)])
    assert reconciled == pytest.approx([0.1 * index for index in range(12)])


async def test_a_give_back_lets_the_next_in_line_go_at_once() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)  # 1,000 a second
    model, sent = metered(clock, limits, latency=0.5, used=lambda index, estimate: 100)
    env = Env.of(model, limits, clock)
    stage = Stage.completion("", max_tokens=600)
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(functools.partial(stage.execute, env=env))
    # The second waits for 0.6; the first's answer at 0.5 gives 500 back, and
    # the second goes then; the third likewise at 1.0, not at 1.1.
    assert [call.at for call in sent] == [0.0, 0.5, 1.0]


async def test_a_give_back_never_lets_calls_bunch_up_behind_later_ones() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)  # 1,000 a second: a token a millisecond
    times: dict[str, float] = {}

    async def answer(request: ModelRequest) -> ModelOutput:
        name = request.instructions
        times[name] = clock.now()
        if name in ("L1", "L2"):  # answers late, having used 1 token of 450
            await clock.sleep(1.55 if name == "L1" else 1.62)
            return ModelOutput(MultimodalContent.of("ok"), usage=TokenUsage("m", 0, 1))
        return ModelOutput(MultimodalContent.of("ok"), usage=TokenUsage("m", 0, 100))

    env = Env.of(FunctionModel(answer), limits, clock)

    def asking(name: str, tokens: int) -> Stage:  # the name is one token of them
        return Stage.completion("", instructions=name, max_tokens=tokens - 1)

    stages = [asking("L1", 450), asking("L2", 450)]
    stages += [asking(f"s{index:02}", 100) for index in range(12)]
    async with anyio.create_task_group() as group:
        for stage in stages:  # joining the line in this order
            group.start_soon(functools.partial(stage.execute, env=env))
            await clock.sleep(0.001)
    # L1 at 0 and L2 at 0.45 hold the budget until 0.9; then a call of 100
    # every 0.1 s. Their answers (at 1.55 and 2.07) give back 449 each,
    # but for time already spent: pulling the budget's time back would send
    # calls early, on top of the ones that went since (twelve, not ten, in a
    # second). So the small calls stay 0.1 s apart.
    small = [times[f"s{index:02}"] for index in range(12)]
    assert small == pytest.approx([0.9 + 0.1 * index for index in range(12)])


async def test_reported_usage_above_the_estimate_takes_the_difference() -> None:
    overshot = await paced(lambda index, estimate: 900)  # each takes 400 more
    # Each call holds the budget for the 900 it used: 0.9 s. (Per-second
    # windows: one a second, 900 in each window.)
    assert overshot == pytest.approx([0.9 * index for index in range(12)])


async def test_overshoot_of_the_estimate_is_bounded_by_one_call() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)

    def used(index: int, estimate: int) -> int:  # every third call uses 40 more
        return estimate + 40 if index % 3 == 0 else estimate - 20

    model, sent = metered(clock, limits, used=used)
    stages = [Stage.completion("x" * 240, max_tokens=40) for _ in range(120)]  # 100 each
    outcomes = await run_all(stages, Env.of(model, limits, clock))
    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    # Each call answers before the next goes, so each holds the budgets for
    # what it really used: 140 tokens for 0.14 s, 80 for a request's 0.1 s.
    # A second holds 140 + 80 + 80 + 140 + ... = 900 (per-second windows let
    # 1,040 through: the tenth call fit at 900 and used 140).
    for before, call in itertools.pairwise(sent):
        assert call.at - before.at == pytest.approx(spacing(RPM, TPM, before.tokens))
    assert busiest(sent) == (9, 900)
    assert max(call.at for call in sent) == pytest.approx(40 * 0.14 + 79 * 0.1)


# Any rates, any calls: never more than a sixtieth plus one ---------------------------


@attrs.frozen
class Call:
    """One call of a drawn workload: when it joins, its size, how long its
    answer takes, and what it reports using (at most its estimate)."""

    joins: float
    output: int
    latency: float
    used: int


workload = st.tuples(
    st.one_of(st.none(), st.integers(1, 3000)),  # requests per minute
    st.one_of(st.none(), st.integers(60, 120_000)),  # tokens per minute
    st.lists(
        st.builds(
            Call,
            joins=st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0, 2.5]),
            output=st.integers(0, 3000),
            latency=st.sampled_from([0.0, 0.0, 0.04, 0.25, 1.3, 4.0]),
            used=st.integers(1, 3000),
        ),
        min_size=1,
        max_size=40,
    ),
).filter(lambda drawn: drawn[0] is not None or drawn[1] is not None)


async def admitted(rpm: int | None, tpm: int | None, calls: Sequence[Call]) -> list[Sent]:
    """When each of `calls` went out under the limits, with the tokens it used."""
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=rpm, tokens_per_minute=tpm)
    sent: list[Sent] = []

    async def answer(request: ModelRequest) -> ModelOutput:
        call = calls[int(request.instructions)]
        used = min(call.used, max(limits.estimate(request), 1))
        sent.append(Sent(clock.now(), used))
        await clock.sleep(call.latency)
        return ModelOutput(MultimodalContent.of("ok"), usage=TokenUsage("m", 0, used))

    env = Env.of(FunctionModel(answer), limits, clock)

    async def run(index: int, call: Call) -> None:
        await clock.sleep(call.joins)
        await Stage.completion("", instructions=str(index), max_tokens=call.output).execute(env=env)

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    assert len(sent) == len(calls)
    return sent


def windows(sent: Sequence[Sent], width: float) -> list[list[Sent]]:
    """The calls in each window [t, t + width) that starts at a call."""
    ordered = sorted(sent, key=lambda call: call.at)
    return [
        [other for other in ordered[first:] if other.at < call.at + width - EPSILON]
        for first, call in enumerate(ordered)
    ]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None)
@given(drawn=workload)
def test_no_one_second_window_holds_more_than_a_sixtieth_and_one_call(
    backend: str, drawn: tuple[int | None, int | None, list[Call]]
) -> None:
    rpm, tpm, calls = drawn
    sent = anyio.run(admitted, rpm, tpm, calls, backend=backend)
    for window in windows(sent, 1.0):
        if rpm is not None:
            assert len(window) <= rpm / 60 + 1
        if tpm is not None:  # what went before the window's last call fits the share
            assert sum(call.tokens for call in window[:-1]) <= tpm / 60 + EPSILON
            assert sum(call.tokens for call in window) <= tpm / 60 + max(
                call.tokens for call in window
            )
    # And nothing is held longer than the estimates ask: the last call went
    # no later than the last join plus every call's spacing at its estimate.
    estimates = [max(len(str(index)) + call.output, 1) for index, call in enumerate(calls)]
    longest = max(call.joins for call in calls) + sum(
        spacing(rpm, tpm, estimate) for estimate in estimates
    )
    assert max(call.at for call in sent) <= longest + 1e-6


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=150, deadline=None)
@given(
    rpm=st.integers(60, 1500),
    joins=st.lists(st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0, 2.5]), min_size=2, max_size=50),
    jitter=st.floats(0.0, 0.9),
    delays=st.lists(st.floats(0.0, 1.0), min_size=50, max_size=50),
)
def test_a_server_with_latency_jitter_sees_the_share_plus_one_and_the_jitters_worth(
    backend: str, rpm: int, joins: list[float], jitter: float, delays: list[float]
) -> None:
    calls = [Call(joins=at, output=0, latency=0.0, used=1) for at in joins]
    sent = anyio.run(admitted, rpm, None, calls, backend=backend)
    # Each call reaches the server after a latency of 0 to `jitter` s, drawn.
    arrived = [Sent(call.at + jitter * delay, 1) for call, delay in zip(sent, delays, strict=False)]
    # A server second holds what the client sent in 1 + jitter seconds: at
    # most (1 + jitter) sixtieths plus one. So with jitter under the spacing
    # (60 / rpm) and rpm a multiple of 60, a sixtieth plus one, as at the
    # client. (Per-second windows reached two sixtieths with any jitter at
    # all: the wave sent at t arriving late, the wave at t + 1 early.) No
    # pacing that uses the whole budget keeps a server second to a sixtieth
    # plus one under any jitter: what is sent in 1 + jitter seconds may
    # arrive within one.
    share = rpm / 60
    for window in windows(arrived, 1.0):
        assert len(window) <= (1 + jitter) * share + 1 + EPSILON
        if rpm % 60 == 0 and jitter < 60 / rpm:
            assert len(window) <= share + 1


async def test_a_429_storm_pauses_every_caller_and_with_retry_every_item_completes() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=RPM, tokens_per_minute=TPM)
    storm = 5
    answered_429: list[float] = []

    def fail(index: int) -> ModelFailure | None:
        if index < storm:
            answered_429.append(clock.now())
            return ModelFailure("rate_limited", "slow down", retry_after=5)
        return None

    model, sent = metered(clock, limits, latency=0.15, fail=fail)
    items = [
        Stage.completion(f"item {index}", max_tokens=50).with_retry(limit=5) for index in range(30)
    ]
    outcomes = await run_all(items, Env.of(model, limits, clock))

    assert all(isinstance(outcome, StageState) for outcome in outcomes)
    assert len(sent) == 30 + storm
    # Calls go 0.1 s apart; each answers 0.15 s after it went, so two are out
    # before a refusal: 0 and 0.1 are refused at 0.15 and 0.25, and nobody
    # sends until 5.25; likewise 5.25 and 5.35; then 10.5 (refused at 10.65)
    # and 10.6; nobody sends until 15.65, then a call every 0.1 s.
    # (Per-second windows sent ten at once, at 0, 5.2, 10.4, and after.)
    assert answered_429 == pytest.approx([0.15, 0.25, 5.4, 5.5, 10.65])
    for start in answered_429:
        assert not [call for call in sent if start < call.at < start + 5 - EPSILON]
    waves = [0.0, 0.1, 5.25, 5.35, 10.5, 10.6] + [15.65 + 0.1 * index for index in range(29)]
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

    await stage.execute(env=env)  # at 0: the requests budget's until 1, the tokens' until 0.6
    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(functools.partial(stage.execute, env=env))  # each waits for t=1
        await clock.sleep(0.5)  # wakes before them
        group.cancel_scope.cancel()

    assert len(anyio.get_running_tasks()) == before
    assert [call.at for call in sent] == [0.0]
    # Nothing leaked either way: the next call goes at 1, as if the waiters
    # never were, and holds the budgets for a second (100 tokens), as alone.
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


async def test_a_caller_admitted_then_cancelled_before_it_runs_sends_nothing() -> None:
    clock = HookedClock()
    limits = RateLimits()  # no budgets: after a pause, everyone in line goes at once
    times: dict[str, float] = {}
    late = anyio.CancelScope()

    def answer(request: ModelRequest) -> ModelOutput | ModelFailure:
        times[request.instructions] = clock.now()
        if request.instructions == "x":
            return ModelFailure("rate_limited", "slow down", retry_after=1)
        return ModelOutput.of("ok")

    env = Env.of(FunctionModel(answer), limits, clock)

    async def b() -> None:
        with late:
            await Stage.completion("", instructions="b").execute(env=env)

    assert (await Stage.completion("", instructions="x").attempt(env=env)).failure() is not None
    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(Stage.completion("", instructions="a").execute, env=env))
        await clock.sleep(0.5)  # a is first in line, waiting for the pause to end at 1
        clock.on_wake = late.cancel  # as a wakes at 1, b is cancelled ...
        group.start_soon(b)
    clock.on_wake = lambda: None
    # ... and a, first in line, admits a and b together before b runs: b
    # never sends, and the line goes on without it.
    await Stage.completion("", instructions="c").execute(env=env)
    assert times == {"x": 0.0, "a": 1.0, "c": 1.0}
    assert late.cancelled_caught


async def test_a_charge_given_back_whole_is_as_if_it_never_was_unless_others_went_since() -> None:
    # An admitted caller cancelled before it resumed gives its charges back
    # through `settle(charge, 0, now)`. With a budget the front is admitted
    # alone (the one after it must wait its spacing), so this is seen here.
    requests = _Timeline(600)  # a request every 0.1 s
    first = requests.charge(1, 0.0)
    second = requests.charge(1, 0.1)
    assert requests.due() == pytest.approx(0.2)
    assert requests.settle(second, 0, 0.1)  # never sent: as if it never was
    assert requests.due() == pytest.approx(0.1)
    requests.charge(1, 0.1)
    # The first's time is spent and a call went after it: giving it back now
    # would let the next go at once, two in 0.1 s.
    assert not requests.settle(first, 0, 0.1)
    assert requests.due() == pytest.approx(0.2)

    tokens = _Timeline(TPM)  # a token a millisecond
    charge = tokens.charge(500, 0.0)
    assert tokens.settle(charge, 100, 0.05)  # used 100: the next may go at 0.1
    assert tokens.due() == pytest.approx(0.1)
    assert not tokens.settle(charge, 300, 0.05)  # a correction upward takes the difference
    assert tokens.due() == pytest.approx(0.3)


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

    # A small call behind a big one waits its turn, though it would fit now:
    # a provider's hint leaves 50 tokens until 10 s on, too few for the big
    # one (80), enough for the small one (10). Both wait for the reset.
    hint = RateLimitHint(remaining_tokens=50, reset_tokens=10.0)

    def hinting(request: ModelRequest) -> ModelOutput:
        answer(request)
        return ModelOutput(
            MultimodalContent.of("ok"), limits=hint if request.instructions == "x" else None
        )

    capped = RateLimits(requests_per_minute=600)
    order.clear()
    env = Env.of(FunctionModel(hinting), capped, clock)
    start = clock.now()
    await Stage.completion("", instructions="x").execute(env=env)
    async with anyio.create_task_group() as group:
        for name, size in (("big", 80), ("small", 10)):
            stage = Stage.completion("", instructions=name, max_tokens=size - 1)
            group.start_soon(functools.partial(stage.execute, env=env))
            await clock.sleep(0.1)
    assert order == [("x", start), ("big", start + 10), ("small", start + 10.1)]


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


def test_event_loops_in_two_threads_share_the_spacing() -> None:
    limits = RateLimits(requests_per_minute=6000)  # a request every 10 ms
    model = FunctionModel(lambda request: "ok")

    async def calls() -> None:
        env = Env.of(model, limits)  # the system clock, shared by both threads
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(functools.partial(Stage.completion("hi").execute, env=env))

    start = time.monotonic()
    threads = [
        threading.Thread(target=anyio.run, args=(calls,), kwargs={"backend": backend})
        for backend in ("asyncio", "trio")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Twenty calls spaced 10 ms apart, whichever loop made them: 190 ms at least.
    assert len(model.requests) == 20
    assert time.monotonic() - start >= 0.19


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
    # output): it holds the budget for 0.258 s. The first is refused, which
    # pauses everyone until 2 (the clock stands while a request is out), the
    # second likewise until 4, the third until 6; from then the answers report
    # 3 tokens used, giving the rest back, and the requests budget binds: a
    # call every 0.1 s. (Per-second windows sent ten at once, each second.)
    times = [call.at for call in arrived]
    assert times == pytest.approx([0.0, 2.0, 4.0] + [6.0 + 0.1 * index for index in range(40)])
    assert busiest(arrived)[0] == 10
    assert len(set(times)) == len(times)  # never two at once


async def test_a_huge_reported_usage_charges_at_most_a_minutes_budget() -> None:
    """A server's usage report is capped: 10**12 tokens once would hold every
    later call for years; it holds them for at most a minute's budget."""
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    reported = iter([10**12, 100])

    async def answer(request: ModelRequest) -> ModelOutput:
        used = next(reported)
        return ModelOutput(MultimodalContent.of("ok"), usage=TokenUsage("m", used - 10, 10))

    env = Env.of(FunctionModel(answer), limits, clock)
    await Stage.completion("first", max_tokens=10).execute(env=env)
    await Stage.completion("second", max_tokens=10).execute(env=env)
    assert clock.now() <= 60.0 + EPSILON


async def test_the_estimate_reads_the_output_limit_the_models_config_sets() -> None:
    """`max_output_tokens` set on the config (which the model's fingerprint
    gives) bounds the estimate when the request's own extra says nothing."""

    class Configured(FunctionModel.__base__):  # type: ignore[name-defined,misc]  # GenerativeModel
        async def generate(self, request: ModelRequest, env: Env) -> ModelOutput:
            return ModelOutput.of("ok")

        def fingerprint(self, env: Env) -> dict[str, object]:
            return {"provider": "configured", "max_output_tokens": 5_000}

    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=6_000)  # 100 a second
    env = Env.of(Configured(), limits, clock)
    await Stage.completion("a").execute(env=env)
    await Stage.completion("b").execute(env=env)
    # The first call charged its 5,000-token output limit: the next waits for it.
    assert clock.now() >= 5_000 / 100 - 1
    request = ModelRequest("", ())
    assert limits.estimate(request, {"max_output_tokens": 5_000}) == 5_000
    assert limits.estimate(request) == DEFAULT_OUTPUT_TOKENS


# RateLimits holds calls on a hint ------------------------------------------------------


def hinting(
    clock: VirtualClock, hints: Mapping[int, RateLimitHint], *, latency: float = 0.0
) -> tuple[FunctionModel, list[float]]:
    """A model that records when each call reaches it and answers call `i`
    with `hints[i]` (and usage equal to the estimate: nothing given back)."""
    sent: list[float] = []
    counter = itertools.count()

    async def answer(request: ModelRequest) -> ModelOutput:
        index = next(counter)
        sent.append(clock.now())
        if latency:
            await clock.sleep(latency)
        return ModelOutput(MultimodalContent.of("ok"), limits=hints.get(index))

    return FunctionModel(answer), sent


async def run(stage: Stage, times: int, env: Env) -> None:
    for _ in range(times):
        await stage.execute(env=env)


async def test_no_tokens_left_holds_every_later_call_until_the_reset() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    model, sent = hinting(clock, {0: RateLimitHint(remaining_tokens=0, reset_tokens=6.0)})
    await run(Stage.completion("", max_tokens=100), 4, Env.of(model, limits, clock))
    # Without the hint: 0, 0.1, 0.2, 0.3. With it, the rest wait for the
    # reset, then go spaced (per-second windows sent all three at 6).
    assert sent == pytest.approx([0.0, 6.0, 6.1, 6.2])


async def test_the_hold_is_shared_by_every_caller_in_flight_and_in_line() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=600)  # one every 0.1 s
    hint = RateLimitHint(remaining_requests=0, reset_requests=3.0)
    model, sent = hinting(clock, {0: hint}, latency=0.5)
    env = Env.of(model, limits, clock)
    stage = Stage.completion("hi")
    async with anyio.create_task_group() as group:
        for _ in range(15):
            group.start_soon(functools.partial(stage.execute, env=env))
    # Five go at 0 to 0.4 (already sent when the hint comes at 0.5); the
    # other ten would go from 0.5 on but wait for the reset at 3.5, then go
    # spaced. (Per-second windows sent ten at 0 and the other five at 3.5.)
    assert sent == pytest.approx(
        [0.1 * index for index in range(5)] + [3.5 + 0.1 * index for index in range(10)]
    )


async def test_what_remains_may_still_be_sent_before_the_reset() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    hint = RateLimitHint(remaining_tokens=1000, reset_tokens=10.0)  # 10,000 would go by then
    model, sent = hinting(clock, {0: hint})
    await run(Stage.completion("", max_tokens=500), 5, Env.of(model, limits, clock))
    # 1,000 more may go before 10: two calls of 500, spaced (0.5 and 1.0); the
    # fourth waits for the reset, the fifth 0.5 s after it. (Per-second
    # windows: two at 0, one at 1, two at 10.)
    assert sent == pytest.approx([0.0, 0.5, 1.0, 10.0, 10.5])


async def test_a_hint_looser_than_the_budget_changes_nothing() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    hint = RateLimitHint(remaining_tokens=50_000, reset_tokens=1.0, remaining_requests=10)
    model, sent = hinting(clock, {0: hint})
    await run(Stage.completion("", max_tokens=500), 6, Env.of(model, limits, clock))
    # The budget alone: one every 0.5 s (per-second windows: two each second).
    assert sent == pytest.approx([0.5 * index for index in range(6)])


async def test_a_later_hint_never_raises_what_is_left() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM)
    hints = {
        0: RateLimitHint(remaining_tokens=600, reset_tokens=10.0),
        1: RateLimitHint(remaining_tokens=900, reset_tokens=2.0),  # stale, or looser
    }
    model, sent = hinting(clock, hints)
    await run(Stage.completion("", max_tokens=500), 3, Env.of(model, limits, clock))
    # After the first hint 600 are left, 100 after the second call (at 0.5,
    # spaced): the third waits for the first hint's reset, the second hint
    # notwithstanding.
    assert sent == pytest.approx([0.0, 0.5, 10.0])


async def test_the_hold_is_capped_by_max_pause() -> None:
    clock = VirtualClock()
    limits = RateLimits(tokens_per_minute=TPM, max_pause=2.0)
    model, sent = hinting(clock, {0: RateLimitHint(remaining_tokens=0, reset_tokens=30.0)})
    await run(Stage.completion("", max_tokens=100), 2, Env.of(model, limits, clock))
    assert sent == [0.0, 2.0]


async def test_hints_hold_calls_for_budgets_the_limits_do_not_set() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=600)  # no token budget
    hint = RateLimitHint(remaining_tokens=150, reset_tokens=4.0)
    model, sent = hinting(clock, {0: hint})
    await run(Stage.completion("", max_tokens=100), 3, Env.of(model, limits, clock))
    # 150 left: one more call of 100 fits (0.1 s on: the request budget), the
    # next waits for the reset.
    assert sent == pytest.approx([0.0, 0.1, 4.0])


async def test_no_tokens_left_holds_callers_that_joined_before_the_hint() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=60)  # no token budget: tokens not counted
    hint = RateLimitHint(remaining_tokens=0, reset_tokens=30.0)
    model, sent = hinting(clock, {0: hint}, latency=0.5)
    env = Env.of(model, limits, clock)
    async with anyio.create_task_group() as group:
        for _ in range(4):  # all in line at 0, before any hint
            group.start_soon(functools.partial(Stage.completion("hi").execute, env=env))
    # The first answers at 0.5: no tokens left until 30.5. The three waiting
    # since 0 (estimated at nothing when they joined) each cost a token all
    # the same: they wait for the reset, then go a second apart. (They went
    # at 1, 2 and 3, into the provider's limit.)
    assert sent == pytest.approx([0.0, 30.5, 31.5, 32.5])


async def test_hints_without_a_reset_or_with_nonsense_are_ignored() -> None:
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=600, tokens_per_minute=TPM)
    hints = {
        0: RateLimitHint(remaining_tokens=0),  # no reset: for how long?
        1: RateLimitHint(remaining_requests=0, reset_requests=math.nan),
        2: RateLimitHint(remaining_requests=-3, reset_requests=5.0),
        3: RateLimitHint(remaining_tokens=0, reset_tokens=0.0),  # already reset
    }
    model, sent = hinting(clock, hints)
    await run(Stage.completion("", max_tokens=100), 5, Env.of(model, limits, clock))
    assert sent == pytest.approx([0.1 * index for index in range(5)])  # the budgets alone


async def test_the_hint_stays_out_of_equality_and_of_the_codec() -> None:
    hint = RateLimitHint(remaining_tokens=5, reset_tokens=1.0)
    usage = TokenUsage("m", 1, 2)
    output = ModelOutput(MultimodalContent.of("ok"), usage=usage, limits=hint)
    assert output == ModelOutput(MultimodalContent.of("ok"))
    decoded = decode_answer(encode_answer(output))
    assert isinstance(decoded, ModelOutput)
    assert decoded == output
    assert decoded.usage == usage
    assert decoded.limits is None
    assert "limits" not in str(encode_answer(output))

"""Providers' rate-limit hints: OpenAI's `x-ratelimit-*` headers read into
`ModelOutput.limits`, and `RateLimits` holding calls when a hint says less
is left than its own budget would send, never loosening it.

Deterministic on a `VirtualClock` (but for the HTTP of the FakeOpenAIServer tests).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Mapping

import anyio
import pytest

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    ModelRequest,
    MultimodalContent,
    RateLimitHint,
    Stage,
    StageState,
    TokenUsage,
)
from stagefx._codec.codec import decode_answer, encode_answer
from stagefx._model.rate_limits import RateLimits
from stagefx.openai._limits import parse_duration, rate_limit_hint
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

TPM = 60_000
"""A token every millisecond: a call of 100 holds the budget for 0.1 s."""


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


# RateLimits holds calls on a hint ------------------------------------------------------


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


# OpenAI's headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("17", 17.0),
        ("150us", 150e-6),
        (" 2s ", None),  # the header reader strips; the parser does not
        ("", None),
        (None, None),
        ("-1s", None),
        ("1x", None),
        ("s", None),
        ("nan", None),
        ("inf", None),
        ("1e309", None),
        ("1.s", None),
        ("1s" * 60, None),  # too long
    ],
)
async def test_durations_are_read_leniently(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == (None if seconds is None else pytest.approx(seconds))


async def test_headers_become_a_hint_and_garbage_is_left_out() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149,984",  # garbage
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": " 6m0s ",
    }
    assert rate_limit_hint(headers) == RateLimitHint(59, None, 1.0, 360.0)
    assert rate_limit_hint({}) is None
    assert rate_limit_hint({"x-ratelimit-remaining-tokens": "9" * 40}) is None
    assert rate_limit_hint({"x-ratelimit-remaining-tokens": "-5"}) is None
    assert rate_limit_hint(object()) is None

    class Hostile:
        def get(self, name: str) -> str:
            raise RuntimeError(name)

    assert rate_limit_hint(Hostile()) is None


OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_the_provider_reads_real_headers_into_the_hint(api: str) -> None:
    from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
    from stagefx.testing import FakeOpenAIServer

    config = OpenAIChatConfig(model="m") if api == "chat" else OpenAIResponsesConfig(model="m")
    request = ModelRequest("", (ModelInput.of("hi"),))
    with FakeOpenAIServer(lambda request: "ok", headers=OPENAI_HEADERS) as server:
        async with OpenAI(api_key="sk-test-0123456789", base_url=server.base_url) as provider:
            answer = await provider.generate(request, Env.of(config))
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == "ok"
    assert answer.limits == RateLimitHint(
        remaining_requests=59, remaining_tokens=149984, reset_requests=1.0, reset_tokens=360.0
    )

    with FakeOpenAIServer(lambda request: "ok") as server:  # no headers: no hint
        async with OpenAI(api_key="sk-test-0123456789", base_url=server.base_url) as provider:
            plain = await provider.generate(request, Env.of(config))
    assert isinstance(plain, ModelOutput)
    assert plain.limits is None


async def test_real_headers_hold_the_next_call_until_their_reset() -> None:
    from stagefx.openai import OpenAI, OpenAIChatConfig
    from stagefx.testing import FakeOpenAIServer

    arrived: list[float] = []

    def answer(request: ModelRequest) -> str:
        arrived.append(time.monotonic())
        return "ok"

    counter = itertools.count()

    def first_only(request: ModelRequest) -> Mapping[str, str]:  # only the first answer says so
        if next(counter):
            return {}
        return {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "150ms"}

    limits = RateLimits(requests_per_minute=6000)  # 100 a second: no pacing to speak of
    with FakeOpenAIServer(answer, headers=first_only) as server:
        async with OpenAI(api_key="sk-test-0123456789", base_url=server.base_url) as provider:
            env = Env.of(OpenAIChatConfig(model="m"), provider, limits)
            states = [await Stage.completion(f"item {i}").execute(env=env) for i in range(3)]
    assert all(isinstance(state, StageState) for state in states)
    assert len(arrived) == 3
    assert arrived[1] - arrived[0] >= 0.14  # held for the reset (real time)

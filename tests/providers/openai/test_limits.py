"""OpenAI's `x-ratelimit-*` headers, read leniently into `ModelOutput.limits`,
and a real hint holding the next call (how `RateLimits` holds calls on a hint
is in tests/model/test_rate_limits.py)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

import pytest

from stagefx import Env, ModelInput, ModelOutput, ModelRequest, RateLimitHint, Stage, StageState
from stagefx._model.rate_limits import RateLimits
from stagefx.openai._limits import parse_duration, rate_limit_hint

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


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

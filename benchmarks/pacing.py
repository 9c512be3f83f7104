"""RateLimits as a server sees them: calls through the OpenAI provider to a
loopback server, with random network jitter between the client's pacing and
the server's arrival, counted per one-second window where they arrive."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import anyio

from benchmarks.harness import Plan, Row
from stagefx import (
    CallLayer,
    Env,
    ModelInput,
    ModelOutput,
    ModelPath,
    ModelRequest,
    ModelStream,
    RateLimits,
    Stage,
    TokenUsage,
)
from stagefx.openai import OpenAI, OpenAIChatConfig
from stagefx.testing import FakeOpenAIServer

KEY = "sk-benchmark-not-a-real-key"
JITTER = 0.09
"""Seconds of network jitter at most: below one spacing at 600 rpm (0.1 s)."""


class Jitter(CallLayer):
    """The network between the client's pacing and the server: a random delay
    before each call goes on (inside RateLimits, which place "yours" is)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    async def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        await anyio.sleep(self._random.uniform(0, JITTER))
        async for item in inner.stream(request, env):
            yield item


def busiest(arrivals: Sequence[tuple[float, int]]) -> tuple[int, int]:
    """The most calls, and the most tokens, arriving in any one second."""
    ordered = sorted(arrivals)
    calls = tokens = 0
    for first, (start, _) in enumerate(ordered):
        window = [each for each in ordered[first:] if each[0] < start + 1]
        calls = max(calls, len(window))
        tokens = max(tokens, sum(cost for _, cost in window))
    return calls, tokens


async def _paced(
    limits: RateLimits, seconds: float, prompt: int
) -> tuple[list[tuple[float, int]], int]:
    """Calls made as fast as `limits` allow for `seconds`: their arrivals at
    the server (time, tokens it counts), and how many completed in time."""
    text = "x" * 4 * prompt
    cost = limits.estimate(ModelRequest("", (ModelInput.of(text),), extra={"max_tokens": 10}))
    arrivals: list[tuple[float, int]] = []

    def answer(request: ModelRequest) -> ModelOutput:  # on the server's thread, as calls arrive
        arrivals.append((time.monotonic(), cost))
        return ModelOutput(ModelOutput.of("ok").content, usage=TokenUsage("m", cost - 10, 10))

    done = 0
    with FakeOpenAIServer(answer) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            env = Env.of(provider, OpenAIChatConfig(model="gpt-4o"), limits, Jitter(seed=7))
            call = Stage.completion(text, max_tokens=10)

            async def one() -> None:
                nonlocal done
                await call.execute(env=env)
                done += 1

            with anyio.move_on_after(seconds):
                async with anyio.create_task_group() as group:
                    while True:  # always more waiting than the limits let through
                        group.start_soon(one)
                        await anyio.sleep(0.01)
    return arrivals, done


async def run(plan: Plan) -> list[Row]:
    seconds = 3.0 if plan.quick else 60.0
    rpm = 600
    arrivals, done = await _paced(RateLimits(requests_per_minute=rpm), seconds, prompt=10)
    most, _ = busiest(arrivals)
    budget = rpm * seconds / 60
    tpm = 60_000
    token_seconds = 3.0 if plan.quick else 20.0
    token_arrivals, _ = await _paced(RateLimits(tokens_per_minute=tpm), token_seconds, prompt=400)
    _, most_tokens = busiest(token_arrivals)
    largest = max(cost for _, cost in token_arrivals)
    return [
        Row(
            f"busiest server second, RateLimits(rpm={rpm}), 0-{JITTER * 1000:.0f} ms jitter",
            "calls",
            most,
            rpm / 60,
            1.1,
        ),
        Row(
            f"budget over completed calls in {seconds:.0f} s at rpm={rpm} (throughput >= 95%)",
            "calls",
            budget,
            done,
            1 / 0.95,
        ),
        Row(
            f"busiest server second's tokens, RateLimits(tpm={tpm:,}), vs a sixtieth + one call",
            "tokens",
            most_tokens,
            tpm / 60 + largest,
            1.0,
        ),
    ]

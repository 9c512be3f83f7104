"""Streaming through `Stage.stream` against the raw `openai` client streaming
the same answer from the same loopback server (the Responses API)."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Awaitable, Callable

import openai

from benchmarks.harness import Plan, Row
from stagefx import Env, Finished, Stage, TextDelta
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer

KEY = "sk-benchmark-not-a-real-key"
MODEL = "gpt-4o"
PROMPT = "Say hello."


def _pieces(count: int) -> Callable[[str], list[str]]:
    """Cut an answer into `count` pieces."""

    def split(text: str) -> list[str]:
        size = max(len(text) // count, 1)
        return [text[start : start + size] for start in range(0, len(text), size)]

    return split


async def _best(plan: Plan, calls: int, measure: Callable[[], Awaitable[float]]) -> float:
    """The best over the plan's repeats of the mean of `calls` measurements."""
    best = float("inf")
    for _ in range(plan.repeats):
        gc.collect()
        gc.disable()
        try:
            total = 0.0
            for _ in range(calls):
                total += await measure()
            best = min(best, total / calls)
        finally:
            gc.enable()
    return best


async def _rows(plan: Plan, chunks: int, calls: int) -> tuple[float, float, float, float]:
    """Time to the first delta and to the whole answer, ours and the raw client's."""
    answer = "hello " * chunks
    with FakeOpenAIServer(lambda request: answer, chunk_size=_pieces(chunks)) as server:
        raw = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            env = Env.of(provider, OpenAIResponsesConfig(model=MODEL))
            completion = Stage.completion(PROMPT)

            async def raw_first() -> float:
                start = time.perf_counter()
                stream = await raw.responses.create(
                    model=MODEL, input=[{"role": "user", "content": PROMPT}], stream=True
                )
                async with stream:
                    async for event in stream:
                        if event.type == "response.output_text.delta":
                            return time.perf_counter() - start
                raise AssertionError("no delta")

            async def ours_first() -> float:
                start = time.perf_counter()
                events = completion.stream(env=env)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, TextDelta):
                            return time.perf_counter() - start
                raise AssertionError("no delta")

            async def raw_whole() -> float:
                start = time.perf_counter()
                stream = await raw.responses.create(
                    model=MODEL, input=[{"role": "user", "content": PROMPT}], stream=True
                )
                text: list[str] = []
                async with stream:
                    async for event in stream:
                        if event.type == "response.output_text.delta":
                            text.append(event.delta)
                assert "".join(text) == answer
                return time.perf_counter() - start

            async def ours_whole() -> float:
                start = time.perf_counter()
                text: list[str] = []
                events = completion.stream(env=env)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, TextDelta):
                            text.append(event.text)
                        elif isinstance(event, Finished):
                            event.outcome.unwrap()
                assert "".join(text) == answer
                return time.perf_counter() - start

            for warm in (raw_first, ours_first, raw_whole, ours_whole):  # warm both pools
                await warm()
            first = (await _best(plan, calls, ours_first), await _best(plan, calls, raw_first))
            whole = (await _best(plan, calls, ours_whole), await _best(plan, calls, raw_whole))
        await raw.close()
    return (*first, *whole)


async def run(plan: Plan) -> list[Row]:
    calls = plan.size(100) if not plan.quick else 3
    chunks = 1_000 if not plan.quick else 50
    ours_first, raw_first, ours_whole, raw_whole = await _rows(plan, chunks, calls)
    return [
        Row("time to first delta vs raw client (streamed)", "call", ours_first, raw_first, 1.1),
        Row(
            f"whole streamed answer of {chunks:,} chunks vs raw client",
            "call",
            ours_whole,
            raw_whole,
            1.2,
        ),
    ]

"""`Stage.batch` against hand-written floors: a semaphore and a task per item."""

from __future__ import annotations

import asyncio
import sys

import anyio
import attrs
import openai

from benchmarks.harness import Plan, Row, best_of
from stagefx import Env, MultimodalContent, Stage, StageState, stage
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer

RESULT = MultimodalContent.of("x")
KEY = "sk-benchmark-not-a-real-key"
MODEL = "gpt-4o"


async def work(state: StageState) -> StageState:
    return attrs.evolve(state, result=RESULT)


@stage
async def leaf(*, state: StageState) -> StageState:
    return await work(state)


async def overhead_row(plan: Plan) -> Row:
    """Per-item cost of `batch` on a one-stage pipeline against a semaphore and a
    task per item doing the same work."""
    items = plan.size(10_000)
    inputs = [StageState()] * items
    env = Env.of()

    async def floor() -> None:
        gate = asyncio.Semaphore(32)
        results: list[StageState] = [StageState()] * items

        async def one(index: int, state: StageState) -> None:
            async with gate:
                results[index] = await work(state)

        async with anyio.create_task_group() as group:
            for index, state in enumerate(inputs):
                group.start_soon(one, index, state)

    async def ours() -> None:
        await leaf.batch(inputs, concurrency=32, env=env)

    return Row(
        f"batch of {items:,} one-stage items (concurrency 32)",
        "item",
        await best_of(plan, items, ours),
        await best_of(plan, items, floor),
        1.5,
    )


async def throughput_row(plan: Plan) -> Row:
    """1,000 completions at 50 ms latency: `batch` against the raw client under
    the same semaphore. Per-call time; a ratio of 1/0.95 or less meets the target."""
    calls = plan.size(1_000)
    with FakeOpenAIServer(lambda request: "Hello!", latency=0.05) as server:
        raw = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            env = Env.of(provider, OpenAIResponsesConfig(model=MODEL))
            pipeline = Stage.result_completion()
            prompts = ["Say hello."] * calls

            async def floor() -> None:
                gate = asyncio.Semaphore(64)

                async def one(prompt: str) -> None:
                    async with gate:
                        await raw.responses.create(
                            model=MODEL, input=[{"role": "user", "content": prompt}]
                        )

                async with anyio.create_task_group() as group:
                    for prompt in prompts:
                        group.start_soon(one, prompt)

            async def ours() -> None:
                await pipeline.batch(prompts, concurrency=64, env=env)

            await floor()  # warm both connection pools
            await ours()
            row = Row(
                f"{calls:,} completions through batch, 50 ms latency (concurrency 64)",
                "call",
                await best_of(plan, calls, ours),
                await best_of(plan, calls, floor),
                1 / 0.95,
            )
        await raw.close()
    return row


_MEASURE = """
import resource, sys, anyio
from stagefx import Env, MultimodalContent, StageState, stage

@stage
async def leaf(*, state):
    return state.updated(result="x")

async def inputs(count):
    for number in range(count):
        yield StageState(result=str(number))

async def main(count):
    async for _ in leaf.map(inputs(count), concurrency=32, env=Env.of()):
        pass

def peak():
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024

anyio.run(main, 1_000)  # everything imported and warm: the baseline
before = peak()
anyio.run(main, int(sys.argv[1]))
print(max(peak() - before, 0.0))
"""


async def memory_row(plan: Plan) -> Row:
    """Peak RSS growth while 100,000 inputs from an async generator stream
    through `map` at concurrency 32, in a fresh process (the peak is per
    process); against a floor of 1 MiB, target 50 MiB."""
    count = plan.size(100_000)
    measured = await anyio.run_process([sys.executable, "-c", _MEASURE, str(count)])
    grown = float(measured.stdout.decode().strip())
    return Row(f"peak RSS growth, {count:,} streamed inputs", "MiB", grown, 1.0, 50.0)


async def run(plan: Plan) -> list[Row]:
    return [await overhead_row(plan), await throughput_row(plan), await memory_row(plan)]

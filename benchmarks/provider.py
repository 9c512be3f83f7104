"""The OpenAI provider against the raw `openai` client, on the same loopback server."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import openai

from benchmarks.harness import Plan, Row, best_of
from stagefx import Env, Stage, StageException, StageState
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer

KEY = "sk-benchmark-not-a-real-key"
MODEL = "gpt-4o"


def first(branches: Sequence[StageState | StageException]) -> StageState:
    branch = branches[0]
    assert isinstance(branch, StageState)
    return branch


async def _compare(
    server: FakeOpenAIServer, calls: int, concurrent: bool, plan: Plan
) -> tuple[float, float]:
    raw = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
        env = Env.of(provider, OpenAIResponsesConfig(model=MODEL))
        completion = Stage.completion("Say hello.")
        fan = Stage.concurrent(*([completion] * calls), merge=first, concurrent_tasks=None)

        async def raw_call() -> None:
            await raw.responses.create(
                model=MODEL, input=[{"role": "user", "content": "Say hello."}]
            )

        async def raw_run() -> None:
            if not concurrent:
                for _ in range(calls):
                    await raw_call()
                return
            async with anyio.create_task_group() as group:
                for _ in range(calls):
                    group.start_soon(raw_call)

        async def ours_run() -> None:
            if concurrent:
                await fan.execute(env=env)
                return
            for _ in range(calls):
                await completion.execute(env=env)

        await raw_run()  # warm both connection pools
        await ours_run()
        ours = await best_of(plan, calls, ours_run)
        floor = await best_of(plan, calls, raw_run)
    await raw.close()
    return ours, floor


async def run(plan: Plan) -> list[Row]:
    calls, concurrent_calls = plan.size(300), plan.size(1_000)
    with FakeOpenAIServer(lambda request: "Hello!") as server:
        ours, floor = await _compare(server, calls, concurrent=False, plan=plan)
    rows = [Row(f"completion vs raw client ({calls} sequential)", "call", ours, floor, 1.1)]
    with FakeOpenAIServer(lambda request: "Hello!", latency=0.05) as server:
        ours, floor = await _compare(server, concurrent_calls, concurrent=True, plan=plan)
    rows.append(
        Row(f"{concurrent_calls:,} concurrent completions, 50 ms latency", "call", ours, floor, 1.2)
    )
    return rows

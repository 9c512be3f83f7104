"""Cancelling a running pipeline anywhere leaves no task, no connection, and
every disposable exited exactly once."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

import anyio
import anyio.lowlevel
import anyio.to_thread
from hypothesis import given, settings
from hypothesis import strategies as st

from stagefx import ModelOutput, ModelToolRequest, Stage, ctx, tool
from stagefx._core.request import ModelRequest
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer


class Counted:
    """A disposable that counts its exits."""

    def __init__(self) -> None:
        self.entered = 0
        self.exited = 0

    async def __aenter__(self) -> None:
        self.entered += 1

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exited += 1


@tool
async def lookup(query: str) -> str:
    """Look something up."""
    await anyio.lowlevel.checkpoint()
    return query


PIPELINE = Stage.sequence(
    Stage.completion("first"),
    Stage.completion("second", tools=[lookup]),
    Stage.concurrent(
        Stage.completion("branch a"),
        Stage.completion("branch b"),
        merge=lambda branches: next(b for b in branches if not isinstance(b, Exception)),
    ),
    Stage.completion("last").cached(),
).with_retry(limit=1)
REQUESTS = 6
"""Model calls one uncancelled run makes."""


class HoldingServer:
    """A fake OpenAI server that holds request `hold_at` until released, so the
    test knows the pipeline is inside that request when it cancels."""

    def __init__(self, hold_at: int) -> None:
        self.hold_at = hold_at
        self.seen = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.server = FakeOpenAIServer(self.answer)

    def answer(self, request: ModelRequest) -> ModelOutput:
        self.seen += 1
        if self.seen == self.hold_at:
            self.holding.set()
            self.release.wait(timeout=30)
        asked = request.context[-1]
        if request.tools and not getattr(asked, "tool_responses", ()):
            return ModelOutput(tool_requests=(ModelToolRequest("c1", "lookup", {"query": "q"}),))
        return ModelOutput.of("ok")


@settings(max_examples=12, deadline=None)
@given(st.integers(1, REQUESTS), st.booleans())
def test_cancellation_at_any_model_call_leaves_nothing_behind(hold_at: int, inside: bool) -> None:
    holding = HoldingServer(hold_at)
    counted = Counted()

    async def run() -> None:
        tasks_before = len(asyncio.all_tasks())
        async with anyio.create_task_group() as group:

            async def pipeline() -> None:
                async with ctx.scope(
                    "cancel",
                    OpenAIResponsesConfig(model="gpt-4o"),
                    disposables=(counted, OpenAI(api_key="sk-x", base_url=holding.server.base_url)),
                ):
                    await PIPELINE.attempt()

            group.start_soon(pipeline)
            await anyio.to_thread.run_sync(holding.holding.wait)
            if not inside:
                holding.release.set()  # cancel just after that call answers
            group.cancel_scope.cancel()
        holding.release.set()
        assert len(asyncio.all_tasks()) == tasks_before, "a task outlived the pipeline"

    with holding.server:
        anyio.run(run)
        assert holding.server.wait_for_connections(0), "a connection was left open"
    assert (counted.entered, counted.exited) == (1, 1)

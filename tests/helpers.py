"""Helpers the test modules share: the repository's root, streamed events and
their text, merges for `concurrent`, tool requests and answers, tools, a hostile
exception, and what the provider streaming tests read from a stream or a server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from stagefx import (
    Env,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRequest,
    ModelToolRequest,
    ModelToolResponse,
    Stage,
    StageEvent,
    StageException,
    StageState,
    TextDelta,
    tool,
)
from stagefx._model.generative import ModelStream, ModelStreamItem

if TYPE_CHECKING:
    from stagefx.anthropic import Anthropic
    from stagefx.gemini import Gemini
    from stagefx.openai import OpenAI
    from stagefx.testing import ScriptedModel
    from stagefx.testing._fake_http import FakeHTTPServer
    from stagefx.testing._models import Answer

ROOT = Path(__file__).resolve().parent.parent
"""The repository: where subprocesses run, and where docs/ and benchmarks/ are."""


# Stage.stream ----------------------------------------------------------------------


async def events_of(stage: Stage, env: Env, state: StageState | None = None) -> list[StageEvent]:
    """Every event of one streamed run, `Finished` last."""
    async with contextlib.aclosing(stage.stream(state, env=env)) as stream:
        return [event async for event in stream]


def texts(events: Sequence[StageEvent], path: tuple[str, ...] | None = None) -> str:
    """The joined `TextDelta`s of `events` (of the stage at `path`, if given)."""
    return "".join(
        event.text
        for event in events
        if isinstance(event, TextDelta) and (path is None or event.stage_path == path)
    )


# Merges for `concurrent` -----------------------------------------------------------


def keep_first(branches: Sequence[StageState | StageException]) -> StageState:
    """The first branch, which must have succeeded."""
    branch = branches[0]
    assert isinstance(branch, StageState)
    return branch


def first_success(branches: Sequence[StageState | StageException]) -> StageState:
    """The first branch that succeeded."""
    return next(branch for branch in branches if isinstance(branch, StageState))


# Tools -------------------------------------------------------------------------------


def asks(*calls: tuple[str, Mapping[str, object]]) -> ModelOutput:
    """A model output asking for these tool calls, `call_0` first."""
    return ModelOutput(
        tool_requests=tuple(
            ModelToolRequest(f"call_{index}", name, arguments)
            for index, (name, arguments) in enumerate(calls)
        )
    )


def tool_responses(model: ScriptedModel, request: int) -> tuple[ModelToolResponse, ...]:
    """The tool answers the model was sent with its request number `request`."""
    last = model.requests[request].context[-1]
    assert isinstance(last, ModelInput)
    return last.tool_responses


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
async def word_count(text: str) -> int:
    """Count words in text."""
    return len(text.split())


class Unprintable(Exception):
    """An exception that cannot be shown: its `str` and `repr` raise."""

    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


# Providers' streams, against the fake servers -----------------------------------------


async def streamed(
    provider: OpenAI | Anthropic | Gemini, request: ModelRequest, env: Env
) -> tuple[list[str], ModelOutput | ModelFailure]:
    """The deltas of one streamed call, and its last item (the provider is
    entered for the call and exited after it)."""
    async with provider:
        items = [item async for item in provider.stream(request, env)]
    *deltas, last = items
    assert all(isinstance(delta, str) for delta in deltas), items
    assert isinstance(last, ModelOutput | ModelFailure), items
    return [delta for delta in deltas if isinstance(delta, str)], last


def closable(items: ModelStream) -> AsyncGenerator[ModelStreamItem, None]:
    """The provider's stream as the async generator it is, to close it."""
    assert isinstance(items, AsyncGenerator)
    return items


def answering(answer: Answer) -> Callable[[ModelRequest], Answer]:
    """A fake server's callback giving `answer` to every request."""
    return lambda request: answer


async def connections_drop_to_zero(server: FakeHTTPServer, *, within: float) -> bool:
    """Whether the server has no open connection within `within` seconds."""
    return await anyio.to_thread.run_sync(lambda: server.wait_for_connections(0, timeout=within))

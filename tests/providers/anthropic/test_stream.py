"""`Anthropic().stream`: native streaming against FakeAnthropicServer's
server-sent events, through the real `anthropic` client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator

import anyio
import anyio.to_thread
import pytest

from stagefx import (
    Env,
    Finished,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    MultimodalContent,
    RateLimitHint,
    Stage,
    TextDelta,
    ctx,
)
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx.anthropic import Anthropic
from stagefx.testing import Fault, SentChunk
from stagefx.testing._fake_anthropic import FakeAnthropicServer
from stagefx.testing._models import Answer
from tests.helpers import streamed
from tests.providers.anthropic.test_provider import CONFIG, LOOKUP, SECRET, THINKING, rich_request

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

TEXT = "The quick brown fox jumps over the lazy dog."
HI = ModelRequest("Be brief.", (ModelInput.of("hi there"),))
LIMITS = {"anthropic-ratelimit-tokens-remaining": "120"}


async def collect(
    server: FakeAnthropicServer, request: ModelRequest = HI
) -> tuple[list[str], ModelOutput | ModelFailure]:
    """The deltas of one streamed call, and its last item."""
    provider = Anthropic(api_key=SECRET, base_url=server.base_url)
    return await streamed(provider, request, Env.of(CONFIG))


CASES: list[tuple[str, Answer, ModelRequest]] = [
    ("text", TEXT, HI),
    (
        "tools",
        ModelOutput(
            MultimodalContent.of("Checking."),
            (
                ModelToolRequest("toolu_1", "lookup", {"query": "ä", "days": 2}),
                ModelToolRequest("toolu_2", "lookup", {"query": "b", "days": 3}),
            ),
            provider_data=THINKING,
        ),
        ModelRequest("", (ModelInput.of("q"),), (LOOKUP,)),
    ),
    ("structured", '{"answer": "sunny ☀"}', rich_request()),
    (
        "wrapped",
        "[1, 2, 3]",
        ModelRequest(
            "",
            (ModelInput.of("q"),),
            output=OutputSpec(mode="schema", schema={"type": "array"}, name="List"),
        ),
    ),
]


@pytest.mark.parametrize(
    ("answer", "request_"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_a_streamed_answer_equals_the_whole_one(
    answer: Answer, request_: ModelRequest
) -> None:
    with FakeAnthropicServer(lambda request: answer, headers=LIMITS, chunk_size=3) as server:
        deltas, streamed = await collect(server, request_)
        async with Anthropic(api_key=SECRET, base_url=server.base_url) as model:
            whole = await model.generate(request_, Env.of(CONFIG))
    assert isinstance(streamed, ModelOutput)
    assert streamed == whole
    assert isinstance(whole, ModelOutput)
    given = answer.provider_data if isinstance(answer, ModelOutput) else {}
    assert streamed.provider_data == whole.provider_data == given
    assert streamed.usage == whole.usage
    assert streamed.finish_reason == whole.finish_reason
    assert streamed.limits == whole.limits == RateLimitHint(remaining_tokens=120)
    assert "".join(deltas) == streamed.content.as_string()
    assert server.requests[0].body["stream"] is True
    assert "stream" not in server.requests[1].body


async def test_text_arrives_as_it_is_streamed() -> None:
    seen = threading.Event()
    before_last: list[bool] = []

    async def hold_the_end(chunk: SentChunk) -> None:
        if chunk.last:  # the end waits until the client has its first delta
            before_last.append(await asyncio.to_thread(seen.wait, 5.0))

    with FakeAnthropicServer(lambda request: TEXT, on_chunk=hold_the_end) as server:
        async with Anthropic(api_key=SECRET, base_url=server.base_url) as model:
            deltas: list[str] = []
            async for item in model.stream(HI, Env.of(CONFIG)):
                if isinstance(item, str):
                    deltas.append(item)
                    seen.set()
    assert before_last == [True]
    assert len(deltas) > 3
    assert "".join(deltas) == TEXT


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.cut(after=2), "unavailable"),
        (Fault.error_event(after=2, code="overloaded_error"), "unavailable"),
        (Fault.error_event(after=1, code="rate_limit_error"), "rate_limited"),
        (Fault.error_event(after=0, code="invalid_request_error"), "invalid_request"),
        (Fault.status(529), "unavailable"),
        (Fault.status(429, retry_after="4"), "rate_limited"),
        (Fault.status(401, message=f"bad key {SECRET}"), "authentication"),
    ],
)
async def test_a_broken_stream_ends_with_a_typed_failure(fault: Fault, kind: str) -> None:
    with FakeAnthropicServer(lambda request: TEXT) as server:
        server.inject(fault)
        deltas, last = await collect(server)
    assert isinstance(last, ModelFailure)
    assert last.kind == kind, last
    assert SECRET not in last.message
    assert TEXT.startswith("".join(deltas))


async def test_leaving_early_closes_the_connection() -> None:
    with FakeAnthropicServer(lambda request: TEXT) as server:
        server.inject(Fault.stall(after=2))
        async with Anthropic(api_key=SECRET, base_url=server.base_url) as model:
            stream = model.stream(HI, Env.of(CONFIG))
            assert isinstance(stream, AsyncGenerator)
            first = await stream.__anext__()
            assert isinstance(first, str)
            assert server.open_connections == 1
            await stream.aclose()
            assert await anyio.to_thread.run_sync(server.wait_for_connections, 0)


async def test_a_pipeline_streams_text_deltas_that_join_to_its_result() -> None:
    with FakeAnthropicServer(lambda request: TEXT) as server:
        async with ctx.scope(
            "t", CONFIG, disposables=(Anthropic(api_key=SECRET, base_url=server.base_url),)
        ):
            texts: list[str] = []
            finished = None
            async with contextlib.aclosing(Stage.completion("hi").stream()) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        texts.append(event.text)
                    elif isinstance(event, Finished):
                        finished = event
    assert finished is not None
    state = finished.outcome.unwrap()
    assert "".join(texts) == state.result.as_string() == TEXT
    assert len(texts) > 1

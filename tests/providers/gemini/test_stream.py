"""`Gemini().stream`: native streaming (`streamGenerateContent?alt=sse`),
against FakeGeminiServer's server-sent events, through the real `google-genai` client."""

from __future__ import annotations

import contextlib
import threading
import time

import anyio
import anyio.to_thread
import pytest

from stagefx import (
    Env,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    MultimodalContent,
)
from stagefx._core.request import ModelRequest
from stagefx._model.generative import ModelStreamItem
from stagefx.gemini import Gemini
from stagefx.gemini._wire import call_identifier
from stagefx.testing import Fault, SentChunk
from stagefx.testing._fake_gemini import FakeGeminiServer
from tests.helpers import answering, closable, connections_drop_to_zero, streamed
from tests.providers.gemini.test_provider import CONFIG, SECRET

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

TEXT = "The quick brown fox jumps over the lazy dog."
HI = ModelRequest("Be brief.", (ModelInput.of("hi there"),))


async def collect(
    server: FakeGeminiServer, request: ModelRequest = HI
) -> tuple[list[str], ModelOutput | ModelFailure]:
    """The deltas of one streamed call, and its last item."""
    provider = Gemini(api_key=SECRET, base_url=server.base_url)
    return await streamed(provider, request, Env.of(CONFIG))


async def test_the_first_delta_arrives_before_the_server_sends_its_last_chunk() -> None:
    seen_first = threading.Event()
    held: list[bool] = []

    def hold_the_last(chunk: SentChunk) -> None:  # on the server's thread
        if chunk.last:
            held.append(seen_first.wait(timeout=5))

    first_at = 0.0
    with FakeGeminiServer(answering(TEXT), on_chunk=hold_the_last) as server:
        async with (
            Gemini(api_key=SECRET, base_url=server.base_url) as gemini,
            contextlib.aclosing(closable(gemini.stream(HI, Env.of(CONFIG)))) as items,
        ):
            async for item in items:
                if isinstance(item, str) and not seen_first.is_set():
                    first_at = time.monotonic()
                    seen_first.set()
    assert held == [True], "the client saw no delta until the whole answer was sent"
    (last,) = [chunk for chunk in server.sent_chunks if chunk.last]
    assert first_at < last.at


async def test_the_joined_deltas_are_the_final_text_and_generate_gives_the_same() -> None:
    calls = (
        ModelToolRequest(call_identifier(None, 0), "add", {"a": 1, "b": 2}),
        ModelToolRequest(call_identifier("id-2", 1), "now", {}),
    )
    kept = {"gemini": {"signatures": {"gemini-call-0": "c2ln"}, "text_signature": "dGV4dA=="}}
    answer = ModelOutput(MultimodalContent.of(TEXT), calls, provider_data=kept)
    with FakeGeminiServer(answering(answer), chunk_size=1) as server:
        deltas, streamed = await collect(server)
        async with Gemini(api_key=SECRET, base_url=server.base_url) as gemini:
            whole = await gemini.generate(HI, Env.of(CONFIG))
    assert len(deltas) == len(TEXT)
    assert isinstance(streamed, ModelOutput)
    assert isinstance(whole, ModelOutput)
    assert "".join(deltas) == streamed.content.as_string() == TEXT
    assert streamed == whole == answer
    assert streamed.tool_requests == calls
    assert streamed.provider_data == whole.provider_data == kept  # the signatures too
    assert streamed.usage == whole.usage
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    stream_path, whole_path = (request.path for request in server.requests)
    assert stream_path.endswith(":streamGenerateContent?alt=sse")
    assert whole_path.endswith(":generateContent")
    assert server.requests[0].body == server.requests[1].body


async def test_a_stream_cut_midway_ends_unavailable() -> None:
    with FakeGeminiServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.cut(after=3))
        deltas, last = await collect(server)
    assert deltas == ["The ", "quic", "k br"]
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"


async def test_a_stream_without_its_finish_is_unavailable() -> None:
    with FakeGeminiServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.cut(after=1000))  # every delta, never the end
        deltas, last = await collect(server)
    assert "".join(deltas) == TEXT
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"


async def test_an_error_midway_is_the_failure_its_code_names_without_the_key() -> None:
    with FakeGeminiServer(answering(TEXT), chunk_size=4) as server:
        server.inject(
            Fault.error_event(after=2, code="rate_limit_exceeded", message=f"slow {SECRET}")
        )
        deltas, last = await collect(server)
    assert deltas == ["The ", "quic"]
    assert isinstance(last, ModelFailure)
    assert last.kind == "rate_limited"
    assert SECRET not in last.message


async def test_http_errors_before_the_stream_are_typed_as_in_generate() -> None:
    with FakeGeminiServer(answering(TEXT)) as server:
        server.inject(
            Fault.status(429, retry_after="2"),
            Fault.status(401, message=f"bad key {SECRET}"),
            Fault.status(500),
        )
        failures = [(await collect(server))[1] for _ in range(3)]
    assert all(isinstance(failure, ModelFailure) for failure in failures)
    assert [(getattr(f, "kind", None), getattr(f, "retry_after", None)) for f in failures] == [
        ("rate_limited", 2.0),
        ("authentication", None),
        ("unavailable", None),
    ]
    assert all(SECRET not in str(failure) for failure in failures)


async def test_a_blocked_prompt_streams_into_a_refusal() -> None:
    with FakeGeminiServer(answering(ModelFailure("refused", "no"))) as server:
        deltas, last = await collect(server)
    assert deltas == []
    assert isinstance(last, ModelFailure)
    assert last.kind == "refused"


async def test_leaving_a_stalled_stream_closes_the_connection_at_once() -> None:
    with FakeGeminiServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.stall(after=2))
        async with Gemini(api_key=SECRET, base_url=server.base_url) as gemini:
            items = closable(gemini.stream(HI, Env.of(CONFIG)))
            assert await anext(items) == "The "
            assert await anext(items) == "quic"
            assert server.open_connections == 1
            await items.aclose()
            assert await connections_drop_to_zero(server, within=1.0)


async def test_cancelling_a_stalled_stream_closes_the_connection_at_once() -> None:
    received: list[ModelStreamItem] = []
    first = anyio.Event()
    with FakeGeminiServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.stall(after=1))
        async with Gemini(api_key=SECRET, base_url=server.base_url) as gemini:

            async def consume() -> None:
                async with contextlib.aclosing(
                    closable(gemini.stream(HI, Env.of(CONFIG)))
                ) as items:
                    async for item in items:
                        received.append(item)
                        first.set()

            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                with anyio.fail_after(5):
                    await first.wait()
                group.cancel_scope.cancel()
            assert await connections_drop_to_zero(server, within=1.0)
    assert received == ["The "]

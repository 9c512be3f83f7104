"""`OpenAI().stream`: native streaming on both APIs, against FakeOpenAIServer's
server-sent events, through the real `openai` client."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence

import anyio
import anyio.to_thread
import openai
import pytest

from stagefx import (
    Env,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    RateLimitHint,
    TokenUsage,
)
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx._model.generative import ModelStreamItem
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, SentChunk
from tests.helpers import answering, closable, connections_drop_to_zero, streamed
from tests.providers.openai.test_provider import SECRET

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

Config = OpenAIResponsesConfig | OpenAIChatConfig
CONFIGS = [OpenAIResponsesConfig(model="gpt-4o"), OpenAIChatConfig(model="llama3")]
TEXT = "The quick brown fox jumps over the lazy dog."
HI = ModelRequest("Be brief.", (ModelInput.of("hi there"),))
LIMITS = {"x-ratelimit-remaining-tokens": "120", "x-ratelimit-reset-tokens": "6s"}


@pytest.fixture(params=CONFIGS, ids=["responses", "chat"])
def config(request: pytest.FixtureRequest) -> Config:
    chosen = request.param
    assert isinstance(chosen, OpenAIResponsesConfig | OpenAIChatConfig)
    return chosen


async def collect(
    server: FakeOpenAIServer, config: Config, request: ModelRequest = HI
) -> tuple[list[str], ModelOutput | ModelFailure]:
    """The deltas of one streamed call, and its last item."""
    provider = OpenAI(api_key=SECRET, base_url=server.base_url)
    return await streamed(provider, request, Env.of(config))


# Deltas arrive as they are sent -------------------------------------------------------


async def test_the_first_delta_arrives_before_the_server_sends_its_last_chunk(
    config: Config,
) -> None:
    seen_first = threading.Event()
    held: list[bool] = []

    def hold_the_last(chunk: SentChunk) -> None:  # on the server's thread
        if chunk.last:
            held.append(seen_first.wait(timeout=5))

    first_at = 0.0
    with FakeOpenAIServer(answering(TEXT), on_chunk=hold_the_last) as server:
        async with (
            OpenAI(api_key=SECRET, base_url=server.base_url) as provider,
            contextlib.aclosing(closable(provider.stream(HI, Env.of(config)))) as items,
        ):
            async for item in items:
                if isinstance(item, str) and not seen_first.is_set():
                    first_at = time.monotonic()
                    seen_first.set()
    assert held == [True], "the client saw no delta until the whole answer was sent"
    (last,) = [chunk for chunk in server.sent_chunks if chunk.last]
    assert first_at < last.at
    assert [chunk.index for chunk in server.sent_chunks] == list(range(len(server.sent_chunks)))


async def test_the_joined_deltas_are_the_final_text_with_the_servers_usage(
    config: Config,
) -> None:
    usage = TokenUsage("fake-model", 11, 7)
    with FakeOpenAIServer(answering(TEXT), chunk_size=1) as server:
        deltas, last = await collect(server, config)
    assert len(deltas) == len(TEXT)  # one a character, as the server cut it
    assert isinstance(last, ModelOutput)
    assert "".join(deltas) == last.content.as_string() == TEXT
    assert last.finish_reason == "stop"
    assert last.usage == TokenUsage("fake-model", 4, 9)  # the fake's count: words in, words out
    with FakeOpenAIServer(answering(ModelOutput(last.content, usage=usage))) as server:
        _, last = await collect(server, config)
    assert isinstance(last, ModelOutput)
    assert last.usage == usage


async def test_a_streamed_answer_is_exactly_what_generate_gives(config: Config) -> None:
    calls = (
        ModelToolRequest("call_1", "add", {"a": 1, "b": 2}),
        ModelToolRequest("call_2", "lookup", {"query": "weather in Oslo", "days": 3}),
        ModelToolRequest("call_3", "now", {}),
    )
    answer = ModelOutput.of("Let me check three things.", tool_requests=calls)
    with FakeOpenAIServer(answering(answer), headers=LIMITS, chunk_size=3) as server:
        deltas, streamed = await collect(server, config)
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            whole = await provider.generate(HI, Env.of(config))
    assert isinstance(streamed, ModelOutput)
    assert isinstance(whole, ModelOutput)
    assert streamed == whole == answer
    assert "".join(deltas) == "Let me check three things."
    assert streamed.tool_requests == calls
    assert streamed.usage == whole.usage
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    assert streamed.limits == whole.limits == RateLimitHint(remaining_tokens=120, reset_tokens=6.0)


async def test_tool_calls_alone_stream_no_text(config: Config) -> None:
    calls = (ModelToolRequest("a", "one", {"x": 1}), ModelToolRequest("b", "two", {"y": [1, 2]}))
    with FakeOpenAIServer(answering(ModelOutput(tool_requests=calls)), chunk_size=2) as server:
        deltas, last = await collect(server, config)
    assert deltas == []
    assert isinstance(last, ModelOutput)
    assert last.tool_requests == calls
    assert last.content.is_empty


async def test_the_request_asks_for_a_stream(config: Config) -> None:
    with FakeOpenAIServer(answering("ok")) as server:
        await collect(server, config)
    (sent,) = server.requests
    assert sent.body["stream"] is True
    if isinstance(config, OpenAIChatConfig):
        assert sent.body["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in sent.body
    assert server.model_requests[0].context == HI.context


async def test_structured_output_streams(config: Config) -> None:
    document = json.dumps({"languages": ["Python", "Rust", "Go"], "count": 3})
    request = ModelRequest("", (ModelInput.of("three languages"),), output=OutputSpec(mode="json"))
    with FakeOpenAIServer(answering(document), chunk_size=5) as server:
        deltas, last = await collect(server, config, request)
    assert len(deltas) > 1
    assert isinstance(last, ModelOutput)
    assert (
        json.loads("".join(deltas))
        == json.loads(last.content.as_string())
        == {
            "languages": ["Python", "Rust", "Go"],
            "count": 3,
        }
    )
    assert server.model_requests[0].output == OutputSpec(mode="json")


async def test_a_thousand_chunks_from_a_chunking_function(config: Config) -> None:
    def thousand(text: str) -> Sequence[str]:
        size = len(text)
        return [text[index * size // 1000 : (index + 1) * size // 1000] for index in range(1000)]

    text = "".join(chr(ord("a") + index % 26) for index in range(3000))
    with FakeOpenAIServer(answering(text), chunk_size=thousand, record=False) as server:
        deltas, last = await collect(server, config)
    assert len(deltas) == 1000
    assert isinstance(last, ModelOutput)
    assert "".join(deltas) == text
    assert server.sent_chunks == []  # record=False keeps none


async def test_a_refusal_streams_into_a_refused_failure(config: Config) -> None:
    with FakeOpenAIServer(answering(ModelFailure("refused", "not that"))) as server:
        deltas, last = await collect(server, config)
    assert deltas == []
    assert last == ModelFailure("refused", "OpenAI: the model refused: not that")


# Failures ---------------------------------------------------------------------------------


async def test_a_stream_cut_midway_ends_unavailable(config: Config) -> None:
    with FakeOpenAIServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.cut(after=3))
        deltas, last = await collect(server, config)
    assert deltas == ["The ", "quic", "k br"]
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"
    assert "broke off" in last.message


async def test_a_stream_cut_before_its_end_ends_unavailable(config: Config) -> None:
    with FakeOpenAIServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.cut(after=1000))  # every delta, but never the end
        deltas, last = await collect(server, config)
    assert "".join(deltas) == TEXT
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("server_error", "unavailable"),
        ("rate_limit_exceeded", "rate_limited"),
        ("context_length_exceeded", "context_too_long"),
        (None, "unavailable"),
    ],
)
async def test_an_error_event_midway_is_the_failure_its_code_names(
    config: Config, code: str | None, kind: str
) -> None:
    message = f"went wrong with key {SECRET}"
    with FakeOpenAIServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.error_event(after=2, code=code, message=message))
        deltas, last = await collect(server, config)
    assert deltas == ["The ", "quic"]
    assert isinstance(last, ModelFailure)
    assert last.kind == kind
    assert "went wrong" in last.message
    assert SECRET not in last.message


async def test_an_error_event_fails_generate_the_same_way(config: Config) -> None:
    with FakeOpenAIServer(answering(TEXT)) as server:
        server.inject(Fault.error_event(after=2, code="rate_limit_exceeded"))
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            whole = await provider.generate(HI, Env.of(config))
    assert isinstance(whole, ModelFailure)
    assert whole.kind == "rate_limited"


async def test_a_429_before_the_stream_is_rate_limited_with_retry_after(config: Config) -> None:
    with FakeOpenAIServer(answering(TEXT)) as server:
        server.inject(Fault.status(429, retry_after="2"))
        deltas, last = await collect(server, config)
    assert deltas == []
    assert isinstance(last, ModelFailure)
    assert last.kind == "rate_limited"
    assert last.retry_after == 2.0


async def test_other_http_errors_before_the_stream_are_typed_as_in_generate(
    config: Config,
) -> None:
    with FakeOpenAIServer(answering(TEXT)) as server:
        server.inject(
            Fault.status(401, message=f"Incorrect API key provided: {SECRET}"),
            Fault.status(400, code="context_length_exceeded"),
            Fault.drop(),
        )
        kinds = []
        for _ in range(3):
            deltas, last = await collect(server, config)
            assert deltas == []
            assert isinstance(last, ModelFailure)
            assert SECRET not in last.message
            kinds.append(last.kind)
    assert kinds == ["authentication", "context_too_long", "unavailable"]


SSE = {"Content-Type": "text/event-stream"}


@pytest.mark.parametrize(
    "body",
    [
        'data: {"not json\n\n',
        "data: [1, 2, 3]\n\n",
        'data: {"type": "response.output_text.delta", "delta": 7}\n\n'
        'data: {"choices": [{"index": 0, "delta": {"content": 7}}]}\n\n',
        "data: \xff\xfe\n\n",
    ],
    ids=["not-json", "not-an-object", "wrong-shapes", "not-utf8"],
)
async def test_chunks_that_cannot_be_read_end_unavailable(config: Config, body: str) -> None:
    with FakeOpenAIServer(answering(TEXT)) as server:
        server.inject(Fault.raw(body.encode("latin-1"), headers=SSE))
        deltas, last = await collect(server, config)
    assert deltas == []
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"
    assert "malformed stream" in last.message


async def test_a_stream_that_ends_without_its_answer_is_unavailable(config: Config) -> None:
    partial = (
        'event: response.output_text.delta\ndata: {"type": "response.output_text.delta",'
        ' "delta": "Hel"}\n\n'
        'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
    )
    with FakeOpenAIServer(answering(TEXT)) as server:
        server.inject(Fault.raw(partial, headers=SSE))
        deltas, last = await collect(server, config)
    assert deltas == ["Hel"]
    assert isinstance(last, ModelFailure)
    assert last.kind == "unavailable"
    assert "ended before" in last.message


# Leaving early ------------------------------------------------------------------------------


async def test_leaving_a_stalled_stream_closes_the_connection_at_once(config: Config) -> None:
    with FakeOpenAIServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.stall(after=2))
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            items = closable(provider.stream(HI, Env.of(config)))
            assert await anext(items) == "The "
            assert await anext(items) == "quic"
            assert server.open_connections == 1
            await items.aclose()
            assert await connections_drop_to_zero(server, within=1.0)


async def test_cancelling_a_stalled_stream_closes_the_connection_at_once(config: Config) -> None:
    received: list[ModelStreamItem] = []
    first = anyio.Event()
    with FakeOpenAIServer(answering(TEXT), chunk_size=4) as server:
        server.inject(Fault.stall(after=1))
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:

            async def consume() -> None:
                async with contextlib.aclosing(
                    closable(provider.stream(HI, Env.of(config)))
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


async def test_leaving_after_the_first_delta_closes_the_connection(config: Config) -> None:
    long_text = " ".join(["word"] * 2000)
    with FakeOpenAIServer(answering(long_text), chunk_size=5) as server:
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            async with contextlib.aclosing(closable(provider.stream(HI, Env.of(config)))) as items:
                async for item in items:
                    assert isinstance(item, str)
                    break
            assert await connections_drop_to_zero(server, within=1.0)


# The fake speaks OpenAI's own SSE ------------------------------------------------------------


async def test_the_raw_openai_client_streams_responses_from_the_fake() -> None:
    with FakeOpenAIServer(answering(TEXT), chunk_size=6) as server:
        client = openai.AsyncOpenAI(api_key=SECRET, base_url=server.base_url, max_retries=0)
        async with client:
            stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
            kinds: list[str] = []
            deltas: list[str] = []
            completed = None
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
                elif event.type == "response.completed":
                    completed = event.response
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    assert "".join(deltas) == TEXT
    assert len(deltas) == 8
    assert completed is not None
    assert completed.output_text == TEXT
    assert completed.usage is not None
    assert completed.usage.output_tokens == 9


async def test_the_raw_openai_client_streams_chat_completions_from_the_fake() -> None:
    with FakeOpenAIServer(answering(TEXT), chunk_size=6) as server:
        client = openai.AsyncOpenAI(api_key=SECRET, base_url=server.base_url, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="llama3",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == TEXT
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    assert server.sent_chunks[-1].data == "[DONE]"
    assert server.sent_chunks[-1].last


async def test_without_include_usage_the_chat_stream_has_no_usage_chunk() -> None:
    with FakeOpenAIServer(answering(TEXT)) as server:
        client = openai.AsyncOpenAI(api_key=SECRET, base_url=server.base_url, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_streaming_faults_need_a_count_of_chunks() -> None:
    with pytest.raises(ValueError, match="after="):
        Fault.cut(after=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        FakeOpenAIServer(chunk_size=0)

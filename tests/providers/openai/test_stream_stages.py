"""`Stage.stream` end to end: the OpenAI provider streaming from
`FakeOpenAIServer` over HTTP, on both APIs and both anyio backends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from stagefx import (
    Env,
    Finished,
    ModelInput,
    ModelOutput,
    ModelRequest,
    ModelToolRequest,
    Retrying,
    Stage,
    StageEvent,
    StageException,
    StageState,
    TextDelta,
    TokenUsage,
    ToolAnswered,
    ToolCalled,
    UsageTotals,
)
from stagefx._codec import encode_state
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, Recorder, SentChunk
from stagefx.testing._models import Answer
from tests.helpers import ROOT, add, events_of, texts

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

KEY = "sk-test-not-a-real-key-000000"
Config = OpenAIResponsesConfig | OpenAIChatConfig
TEXT = "Paris is the capital of France, on the Seine."


@pytest.fixture(
    params=[OpenAIResponsesConfig(model="gpt-4o"), OpenAIChatConfig(model="gpt-4o")],
    ids=["responses", "chat"],
)
def config(request: pytest.FixtureRequest) -> Config:
    chosen = request.param
    assert isinstance(chosen, OpenAIResponsesConfig | OpenAIChatConfig)
    return chosen


def said(request: ModelRequest) -> str:
    last = request.context[-1]
    return last.content.as_string() if isinstance(last, ModelInput) else ""


async def test_the_first_delta_arrives_before_the_server_sends_its_last_chunk(
    config: Config,
) -> None:
    seen_first = threading.Event()
    held: list[bool] = []

    def hold_the_last(chunk: SentChunk) -> None:  # on the server's thread
        if chunk.last:
            held.append(seen_first.wait(timeout=5))

    first_at = 0.0
    with FakeOpenAIServer(lambda request: TEXT, on_chunk=hold_the_last) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            stream = Stage.completion("capital?").stream(env=Env.of(provider, config))
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, TextDelta) and not seen_first.is_set():
                        first_at = time.monotonic()
                        seen_first.set()
    assert held == [True]
    (last,) = [chunk for chunk in server.sent_chunks if chunk.last]
    assert first_at < last.at


async def test_joined_deltas_are_the_final_text_and_usage_is_the_servers(config: Config) -> None:
    usage = TokenUsage("fake-model", 12, 34)  # the model the server says answered
    answer = ModelOutput(ModelOutput.of(TEXT).content, usage=usage)
    with FakeOpenAIServer(lambda request: answer, chunk_size=2) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            events = await events_of(Stage.completion("capital?"), Env.of(provider, config))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == len(TEXT) // 2 + 1
    last = events[-1]
    assert isinstance(last, Finished)
    state = last.outcome.unwrap()
    assert texts(events) == state.result.as_string() == TEXT
    assert state.get(UsageTotals) == UsageTotals((usage,))


def adding(request: ModelRequest) -> Answer:
    last = request.context[-1]
    if isinstance(last, ModelInput) and last.tool_responses:
        return f"The sum is {last.tool_responses[0].content.as_string()}."
    return ModelOutput.of(tool_requests=(ModelToolRequest("call_1", "add", {"a": 2, "b": 3}),))


async def test_a_tool_round_trip_streams_called_then_answered(config: Config) -> None:
    with FakeOpenAIServer(adding) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            events = await events_of(
                Stage.completion("2+3?", tools=[add]), Env.of(provider, config)
            )
    kinds = [type(event) for event in events]
    assert kinds.index(ToolCalled) < kinds.index(ToolAnswered) < kinds.index(Finished)
    called = events[kinds.index(ToolCalled)]
    assert isinstance(called, ToolCalled)
    assert called.request.arguments == {"a": 2, "b": 3}
    assert texts(events) == "The sum is 5."


async def test_concurrent_branches_interleave_each_with_its_own_path(config: Config) -> None:
    both_seen = threading.Event()  # the client has deltas of both branches

    deltas: dict[str, int] = {}

    async def hold_the_rest(chunk: SentChunk) -> None:  # each stream's third delta waits for both
        if '"delta"' in chunk.data:
            deltas[chunk.response_id] = deltas.get(chunk.response_id, 0) + 1
            if deltas[chunk.response_id] == 3:
                await asyncio.to_thread(both_seen.wait, 5)

    def first(branches: Sequence[StageState | StageException]) -> StageState:
        branch = branches[0]
        assert isinstance(branch, StageState)
        return branch

    pipeline = Stage.concurrent(
        Stage.completion("left").with_meta(name="left"),
        Stage.completion("right").with_meta(name="right"),
        merge=first,
    )
    events: list[StageEvent] = []
    with FakeOpenAIServer(
        lambda r: f"{said(r)} " * 6, chunk_size=5, on_chunk=hold_the_rest
    ) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            stream = pipeline.stream(env=Env.of(provider, config))
            async with contextlib.aclosing(stream) as reading:
                async for event in reading:
                    events.append(event)
                    seen = {e.stage_path for e in events if isinstance(e, TextDelta)}
                    if seen == {("left",), ("right",)}:
                        both_seen.set()
    paths = [e.stage_path for e in events if isinstance(e, TextDelta)]
    assert texts(events, ("left",)) == "left " * 6
    assert texts(events, ("right",)) == "right " * 6
    switches = sum(1 for a, b in itertools.pairwise(paths) if a != b)
    assert switches >= 2  # interleaved, not one branch's stream after the other's


async def test_a_stream_cut_under_retry_gives_retrying_then_a_whole_second_attempt(
    config: Config,
) -> None:
    with FakeOpenAIServer(lambda request: TEXT, chunk_size=4) as server:
        server.inject(Fault.cut(after=3))
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            events = await events_of(
                Stage.completion("capital?").with_retry(limit=1), Env.of(provider, config)
            )
    kinds = [type(event) for event in events]
    retry = kinds.index(Retrying)
    assert texts(events[:retry]) == TEXT[:12]  # three chunks, then the cut
    assert texts(events[retry + 1 :]) == TEXT  # the second attempt, whole
    last = events[-1]
    assert isinstance(last, Finished)
    assert last.outcome.unwrap().result.as_string() == TEXT


async def test_leaving_early_closes_the_http_stream_within_a_second_and_leaves_no_task(
    config: Config,
) -> None:
    with FakeOpenAIServer(lambda request: TEXT, chunk_size=4) as server:
        server.inject(Fault.stall(after=2))
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            before = len(anyio.get_running_tasks())
            pipeline = Stage.sequence(Stage.completion("a"), Stage.completion("b"))
            stream = pipeline.with_retry(limit=3).stream(env=Env.of(provider, config))
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    assert isinstance(event, TextDelta)
                    break
            left = time.monotonic()
            closed = await anyio.to_thread.run_sync(
                lambda: server.wait_for_connections(0, timeout=1.0)
            )
            assert closed, "the HTTP stream is still open"
            assert time.monotonic() - left < 1.0
            assert len(anyio.get_running_tasks()) == before
        assert len(server.requests) == 1  # no further request


REPLAY = """
import asyncio, contextlib, json, sys
from stagefx import Env, Finished, TextDelta, ctx
from stagefx._codec import encode_state
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.testing import Recorder
from tests.providers.openai.test_stream_stages import recorded_pipeline

async def main():
    config = (OpenAIChatConfig if sys.argv[2] == "chat" else OpenAIResponsesConfig)(model="gpt-4o")
    recorder = Recorder(sys.argv[1], mode="replay")
    # No server: the provider points nowhere; a call reaching it would fail.
    async with ctx.scope("replay", config, recorder,
                         disposables=(OpenAI(api_key="sk-none-000000", base_url="http://127.0.0.1:9"),)):
        deltas, final = [], None
        async with contextlib.aclosing(recorded_pipeline().stream()) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    deltas.append(event.text)
                if isinstance(event, Finished):
                    final = encode_state(event.outcome.unwrap())
    print(json.dumps({"deltas": deltas, "state": final}))

asyncio.run(main())
"""


def recorded_pipeline() -> Stage:
    return Stage.sequence(Stage.completion("capital?"), Stage.completion("2+3?", tools=[add]))


async def test_a_streamed_pipeline_recorded_replays_as_a_stream_in_a_fresh_process(
    config: Config, tmp_path: Path
) -> None:
    cassette = tmp_path / "streamed.json"

    def answer(request: ModelRequest) -> Answer:
        return TEXT if said(request) == "capital?" else adding(request)

    with FakeOpenAIServer(answer, chunk_size=5) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url) as provider:
            events = await events_of(
                recorded_pipeline(), Env.of(provider, config, Recorder(cassette))
            )
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    last = events[-1]
    assert isinstance(last, Finished)
    assert KEY not in cassette.read_text()
    kind = "chat" if isinstance(config, OpenAIChatConfig) else "responses"
    with anyio.fail_after(60):
        replayed = await anyio.run_process(
            [sys.executable, "-c", REPLAY, str(cassette), kind], cwd=ROOT
        )
    shown = json.loads(replayed.stdout)
    assert shown["deltas"] == deltas
    assert len(deltas) > 3
    assert shown["state"] == json.loads(json.dumps(encode_state(last.outcome.unwrap())))

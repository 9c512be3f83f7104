"""The model boundary: one path, one order of layers, one encoding, for
model calls streamed or whole and for tool calls."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagefx import (
    LAYER_ORDER,
    CallLayer,
    Env,
    Finished,
    ModelOutput,
    ModelPath,
    ModelRequest,
    ModelStream,
    ModelToolRequest,
    RateLimits,
    RecordingTracer,
    Stage,
    StageState,
    TextDelta,
    TokenUsage,
    ToolAnswered,
    tool,
)
from stagefx._codec import encode_state
from stagefx._core.iteration import close_iterator
from stagefx.testing import Recorder, ScriptedModel, VirtualClock
from tests.helpers import ROOT, events_of

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


class Tag(CallLayer):
    """Notes, in `seen`, each call passing through it, before and after."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    async def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        self.seen.append(f"{self.name}>")
        stream = inner.stream(request, env)
        try:
            async for item in stream:
                yield item  # the answer is read last: what follows runs as the stream closes
        finally:
            await close_iterator(stream)
            self.seen.append(f"<{self.name}")


async def test_layers_nest_in_the_documented_order_whatever_the_env_order() -> None:
    assert LAYER_ORDER == ("durable", "recording", "pacing", "yours")
    seen: list[str] = []

    class Pacing(Tag):
        place = "pacing"

    class Recording(Tag):
        place = "recording"

    env = Env.of(
        ScriptedModel("hi"),
        Tag("mine", seen),
        Pacing("pacing", seen),
        Tag("mine too", seen),
        Recording("recording", seen),
    )
    await Stage.completion("hello").execute(env=env)
    assert seen == [
        "recording>",
        "pacing>",
        "mine>",
        "mine too>",
        "<mine too",
        "<mine",
        "<pacing",
        "<recording",
    ]


@tool
async def scale(x: float) -> float:
    """Scale a number."""
    return x * 2


NAN_CALL = ModelOutput.of(
    tool_requests=(ModelToolRequest("c1", "scale", {"x": math.nan}),),
)


def nan_pipeline() -> Stage:
    return Stage.completion("scale nan", tools=[scale])


async def test_tool_arguments_json_cannot_hold_get_one_outcome_live_recorded_and_replayed(
    tmp_path: Path,
) -> None:
    live = await nan_pipeline().execute(env=Env.of(ScriptedModel(NAN_CALL, "done")))
    cassette = tmp_path / "nan.json"
    recorded = await nan_pipeline().execute(
        env=Env.of(ScriptedModel(NAN_CALL, "done"), Recorder(cassette, mode="record"))
    )
    replayed = await nan_pipeline().execute(
        env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
    )
    assert live == recorded == replayed
    answered = live.context[2]
    response = answered.tool_responses[0]  # type: ignore[union-attr]  # a tool round's input
    assert response.error
    assert "not JSON" in response.content.as_string()
    huge = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "scale", {"x": 10**5000}),))
    huge_live = await nan_pipeline().execute(env=Env.of(ScriptedModel(huge, "done")))
    huge_recorded = await nan_pipeline().execute(
        env=Env.of(ScriptedModel(huge, "done"), Recorder(tmp_path / "huge.json", mode="record"))
    )
    assert huge_live == huge_recorded


async def test_the_generate_span_carries_the_time_to_the_first_delta() -> None:
    clock = VirtualClock()

    class Late(ScriptedModel.__base__):  # type: ignore[name-defined,misc]  # GenerativeModel
        async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
            await env.clock.sleep(0.25)
            yield "first"
            await env.clock.sleep(1.0)
            yield ModelOutput.of("first")

    tracer = RecordingTracer()
    await events_of(Stage.completion("hi"), Env.of(Late(), clock, tracer))
    generate = next(span for span in tracer.spans if span.name == "generate")
    assert generate.attributes["time_to_first_delta_ms"] == 250.0


async def test_rate_limits_admit_a_stream_before_it_starts_and_settle_its_usage_at_the_end() -> (
    None
):
    clock = VirtualClock()
    limits = RateLimits(requests_per_minute=60, tokens_per_minute=6_000)
    answer = ModelOutput(ModelOutput.of("streamed text").content, usage=TokenUsage("m", 3, 4))
    env = Env.of(ScriptedModel(answer, answer, chunk_size=2), limits, clock)
    first = await events_of(Stage.completion("a"), env)
    second = await events_of(Stage.completion("b"), env)
    assert "".join(e.text for e in first if isinstance(e, TextDelta)) == "streamed text"
    assert isinstance(second[-1], Finished)
    assert clock.now() >= 1.0  # the second call was paced: one a second at 60 rpm
    state = second[-1].outcome.unwrap()
    assert state.result.as_string() == "streamed text"


REPLAY = """
import asyncio, contextlib, json, sys
from stagefx import Env, Finished, Stage, TextDelta
from stagefx._codec import encode_state
from stagefx.testing import Recorder, ScriptedModel
from tests.model.test_boundary import streamed_pipeline

async def main():
    env = Env.of(ScriptedModel(), Recorder(sys.argv[1], mode="replay"))
    deltas, final = [], None
    async with contextlib.aclosing(streamed_pipeline().stream(env=env)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                deltas.append([event.text, list(event.stage_path)])
            if isinstance(event, Finished):
                final = encode_state(event.outcome.unwrap())
    print(json.dumps({"deltas": deltas, "state": final}))

asyncio.run(main())
"""


def streamed_pipeline() -> Stage:
    return Stage.sequence(
        Stage.completion("first").with_meta(name="one"),
        Stage.completion("second", tools=[scale]).with_meta(name="two"),
    )


async def test_a_streamed_run_recorded_replays_as_the_same_stream_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "streamed.json"
    call = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "scale", {"x": 1.5}),))
    model = ScriptedModel("a streamed answer", call, "three, it is", chunk_size=3)
    events = await events_of(streamed_pipeline(), Env.of(model, Recorder(cassette)))
    deltas = [[e.text, list(e.stage_path)] for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 10
    assert any(isinstance(e, ToolAnswered) for e in events)
    final = events[-1]
    assert isinstance(final, Finished)
    with anyio.fail_after(60):
        replayed = await anyio.run_process([sys.executable, "-c", REPLAY, str(cassette)], cwd=ROOT)
    shown = json.loads(replayed.stdout)
    assert shown["deltas"] == deltas
    assert shown["state"] == json.loads(json.dumps(encode_state(final.outcome.unwrap())))


async def test_a_streamed_recording_replays_whole_when_not_streamed(tmp_path: Path) -> None:
    cassette = tmp_path / "streamed.json"
    model = ScriptedModel("in pieces", chunk_size=2)
    await events_of(Stage.completion("hi"), Env.of(model, Recorder(cassette)))
    state = await Stage.completion("hi").execute(
        env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
    )
    assert state.result.as_string() == "in pieces"
    assert isinstance(state, StageState)


json_adjacent = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**3_990, max_value=10**4_100)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


@tool
async def take(x: float) -> float:
    """Take a number."""
    return x


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None)
@given(value=json_adjacent)
def test_tool_arguments_of_any_json_adjacent_value_give_one_outcome_live_recorded_replayed(
    backend: str, value: object
) -> None:
    call = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "take", {"x": value}),))
    pipeline = Stage.completion("take it", tools=[take])

    async def check() -> None:
        with tempfile.TemporaryDirectory() as folder:
            cassette = Path(folder) / "c.json"
            live = await pipeline.attempt(env=Env.of(ScriptedModel(call, "done")))
            recorded = await pipeline.attempt(
                env=Env.of(ScriptedModel(call, "done"), Recorder(cassette, mode="record"))
            )
            replayed = await pipeline.attempt(
                env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
            )
        assert live.unwrap() == recorded.unwrap() == replayed.unwrap()

    anyio.run(check, backend=backend)


async def test_provider_data_json_cannot_hold_fails_live_as_it_would_recorded(
    tmp_path: Path,
) -> None:
    broken = ModelOutput(ModelOutput.of("hi").content, provider_data={"x": {1, 2}})
    live = await Stage.completion("hi").attempt(env=Env.of(ScriptedModel(broken)))
    recorded = await Stage.completion("hi").attempt(
        env=Env.of(ScriptedModel(broken), Recorder(tmp_path / "c.json", mode="record"))
    )
    for outcome in (live, recorded):
        assert "provider_data" in str(outcome.failure())
    assert not (tmp_path / "c.json").exists()

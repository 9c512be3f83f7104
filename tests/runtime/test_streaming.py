"""`Stage.stream`: events while a pipeline runs, `Finished` last with what
`attempt` gives, and leaving early cancels at once."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio
import pydantic
import pytest
from returns.result import Failure

from stagefx import (
    Env,
    Finished,
    GenerativeModel,
    ModelFailure,
    ModelOutput,
    ModelRequest,
    ModelStream,
    ModelToolRequest,
    PartialOutput,
    Retrying,
    Stage,
    StageEvent,
    StageException,
    StageState,
    TextDelta,
    ToolAnswered,
    ToolCalled,
)
from stagefx.testing import ScriptedModel, VirtualClock
from tests.helpers import add, events_of, keep_first, texts

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


def finished(events: Sequence[StageEvent]) -> StageState:
    last = events[-1]
    assert isinstance(last, Finished)
    return last.outcome.unwrap()


async def test_deltas_arrive_in_order_and_join_to_the_final_text() -> None:
    model = ScriptedModel("Paris is the capital of France.", chunk_size=4)
    events = await events_of(Stage.completion("capital?"), Env.of(model))
    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == 8
    assert texts(events) == "Paris is the capital of France."
    assert finished(events).result.as_string() == "Paris is the capital of France."
    assert [type(event) for event in events][-1] is Finished


async def test_a_model_that_does_not_stream_gives_its_text_as_one_delta() -> None:
    events = await events_of(Stage.completion("hi"), Env.of(ScriptedModel("whole answer")))
    assert [event for event in events if isinstance(event, TextDelta)] == [
        TextDelta("whole answer")
    ]


async def test_finished_equals_what_attempt_gives() -> None:
    pipeline = Stage.sequence(Stage.completion("a"), Stage.completion("b").with_meta(name="b"))
    streamed = await events_of(pipeline, Env.of(ScriptedModel("one", "two", chunk_size=1)))
    attempted = await pipeline.attempt(env=Env.of(ScriptedModel("one", "two")))
    last = streamed[-1]
    assert isinstance(last, Finished)
    assert last.outcome == attempted
    assert texts(streamed, ()) == "one"
    assert texts(streamed, ("b",)) == "two"


async def test_a_failure_is_finished_as_a_value() -> None:
    model = ScriptedModel(ModelFailure("unavailable", "down"))
    events = await events_of(Stage.completion("hi").with_meta(name="ask"), Env.of(model))
    last = events[-1]
    assert isinstance(last, Finished)
    error = last.outcome.failure()
    assert isinstance(error, StageException)
    assert error.stage_path == ("ask",)


async def test_a_tool_round_trip_streams_called_then_answered() -> None:
    asks = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "add", {"a": 2, "b": 3}),))
    model = ScriptedModel(asks, "It is 5.", chunk_size=3)
    events = await events_of(Stage.completion("2+3?", tools=[add]), Env.of(model))
    kinds = [type(event).__name__ for event in events]
    assert kinds.index("ToolCalled") < kinds.index("ToolAnswered") < kinds.index("TextDelta")
    called = next(event for event in events if isinstance(event, ToolCalled))
    answered = next(event for event in events if isinstance(event, ToolAnswered))
    assert called.request.arguments == {"a": 2, "b": 3}
    assert answered.response.content.as_string() == "5"
    assert texts(events) == "It is 5."


class Slow(GenerativeModel):
    """Streams each word of `text`, sleeping `pause` seconds on the Env's clock between."""

    def __init__(self, text: str, pause: float) -> None:
        self.text = text
        self.pause = pause

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        return ModelOutput.of(self.text)

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        for word in self.text.split(" "):
            yield word + " "
            await env.clock.sleep(self.pause)
        yield ModelOutput.of(" ".join(self.text.split(" ")) + " ")


async def test_concurrent_branches_interleave_each_with_its_own_path() -> None:
    left = Stage.completion("l").with_meta(name="left")
    right = Stage.completion("r").with_meta(name="right")
    pipeline = Stage.concurrent(
        left.with_ctx(Slow("a b c d", 1.0)),
        right.with_ctx(Slow("w x y z", 1.5)),
        merge=keep_first,
    )
    events = await events_of(pipeline, Env.of(VirtualClock()))
    paths = [event.stage_path for event in events if isinstance(event, TextDelta)]
    assert set(paths) == {("left",), ("right",)}
    first_right = paths.index(("right",))
    assert ("left",) in paths[first_right:]  # interleaved, not one branch after the other
    assert texts(events, ("left",)) == "a b c d "
    assert texts(events, ("right",)) == "w x y z "


class CutOnce(GenerativeModel):
    """Streams half its text, then fails, on the first call; streams it all after."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        self.calls += 1
        half = len(self.text) // 2
        yield self.text[:half]
        if self.calls == 1:
            yield ModelFailure("unavailable", "the stream was cut")
            return
        yield self.text[half:]
        yield ModelOutput.of(self.text)


async def test_a_cut_stream_under_retry_gives_retrying_then_a_whole_second_attempt() -> None:
    model = CutOnce("hello there, world")
    events = await events_of(Stage.completion("hi").with_retry(limit=1), Env.of(model))
    kinds = [type(event) for event in events]
    retry = kinds.index(Retrying)
    before, after = events[:retry], events[retry + 1 :]
    assert texts(before) == "hello the"
    assert texts(after) == "hello there, world"
    assert finished(events).result.as_string() == "hello there, world"


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_structured_output_streams_as_partial_values_and_ends_validated() -> None:
    text = '{"name": "Ada Lovelace", "age": 36}'
    model = ScriptedModel(text, chunk_size=5)
    events = await events_of(Stage.completion("who?", output=Person), Env.of(model))
    partial = [event.value for event in events if isinstance(event, PartialOutput)]
    assert partial[-1] == {"name": "Ada Lovelace", "age": 36}
    assert {"name": "Ada L"} in partial  # a string is seen as it grows
    assert len(partial) >= 4
    assert finished(events).result.artifact(Person) == Person(name="Ada Lovelace", age=36)


async def test_a_cached_stage_gives_its_cached_text_as_one_delta() -> None:
    cached = Stage.completion("hi").cached()
    env = Env.of(ScriptedModel("cached answer", chunk_size=2))
    first = await events_of(cached, env)
    second = await events_of(cached, env)
    assert texts(first) == "cached answer"
    assert [event for event in second if isinstance(event, TextDelta)] == [
        TextDelta("cached answer")
    ]


class Endless(GenerativeModel):
    """Streams one delta, then waits forever; notes when its stream is closed."""

    def __init__(self) -> None:
        self.closed = anyio.Event()
        self.calls = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        self.calls += 1
        try:
            yield "first "
            await anyio.sleep_forever()
            yield ModelOutput.of("never")
        finally:
            self.closed.set()


async def test_leaving_early_cancels_the_run_closes_the_stream_and_leaves_no_task() -> None:
    model = Endless()
    before = len(anyio.get_running_tasks())
    pipeline = Stage.sequence(Stage.completion("a"), Stage.completion("b")).with_retry(limit=3)
    async with contextlib.aclosing(pipeline.stream(env=Env.of(model))) as stream:
        async for event in stream:
            assert event == TextDelta("first ")
            break
    assert model.closed.is_set()
    assert model.calls == 1  # no further request
    assert len(anyio.get_running_tasks()) == before


async def test_an_error_in_the_loop_body_is_not_masked_by_leaving() -> None:
    model = Endless()

    async def fail_in_the_loop() -> None:
        async with contextlib.aclosing(Stage.completion("a").stream(env=Env.of(model))) as stream:
            async for _ in stream:
                raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await fail_in_the_loop()
    assert model.closed.is_set()


async def test_cancelling_the_reader_cancels_the_run() -> None:
    model = Endless()
    with anyio.move_on_after(0.05):
        async with contextlib.aclosing(Stage.completion("a").stream(env=Env.of(model))) as stream:
            async for _ in stream:
                pass
    assert model.closed.is_set()


class Hostile(GenerativeModel):
    """A stream that misbehaves in the way `how` names."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        if self.how == "raises":
            yield "partial"
            raise RuntimeError("the model broke")
        if self.how == "garbage":
            yield 42  # type: ignore[misc]  # what a hostile model may do
            return
        if self.how == "empty":
            return
        yield "text"  # "unprintable": an answer whose error cannot be shown
        raise Unprintable()


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize("how", ["raises", "garbage", "empty", "unprintable"])
async def test_a_hostile_stream_ends_as_a_failure_not_an_exception(how: str) -> None:
    events = await events_of(Stage.completion("hi"), Env.of(Hostile(how)))
    last = events[-1]
    assert isinstance(last, Finished)
    assert isinstance(last.outcome, Failure)


async def test_a_model_defining_only_stream_also_answers_whole() -> None:
    model = CutOnce("abcdef")
    first = await Stage.completion("hi").attempt(env=Env.of(model))
    assert "the stream was cut" in str(first.failure())
    second = await Stage.completion("hi").execute(env=Env.of(model))
    assert second.result.as_string() == "abcdef"

"""`Stage.stream` against hostile models, layers, tools, callbacks and readers.

The promises under attack (DESIGN.md, "Streaming"):

1. The last event is always `Finished`, whose outcome is what `attempt()`
   gives for the same run; nothing but cancellation (and BaseExceptions that
   are not Exceptions) is raised, whatever a model, layer, tool or callback does.
2. Leaving early (a `break` inside `aclosing`, or the reader cancelled) at any
   event leaves no task and closes the model streams, on asyncio and trio.
3. The joined `TextDelta`s of one completion equal its final text; a Recorder
   replays a streamed call as the same deltas; a cached stage gives its
   cached text as one delta.
4. No secret reaches a failure's message, a tool's error answer, the logs or
   a cassette.

Hostile inputs are generated with hypothesis; every wait is on a
`VirtualClock`. A promise found broken keeps a minimal reproduction here,
marked `xfail(strict=True)` with what is broken.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from stagefx import (
    ArtifactContent,
    CallLayer,
    Clock,
    Env,
    Finished,
    GenerativeModel,
    ModelFailure,
    ModelOutput,
    ModelPath,
    ModelRequest,
    ModelStream,
    ModelToolRequest,
    MultimodalContent,
    PartialOutput,
    RateLimits,
    Retrying,
    Stage,
    StageEvent,
    StageException,
    StageState,
    TextDelta,
    ToolAnswered,
    ToolCalled,
    ctx,
    stage,
    tool,
)
from stagefx.testing import Recorder, ScriptedModel, VirtualClock
from tests.helpers import Unprintable, events_of, texts


async def at_once(*items: object) -> ModelStream:
    """A layer's stream with every item at hand, as a replay gives it (hostile items too)."""
    for item in items:
        yield item  # type: ignore[misc]  # hostile on purpose: any item


BACKENDS = ("asyncio", "trio")
NO_SURROGATES = st.characters(blacklist_categories=["Cs"])
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
EVENT_TYPES = (TextDelta, PartialOutput, ToolCalled, ToolAnswered, Retrying)

Outcome = Result[StageState, StageException]


# Helpers ---------------------------------------------------------------------


def well_formed(events: Sequence[StageEvent]) -> Outcome:
    """The stream's shape: events with paths, exactly one `Finished`, last,
    holding a printable `Result`. Its outcome."""
    assert events, "a stream must at least finish"
    last = events[-1]
    assert isinstance(last, Finished), f"the last event is {type(last).__name__}"
    assert sum(isinstance(event, Finished) for event in events) == 1
    for event in events[:-1]:
        assert isinstance(event, EVENT_TYPES), f"not an event: {event!r}"
        assert type(event.stage_path) is tuple
        assert all(type(name) is str for name in event.stage_path)
        if isinstance(event, TextDelta):
            assert isinstance(event.text, str)
            assert event.text
    outcome = last.outcome
    assert isinstance(outcome, Success | Failure)
    if isinstance(outcome, Failure):
        error = outcome.failure()
        assert isinstance(error, StageException)
        str(error)
        repr(error)
    else:
        assert isinstance(outcome.unwrap(), StageState)
    return outcome


class Same:
    """A state compared by equality, else by its repr (a NaN artifact is not
    equal to itself, but shows the same)."""

    def __init__(self, state: StageState) -> None:
        self.state = state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Same):
            return NotImplemented
        return self.state == other.state or repr(self.state) == repr(other.state)

    def __repr__(self) -> str:
        return repr(self.state)


def observed(outcome: Outcome, *, message: bool = True) -> object:
    """An outcome as comparable data (failures are never equal as objects):
    a success by its state, a failure by type, message, path, state and cause type."""
    if isinstance(outcome, Success):
        return ("success", Same(outcome.unwrap()))
    error = outcome.failure()
    return (
        "failure",
        type(error),
        error.message if message else None,
        error.stage_path,
        Same(error.state),
        type(error.__cause__),
    )


class HostileStr(str):
    """A str subclass whose comparisons, hash and rendering all raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq exploded")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("ne exploded")

    def __hash__(self) -> int:
        raise RuntimeError("hash exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class OddOutput(ModelOutput):  # type: ignore[misc]  # @final is advice; a provider may ignore it
    """A ModelOutput subclass whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


def hostile_error(kind: str) -> Exception:
    return {
        "plain": ValueError("bad"),
        "unprintable": Unprintable(),
        "empty": KeyError(),
        "stage exception": StageException("mine", state=StageState(result="unrelated")),
        "stop iteration": StopIteration("sync end"),
        "stop async iteration": StopAsyncIteration("async end"),
        "group": ExceptionGroup("several", [ValueError("a"), Unprintable()]),
        "recursion": RecursionError("deep"),
    }[kind]


ERROR_KINDS = st.sampled_from(
    [
        "plain",
        "unprintable",
        "empty",
        "stage exception",
        "stop iteration",
        "stop async iteration",
        "group",
        "recursion",
    ]
)

GARBAGE: dict[str, Callable[[], object]] = {
    "int": lambda: 42,
    "none": lambda: None,
    "bytes": lambda: b"bytes",
    "float": lambda: float("nan"),
    "hostile str": lambda: HostileStr("hostile"),
    "object": object,
    "tuple": lambda: ("a", "b"),
}

WRAPPERS: dict[str, Callable[[Stage], Stage]] = {
    "bare": lambda inner: inner,
    "named": lambda inner: inner.with_meta(name="named"),
    "retry": lambda inner: inner.with_retry(limit=1),
    "fallback": lambda inner: inner.with_fallback(Stage.noop),
    "sequence": lambda inner: Stage.sequence(Stage.noop, inner.with_meta(name="in"), Stage.noop),
    "timeout": lambda inner: inner.with_timeout(30),
    "volatile": lambda inner: inner.with_volatile_context(),
}
WRAPS = st.lists(st.sampled_from(sorted(WRAPPERS)), max_size=2)


def wrapped(inner: Stage, wraps: Sequence[str]) -> Stage:
    for name in wraps:
        inner = WRAPPERS[name](inner)
    return inner


async def stream_and_attempt(
    pipeline: Stage, make_env: Callable[[], Env], state: StageState | None = None
) -> tuple[list[StageEvent], Outcome]:
    streamed = await events_of(pipeline, make_env(), state)
    attempted = await pipeline.attempt(state, env=make_env())
    return streamed, attempted


# 1. Hostile model streams ----------------------------------------------------

# A plan is what one model call's stream does, step by step.
Step = tuple[str, object]

text_steps = st.text(NO_SURROGATES, min_size=1, max_size=6).map(lambda text: ("text", text))
garbage_steps = st.sampled_from(sorted(GARBAGE)).map(lambda kind: ("garbage", kind))
answer_steps = st.sampled_from(["output", "odd output", "failure", "tool call"]).map(
    lambda kind: ("answer", kind)
)
raise_steps = ERROR_KINDS.map(lambda kind: ("raise", kind))
sleep_steps = st.sampled_from([0.0, 0.5, 2.0]).map(lambda seconds: ("sleep", seconds))
plans = st.lists(
    st.one_of(text_steps, garbage_steps, answer_steps, raise_steps, sleep_steps), max_size=6
)


@tool
async def echo(text: str) -> str:
    """Echo the text."""
    return text


class Planned(GenerativeModel):
    """A model defining only `stream`, which follows `plan`; its `finally` does
    what `closing` says. `shape` makes `stream` something other than an
    async generator. Tool requests are answered on the next call with text."""

    def __init__(self, plan: Sequence[Step], closing: str = "quiet", shape: str = "agen") -> None:
        self.plan = plan
        self.closing = closing
        self.shape = shape
        self.open = 0
        self.calls = 0
        self.coroutines: list[Coroutine[object, object, ModelOutput]] = []

    def stream(self, request: ModelRequest, env: Env) -> ModelStream:  # shapes vary on purpose
        self.calls += 1
        if self.shape == "list":
            return ["text", ModelOutput.of("text")]  # type: ignore[return-value]  # hostile
        if self.shape == "none":
            return None  # type: ignore[return-value]  # hostile
        if self.shape == "sync stop iteration":
            return SyncStopIteration()  # type: ignore[return-value]  # hostile
        if self.shape == "async stop iteration":
            return AsyncStopIteration()  # type: ignore[return-value]  # hostile
        if self.shape == "int":
            return 7  # type: ignore[return-value]  # hostile
        if self.shape == "coroutine":
            self.coroutines.append(self._whole())
            return self.coroutines[-1]  # type: ignore[return-value]  # hostile: not iterable
        answered_tools = any(getattr(turn, "tool_responses", ()) for turn in request.context[-1:])
        return self._planned(env, answered_tools)

    async def _whole(self) -> ModelOutput:
        return ModelOutput.of("whole")

    async def _planned(self, env: Env, answered_tools: bool) -> ModelStream:
        self.open += 1
        said: list[str] = []
        try:
            if answered_tools:  # the round after a tool call: a plain answer
                yield "done"
                yield ModelOutput.of("done")
                return
            for step, what in self.plan:
                if step == "text":
                    said.append(str.__str__(what))
                    yield what  # type: ignore[misc]  # a str
                elif step == "garbage":
                    yield GARBAGE[what]()  # type: ignore[index, misc]  # hostile on purpose
                elif step == "answer":
                    yield self._answer(str(what), "".join(said))
                elif step == "raise":
                    raise hostile_error(str(what))
                else:
                    await env.clock.sleep(float(what))  # type: ignore[arg-type]  # seconds
        finally:
            self.open -= 1
            if self.closing == "raises":
                raise RuntimeError("close exploded")
            if self.closing == "unprintable":
                raise Unprintable()

    @staticmethod
    def _answer(kind: str, said: str) -> ModelOutput | ModelFailure:
        if kind == "output":
            return ModelOutput.of(said)
        if kind == "odd output":
            return OddOutput(MultimodalContent.of(said))
        if kind == "failure":
            return ModelFailure("unavailable", "the model is down")
        return ModelOutput.of(said, tool_requests=(ModelToolRequest("c1", "echo", {"text": "x"}),))


class SyncStopIteration:
    def __aiter__(self) -> SyncStopIteration:
        return self

    def __anext__(self) -> Awaitable[object]:
        raise StopIteration


class AsyncStopIteration:
    def __aiter__(self) -> AsyncStopIteration:
        return self

    async def __anext__(self) -> object:
        raise StopIteration


SHAPES = st.sampled_from(
    [
        "agen",
        "agen",
        "agen",
        "list",
        "none",
        "int",
        "coroutine",
        "sync stop iteration",
        "async stop iteration",
    ]
)
CLOSINGS = st.sampled_from(["quiet", "raises", "unprintable"])


def orderly(plan: Sequence[Step], shape: str) -> bool:
    """Whether the two ways of reading a stream (streamed, or collected by
    `generate`'s default) must agree on it: before it ends or raises, text
    deltas and at most one other item, last (None is skipped by both)."""
    if shape != "agen":
        return True
    items: list[str] = []
    for step, what in plan:
        if step == "raise":
            break
        if step == "text":
            items.append("text")
        elif step == "answer" or (step == "garbage" and what != "none"):
            items.append("other")
    others = [index for index, item in enumerate(items) if item == "other"]
    return not others or others == [len(items) - 1]


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(plan=plans, closing=CLOSINGS, shape=SHAPES, wraps=WRAPS)
def test_a_hostile_model_stream_always_finishes_and_raises_nothing(
    backend: str, plan: list[Step], closing: str, shape: str, wraps: list[str]
) -> None:
    pipeline = wrapped(Stage.completion("hi", tools=[echo]), wraps)
    models: list[Planned] = []

    def make_env() -> Env:
        models.append(Planned(plan, closing, shape))
        return Env.of(models[-1], VirtualClock())

    async def check() -> None:
        before = len(anyio.get_running_tasks())
        streamed, attempted = await stream_and_attempt(pipeline, make_env)
        assert len(anyio.get_running_tasks()) == before
        outcome = well_formed(streamed)
        assert all(model.open == 0 for model in models)
        if orderly(plan, shape):
            assert observed(outcome, message=False) == observed(attempted, message=False)

    try:
        anyio.run(check, backend=backend)
    finally:  # what the boundary left un-awaited (see the test after this one)
        for model in models:
            for coroutine in model.coroutines:
                coroutine.close()


def test_a_stream_returning_a_coroutine_is_closed_by_the_boundary() -> None:
    model = Planned([], shape="coroutine")

    async def check() -> None:
        outcome = well_formed(await events_of(Stage.completion("hi"), Env.of(model)))
        assert isinstance(outcome, Failure)

    try:
        anyio.run(check)
        assert [inspect.getcoroutinestate(each) for each in model.coroutines] == [
            inspect.CORO_CLOSED
        ]
    finally:
        for coroutine in model.coroutines:
            coroutine.close()


@pytest.mark.parametrize(
    "items",
    [
        pytest.param((42, ModelOutput.of("ab")), id="int before answer"),
        pytest.param((HostileStr("ab"), ModelOutput.of("ab")), id="str subclass delta"),
        pytest.param((ModelOutput.of("a"), ModelOutput.of("b")), id="two answers"),
        pytest.param((None, ModelOutput.of("ab")), id="known: None before answer"),
    ],
)
def test_finished_equals_attempt_when_a_stream_yields_garbage_before_its_answer(
    items: tuple[object, ...], request: pytest.FixtureRequest
) -> None:
    known = "known" in request.node.callspec.id

    class Garbled(GenerativeModel):
        async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
            for item in items:
                yield item  # type: ignore[misc]  # hostile on purpose

    class KnownLayer(CallLayer):  # a replay-like layer answering at once
        def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
            return at_once(*items)

    def make_env() -> Env:
        return Env.of(ScriptedModel(), KnownLayer()) if known else Env.of(Garbled())

    async def check() -> None:
        streamed, attempted = await stream_and_attempt(Stage.completion("hi"), make_env)
        assert observed(well_formed(streamed)) == observed(attempted)

    anyio.run(check)


class GenerateOnly(GenerativeModel):
    def __init__(self, answer: object) -> None:
        self.answer = answer

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        return self.answer  # type: ignore[return-value]  # garbage on purpose


class Empty(GenerativeModel):
    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        return
        yield  # an async generator that yields nothing


@pytest.mark.parametrize(
    "model", [Empty, lambda: GenerateOnly(None)], ids=["empty stream", "generate gives None"]
)
def test_finished_equals_attempt_for_a_broken_model_message_included(
    model: Callable[[], GenerativeModel],
) -> None:
    async def check() -> None:
        streamed, attempted = await stream_and_attempt(
            Stage.completion("hi"), lambda: Env.of(model())
        )
        assert observed(well_formed(streamed)) == observed(attempted)

    anyio.run(check)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    answer=st.sampled_from(
        [42, None, b"x", "text", ModelOutput, OddOutput(MultimodalContent.of("odd")), ("a",)]
    ),
    wraps=WRAPS,
)
def test_generate_returning_garbage_finishes_as_a_failure_as_attempt_does(
    backend: str, answer: object, wraps: list[str]
) -> None:
    pipeline = wrapped(Stage.completion("hi"), wraps)

    async def check() -> None:
        streamed, attempted = await stream_and_attempt(
            pipeline, lambda: Env.of(GenerateOnly(answer), VirtualClock())
        )
        outcome = well_formed(streamed)
        assert observed(outcome, message=False) == observed(attempted, message=False)
        if not isinstance(answer, ModelOutput) and "fallback" not in wraps:
            assert isinstance(outcome, Failure)

    anyio.run(check, backend=backend)


# 1b. Hostile layers ------------------------------------------------------------

LAYER_KINDS = [
    "passes on",
    "raises",
    "returns none",
    "returns list",
    "returns int",
    "known garbage",
    "known empty",
    "known answer",
    "yields garbage first",
    "swallows the answer",
    "raises midway",
    "close raises",
    "yields after the answer",
    "tool call raises",
    "tool call gives garbage",
]


class Hostile(CallLayer):
    """A layer misbehaving as `kind` says, on every model call and tool call."""

    def __init__(self, kind: str, error: str) -> None:
        self.kind = kind
        self.error = error
        self.open = 0

    def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        kind = self.kind
        if kind == "raises":
            raise hostile_error(self.error)
        if kind == "returns none":
            return None  # type: ignore[return-value]  # hostile
        if kind == "returns list":
            return ["a", ModelOutput.of("a")]  # type: ignore[return-value]  # hostile
        if kind == "returns int":
            return 3  # type: ignore[return-value]  # hostile
        if kind == "known garbage":
            return at_once(42)
        if kind == "known empty":
            return at_once()
        if kind == "known answer":
            return at_once("kno", "wn", ModelOutput.of("known"))
        if kind in ("passes on", "tool call raises", "tool call gives garbage"):
            return inner.stream(request, env)
        return self._wrapped(inner.stream(request, env))

    async def _wrapped(self, stream: ModelStream) -> ModelStream:
        self.open += 1
        try:
            if self.kind == "yields garbage first":
                yield 42  # type: ignore[misc]  # hostile
            async for item in stream:
                if self.kind == "raises midway" and not isinstance(item, str):  # deltas passed
                    raise hostile_error(self.error)
                if self.kind == "swallows the answer" and not isinstance(item, str):
                    continue
                yield item
            if self.kind == "yields after the answer":
                yield "more"
        finally:
            self.open -= 1
            if self.kind == "close raises":
                raise hostile_error(self.error)

    async def tool_call(
        self, tool_: object, request: object, context: object, inner: object
    ) -> object:
        if self.kind == "tool call raises":
            raise hostile_error(self.error)
        if self.kind == "tool call gives garbage":
            return Unprintable()  # no JSON, and its repr raises
        return await inner(tool_, request, context)  # type: ignore[operator]  # the ToolPath


def tool_then_text() -> ScriptedModel:
    calls = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "echo", {"text": "x"}),))
    return ScriptedModel(calls, "final answer", calls, "final answer", chunk_size=3)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(kind=st.sampled_from(LAYER_KINDS), error=ERROR_KINDS, wraps=WRAPS)
def test_a_hostile_layer_always_finishes_as_attempt_does(
    backend: str, kind: str, error: str, wraps: list[str]
) -> None:
    pipeline = wrapped(Stage.completion("hi", tools=[echo]), wraps)
    layers: list[Hostile] = []

    def make_env() -> Env:
        layers.append(Hostile(kind, error))
        return Env.of(tool_then_text(), layers[-1], VirtualClock())

    async def check() -> None:
        before = len(anyio.get_running_tasks())
        streamed, attempted = await stream_and_attempt(pipeline, make_env)
        assert len(anyio.get_running_tasks()) == before
        outcome = well_formed(streamed)
        assert all(layer.open == 0 for layer in layers)
        assert observed(outcome, message=False) == observed(attempted, message=False)

    anyio.run(check, backend=backend)


# 1c. Hostile tools and callbacks, while streaming --------------------------------


def callback_sites(error: Exception) -> dict[str, tuple[Stage, Callable[[], Env]]]:
    def throw(*args: object, **kwargs: object) -> object:
        raise error

    @stage
    async def custom(*, state: StageState) -> StageState:
        raise error

    @tool
    async def broken(text: str) -> str:
        """A tool that fails."""
        raise error

    @tool(stop_on_error=True)
    def broken_and_fatal(text: str) -> str:
        """A sync tool that fails and stops the pipeline."""
        raise error

    def asking(name: str) -> Callable[[], Env]:
        calls = ModelOutput.of(
            "let me see",
            tool_requests=(
                ModelToolRequest("c1", name, {"text": "x"}),
                ModelToolRequest("c2", "echo", {"text": "y"}),
            ),
        )
        return lambda: Env.of(ScriptedModel(calls, "done", calls, "done", chunk_size=2))

    def streaming() -> Env:
        return Env.of(ScriptedModel("streamed text", "again", chunk_size=4), VirtualClock())

    ask = Stage.completion("hi")
    return {
        "tool": (Stage.completion("hi", tools=[broken, echo]), asking("broken")),
        "fatal tool": (
            Stage.completion("hi", tools=[broken_and_fatal, echo]),
            asking("broken_and_fatal"),
        ),
        "transform_result": (Stage.sequence(ask, Stage.transform_result(throw)), streaming),  # type: ignore[arg-type]  # raising callback
        "transform_context": (Stage.sequence(ask, Stage.transform_context(throw)), streaming),  # type: ignore[arg-type]  # raising callback
        "when": (ask.when(throw), streaming),  # type: ignore[arg-type]  # raising callback
        "custom": (Stage.sequence(ask, custom), streaming),
        "retry delay": (
            Stage.sequence(ask, custom).with_retry(limit=1, delay=throw),  # type: ignore[arg-type]  # raising
            streaming,
        ),
        "retry catching": (
            Stage.sequence(ask, custom).with_retry(limit=1, catching=throw),  # type: ignore[arg-type]  # raising
            streaming,
        ),
        "merge": (Stage.concurrent(ask, custom, merge=throw), streaming),  # type: ignore[arg-type]  # raising
    }


SITES = sorted(callback_sites(ValueError()))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(site=st.sampled_from(SITES), kind=ERROR_KINDS, wraps=WRAPS)
def test_hostile_tools_and_callbacks_while_streaming_finish_as_attempt_does(
    backend: str, site: str, kind: str, wraps: list[str]
) -> None:
    inner, make_env = callback_sites(hostile_error(kind))[site]
    pipeline = wrapped(inner, wraps)

    async def check() -> None:
        streamed, attempted = await stream_and_attempt(pipeline, make_env)
        outcome = well_formed(streamed)
        assert observed(outcome) == observed(attempted)
        called = [event.request.identifier for event in streamed if isinstance(event, ToolCalled)]
        answered = [
            event.response.identifier for event in streamed if isinstance(event, ToolAnswered)
        ]
        assert sorted(called) == sorted(answered)  # every call answered, errors included
        for event in streamed:
            if isinstance(event, ToolAnswered) and event.response.tool != "echo":
                assert event.response.error

    anyio.run(check, backend=backend)


# 1d. Hostile partial JSON ----------------------------------------------------------


class Person(pydantic.BaseModel):
    name: str
    age: int


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(NO_SURROGATES, max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
fragments = st.one_of(
    json_values.map(json.dumps),
    st.builds(
        lambda name, age: json.dumps({"name": name, "age": age}), st.text(max_size=8), st.integers()
    ),
    st.integers(1, 400).map(lambda depth: "[" * depth),
    st.integers(1, 300).map(lambda depth: '{"a": ' * depth),
    st.integers(4000, 6000).map(lambda digits: "9" * digits),
    st.sampled_from(
        [
            "NaN",
            "-Infinity",
            "1e999999",
            "-",
            "tru",
            '"\\ud800"',
            '"\\u0000"',
            "\x00",
            '{"a": ',
            "]]",
        ]
    ),
    st.text(NO_SURROGATES, max_size=20),
)
partial_texts = st.lists(fragments, min_size=1, max_size=3).map("".join)
OUTPUTS: dict[str, object] = {"json": "json", "Person": Person, "yaml": "yaml", "text": "text"}


def is_json_data(value: object) -> bool:
    """Whether `value` is plain JSON data (looked at level by level, no recursion)."""
    level = [value]
    while level:
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                if not all(type(key) is str for key in item):
                    return False
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
            elif item is not None and type(item) not in (bool, int, float, str):
                return False
        level = below
    return True


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(text=partial_texts, chunk=st.integers(1, 40), output=st.sampled_from(sorted(OUTPUTS)))
def test_hostile_partial_json_never_breaks_the_run(
    backend: str, text: str, chunk: int, output: str
) -> None:
    assume(len(text) // chunk < 3000)  # the partial parse is redone per delta: keep it quick
    pipeline = Stage.completion("hi", output=OUTPUTS[output])  # type: ignore[arg-type]  # a str mode or a type

    async def check() -> None:
        streamed, attempted = await stream_and_attempt(
            pipeline, lambda: Env.of(ScriptedModel(text, text, chunk_size=chunk))
        )
        outcome = well_formed(streamed)
        assert observed(outcome) == observed(attempted)
        partial = [event.value for event in streamed if isinstance(event, PartialOutput)]
        if output in ("yaml", "text"):
            assert partial == []
        assert all(is_json_data(value) for value in partial)
        assert texts(streamed) == text

    anyio.run(check, backend=backend)


@pytest.mark.parametrize("output", ["json", "Person"])
def test_a_lone_surrogate_in_streamed_json_does_not_fail_the_run(output: str) -> None:
    text = '{"name": "a\ud800b", "age": 3}'
    pipeline = Stage.completion("hi", output=OUTPUTS[output])  # type: ignore[arg-type]  # a str mode or a type

    async def check() -> None:
        streamed, attempted = await stream_and_attempt(
            pipeline, lambda: Env.of(ScriptedModel(text, chunk_size=4))
        )
        assert isinstance(attempted, Success)
        assert observed(well_formed(streamed)) == observed(attempted)

    anyio.run(check)


# 2. Leaving early ----------------------------------------------------------------------


class Talker(GenerativeModel):
    """Streams `<word> says <n>` in 3-character deltas, a virtual half second
    apart; a leaf named `t...` asks for the `slow` tool first; `f...` fails
    after half its text. Counts calls and open streams."""

    def __init__(self) -> None:
        self.open = 0
        self.calls = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        self.calls += 1
        self.open += 1
        try:
            last = request.context[-1]
            word = last.content.as_string() if last.content.as_string() else "after tool"
            if word.startswith("t") and not getattr(last, "tool_responses", ()):
                yield "calling"
                yield ModelOutput.of(
                    "calling", tool_requests=(ModelToolRequest("c1", "slow", {"text": word}),)
                )
                return
            text = f"{word} says {len(request.context)}"
            cut = len(text) // 2 if word.startswith("f") else len(text)
            for start in range(0, cut, 3):
                await env.clock.sleep(0.5)
                yield text[start : min(start + 3, cut)]
            if word.startswith("f"):
                yield ModelFailure("unavailable", "cut")
                return
            yield ModelOutput.of(text)
        finally:
            self.open -= 1


class Careful(CallLayer):
    """A well-behaved async-generator layer: closes what it reads."""

    def __init__(self) -> None:
        self.open = 0

    async def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        self.open += 1
        try:
            async with contextlib.aclosing(inner.stream(request, env)) as items:  # type: ignore[type-var]  # an async generator
                async for item in items:
                    yield item
        finally:
            self.open -= 1


@tool
async def slow(text: str) -> str:
    """Answer after a virtual second."""
    clock = ctx.current()
    assert clock is not None
    await clock.clock.sleep(1.0)
    return text.upper()


_words = iter(range(10**9))


def _leaf(kind: str) -> Stage:
    word = f"{kind}{next(_words)}"
    return Stage.completion(word, tools=[slow]).with_meta(name=word)


def _first_state(branches: Sequence[StageState | StageException]) -> StageState:
    for branch in branches:
        if isinstance(branch, StageState):
            return branch
    return StageState()


def _compose(children: st.SearchStrategy[Stage]) -> st.SearchStrategy[Stage]:
    many = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        many.map(lambda items: Stage.sequence(*items)),
        many.map(lambda items: Stage.concurrent(*items, merge=_first_state)),
        st.tuples(children, children).map(lambda pair: pair[0].with_fallback(pair[1])),
        children.map(lambda item: item.with_retry(limit=1)),
        children.map(lambda item: item.with_timeout(5.0)),
        children.map(lambda item: item.cached()),
    )


pipelines = st.recursive(st.sampled_from(["a", "t", "f"]).map(_leaf), _compose, max_leaves=5)
LAYERS = st.sets(st.sampled_from(["rate limits", "recorder", "careful"]))


def layered(names: set[str], folder: str) -> tuple[object, ...]:
    made: list[object] = []
    if "rate limits" in names:
        made.append(RateLimits(requests_per_minute=120))
    if "recorder" in names:
        made.append(Recorder(Path(folder) / "calls.json", mode="record"))
    if "careful" in names:
        made.append(Careful())
    return tuple(made)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    pipeline=pipelines,
    layers=LAYERS,
    leave_at=st.integers(0, 14),
    how=st.sampled_from(["break", "cancel"]),
)
def test_leaving_at_any_event_cancels_everything_and_sends_nothing_more(
    backend: str, pipeline: Stage, layers: set[str], leave_at: int, how: str
) -> None:
    async def check(folder: str) -> None:
        model = Talker()
        providers = layered(layers, folder)
        env = Env.of(model, *providers, VirtualClock())
        before = len(anyio.get_running_tasks())
        seen = 0
        with anyio.CancelScope() as scope:
            async with contextlib.aclosing(pipeline.stream(env=env)) as events:
                async for _ in events:
                    if seen == leave_at:
                        if how == "break":
                            break
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()
                        raise AssertionError("the reader was not cancelled")
                    seen += 1
        calls = model.calls
        assert model.open == 0
        assert all(layer.open == 0 for layer in providers if isinstance(layer, Careful))
        assert len(anyio.get_running_tasks()) == before
        await env.clock.sleep(10.0)  # time passes: nothing wakes up to ask again
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert model.calls == calls
        # The same Env (its RateLimits' line, its Recorder) still serves a whole run.
        again = await events_of(pipeline, env)
        well_formed(again)
        assert model.open == 0

    with tempfile.TemporaryDirectory() as folder:
        anyio.run(check, folder, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    plan=plans,
    closing=CLOSINGS,
    wraps=WRAPS,
    leave_at=st.integers(0, 6),
    how=st.sampled_from(["break", "cancel"]),
)
def test_leaving_a_hostile_model_early_raises_nothing_and_leaves_nothing_open(
    backend: str, plan: list[Step], closing: str, wraps: list[str], leave_at: int, how: str
) -> None:
    pipeline = wrapped(Stage.completion("hi", tools=[echo]), wraps)
    model = Planned([*plan, ("text", "tail"), ("sleep", 1.0), ("answer", "output")], closing)

    async def check() -> None:
        before = len(anyio.get_running_tasks())
        seen = 0
        with anyio.CancelScope() as scope:
            async with contextlib.aclosing(
                pipeline.stream(env=Env.of(model, VirtualClock()))
            ) as events:
                async for _ in events:
                    if seen == leave_at:
                        if how == "break":
                            break
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()
                    seen += 1
        assert model.open == 0
        assert len(anyio.get_running_tasks()) == before

    anyio.run(check, backend=backend)


class ClosesBadly(GenerativeModel):
    """Streams a delta, then waits; its `finally` raises (a client whose
    close fails), so the cancellation it was closed by becomes a RuntimeError."""

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        self.calls += 1
        try:
            yield "first "
            await env.clock.sleep(60.0)
            yield ModelOutput.of("first ")
        finally:
            raise RuntimeError("the HTTP client failed to close")


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_sends_no_further_request_even_when_a_model_closes_badly(backend: str) -> None:
    async def check() -> None:
        model = ClosesBadly()
        pipeline = Stage.completion("hi").with_retry(limit=2)
        env = Env.of(model, VirtualClock())
        async with contextlib.aclosing(pipeline.stream(env=env)) as events:
            async for _ in events:
                break
        assert model.calls == 1

    anyio.run(check, backend=backend)


class Counted(GenerativeModel):
    def __init__(self) -> None:
        self.open = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        self.open += 1
        try:
            for word in ("a ", "b ", "c "):
                yield word
            yield ModelOutput.of("a b c ")
        finally:
            self.open -= 1


class WakesBadly(Clock):
    """A virtual clock whose sleep raises as it ends (also when cancelled)."""

    def __init__(self) -> None:
        self.time = VirtualClock()

    def now(self) -> float:
        return self.time.now()

    async def sleep(self, seconds: float) -> None:
        try:
            await self.time.sleep(seconds)
        finally:
            raise RuntimeError("the clock broke as it woke")


class Waits(GenerativeModel):
    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        yield "first "
        await anyio.sleep_forever()
        yield ModelOutput.of("first ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_early_raises_nothing_when_a_clock_breaks_as_it_is_cancelled(backend: str) -> None:
    async def check() -> None:
        pipeline = Stage.completion("hi").with_timeout(10)
        env = Env.of(Waits(), WakesBadly())
        async with contextlib.aclosing(pipeline.stream(env=env)) as events:
            async for _ in events:
                break

    anyio.run(check, backend=backend)


class Interrupt(BaseException):
    """Not an Exception: it must go through as it is, as attempt() lets it."""


class Interrupted(GenerativeModel):
    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        yield "partial"
        raise Interrupt("stop")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_base_exception_escapes_attempt_as_it_is(backend: str) -> None:
    async def check() -> None:
        await Stage.completion("hi").attempt(env=Env.of(Interrupted()))

    with pytest.raises(Interrupt):
        anyio.run(check, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_base_exception_escapes_stream_as_it_is(backend: str) -> None:
    async def check() -> None:
        await events_of(Stage.completion("hi"), Env.of(Interrupted()))

    with pytest.raises(Interrupt):
        anyio.run(check, backend=backend)


# 3. Deltas add up: live, recorded, replayed, cached -----------------------------------

plain_texts = st.text(NO_SURROGATES, max_size=40)


def outputs_after_input(state: StageState) -> list[ModelOutput]:
    return [turn for turn in state.context if isinstance(turn, ModelOutput)]


def output_text(output: ModelOutput) -> str:
    return "".join(part.text for part in output.content.texts())


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    spoken=st.lists(plain_texts, min_size=1, max_size=3),
    final=plain_texts,
    chunk=st.one_of(st.none(), st.integers(1, 7)),
)
def test_joined_deltas_are_the_text_of_every_model_call_of_the_completion(
    backend: str, spoken: list[str], final: str, chunk: int | None
) -> None:
    """Each tool round's text streams, then the final answer's: the deltas
    of one completion join to the text of its model calls, in order."""
    rounds = [
        ModelOutput.of(text, tool_requests=(ModelToolRequest(f"c{index}", "echo", {"text": text}),))
        for index, text in enumerate(spoken)
    ]
    pipeline = Stage.completion("hi", tools=[echo]).with_meta(name="ask")

    async def check() -> None:
        events = await events_of(pipeline, Env.of(ScriptedModel(*rounds, final, chunk_size=chunk)))
        state = well_formed(events).unwrap()
        said = [output_text(output) for output in outputs_after_input(state)]
        assert said == [*spoken, final]
        assert texts(events, ("ask",)) == "".join(said)
        assert texts(events) == texts(events, ("ask",))
        assert state.result.as_string() == final
        if chunk is not None:  # streamed: no delta is longer than a chunk
            assert all(len(event.text) <= chunk for event in events if isinstance(event, TextDelta))

    anyio.run(check, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    answers=st.lists(plain_texts, min_size=1, max_size=3),
    chunk=st.one_of(st.none(), st.integers(1, 5)),
    output=st.sampled_from(["text", "json"]),
)
def test_a_recorded_stream_replays_as_the_same_events(
    backend: str, answers: list[str], chunk: int | None, output: str
) -> None:
    answers = [json.dumps(text) for text in answers] if output == "json" else answers
    pipeline = Stage.sequence(
        *(
            Stage.completion(f"q{index}", output=output).with_meta(name=f"q{index}")  # type: ignore[arg-type]  # a str mode
            for index in range(len(answers))
        )
    )

    async def check(folder: str) -> None:
        cassette = Path(folder) / "stream.json"
        recorded = await events_of(
            pipeline, Env.of(ScriptedModel(*answers, chunk_size=chunk), Recorder(cassette))
        )
        replayed = await events_of(
            pipeline, Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
        )
        whole = await pipeline.attempt(
            env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
        )
        assert replayed[:-1] == recorded[:-1]  # the same deltas (and partial values), in order
        assert observed(well_formed(replayed)) == observed(well_formed(recorded))
        assert observed(whole) == observed(well_formed(recorded))

    with tempfile.TemporaryDirectory() as folder:
        anyio.run(check, folder, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(text=plain_texts, chunk=st.one_of(st.none(), st.integers(1, 5)), named=st.booleans())
def test_a_cached_stage_gives_its_cached_text_as_one_delta(
    backend: str, text: str, chunk: int | None, named: bool
) -> None:
    cached = Stage.completion("hi").cached()
    cached = cached.with_meta(name="c") if named else cached
    path = ("c",) if named else ()

    async def check() -> None:
        env = Env.of(ScriptedModel(text, chunk_size=chunk), VirtualClock())
        first = await events_of(cached, env)
        second = await events_of(cached, env)
        assert texts(first, path) == text
        assert [event for event in second if isinstance(event, TextDelta)] == (
            [TextDelta(text, path)] if text else []
        )
        assert observed(well_formed(second)) == observed(well_formed(first))

    anyio.run(check, backend=backend)


def test_an_answer_with_an_artifact_streams_the_same_live_and_cached() -> None:
    answer = ModelOutput(MultimodalContent.of("hello ", ArtifactContent({"a": 1}, '{"a": 1}')))
    cached = Stage.completion("hi").cached()

    async def check() -> None:
        env = Env.of(ScriptedModel(answer, chunk_size=2))
        live = await events_of(cached, env)
        again = await events_of(cached, env)
        final = well_formed(live).unwrap().result.as_string()
        assert texts(live) == final
        assert texts(again) == texts(live)

    anyio.run(check)


def test_deltas_that_disagree_with_the_answer_are_not_passed_off_as_its_text() -> None:
    class Liar(GenerativeModel):
        async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
            yield "I agree"
            yield ModelOutput.of("I refuse")

    async def check() -> None:
        events = await events_of(Stage.completion("hi"), Env.of(Liar()))
        outcome = well_formed(events)
        if isinstance(outcome, Success):
            assert texts(events) == outcome.unwrap().result.as_string()

    anyio.run(check)


# 4. Secrets ----------------------------------------------------------------------------

secrets_ = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
    min_size=5,
    max_size=30,
).map(lambda tail: "Zq9" + tail)  # no English word: it only shows where it leaked
SECRET_VARIABLE = "STAGEFX_HOSTILE_TEST_API_KEY"


class Keyed(GenerativeModel):
    """A scripted streaming model holding `key` (given or not as its secret)."""

    def __init__(self, key: str, held: bool, *answers: ModelOutput | str) -> None:
        self.key = key
        self.held = held
        self.script = ScriptedModel(*answers, chunk_size=3)

    def secrets(self) -> tuple[str, ...]:
        return (self.key,) if self.held else ()

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        async for item in self.script.stream(request, env):
            yield item


def forms(secret: str) -> list[str]:
    """How a tool's error may hold a secret."""
    import urllib.parse

    return [
        f"the key {secret} was refused",
        repr(secret),
        json.dumps({"authorization": secret}),
        urllib.parse.quote(f"key={secret}"),
    ]


@contextlib.contextmanager
def secret_source(secret: str, source: str) -> Iterator[bool]:
    """Make `secret` one stagefx must keep: the model's own (True: the model
    should hold it), or an environment variable named like a key (False)."""
    with pytest.MonkeyPatch.context() as patch:
        if source == "environment":
            patch.setenv(SECRET_VARIABLE, secret)
        else:
            patch.delenv(SECRET_VARIABLE, raising=False)
        yield source == "model"


SOURCES = st.sampled_from(["model", "environment"])


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    secret=secrets_,
    source=SOURCES,
    form=st.integers(0, 3),
    raised=st.sampled_from(["ValueError", "KeyError", "Unprintable note", "group"]),
)
def test_a_tools_error_answer_never_shows_a_secret(
    backend: str, secret: str, source: str, form: int, raised: str
) -> None:
    shown = forms(secret)[form]

    @tool
    async def leaky(text: str) -> str:
        """A tool that fails, echoing a credential."""
        if raised == "KeyError":
            raise KeyError(secret)
        if raised == "group":
            raise ExceptionGroup(shown, [ValueError(shown)])
        error = ValueError(shown)
        error.add_note(shown)
        raise error

    calls = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "leaky", {"text": "x"}),))

    async def check(held: bool) -> None:
        model = Keyed(secret, held, calls, "done")
        events = await events_of(Stage.completion("hi", tools=[leaky]), Env.of(model))
        state = well_formed(events).unwrap()
        answers = [event for event in events if isinstance(event, ToolAnswered)]
        assert len(answers) == 1
        assert answers[0].response.error
        told = answers[0].response.content.as_string()
        assert secret not in told
        assert "leaky failed" in told
        for turn in state.context:
            for response in getattr(turn, "tool_responses", ()):
                assert secret not in response.content.as_string()

    with secret_source(secret, source) as held:
        anyio.run(check, held, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    secret=secrets_,
    source=st.sampled_from(["model", "environment", "recorder"]),
    where=st.sampled_from(["answer", "prompt", "tool argument"]),
    streamed=st.booleans(),
)
def test_a_cassette_never_holds_a_secret(
    backend: str, secret: str, source: str, where: str, streamed: bool
) -> None:
    answer: ModelOutput | str = f"here: {secret}" if where == "answer" else "fine"
    if where == "tool argument":
        answer = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "echo", {"text": secret}),))
    prompt = f"use {secret}" if where == "prompt" else "hi"
    pipeline = Stage.completion(prompt, tools=[echo])

    async def check(held: bool, folder: str) -> None:
        cassette = Path(folder) / "calls.json"
        recorder = Recorder(cassette, secrets=[secret] if source == "recorder" else ())
        env = Env.of(Keyed(secret, held, answer, "done"), recorder)
        if streamed:
            outcome = well_formed(await events_of(pipeline, env))
        else:
            outcome = await pipeline.attempt(env=env)
        assert isinstance(outcome, Failure)
        assert secret not in str(outcome.failure())
        if cassette.exists():
            written = cassette.read_text(encoding="utf-8")
            assert secret not in written
            assert json.dumps(secret)[1:-1] not in written

    kept_by = "environment" if source == "environment" else "model"
    with secret_source(secret, kept_by) as held, tempfile.TemporaryDirectory() as folder:
        anyio.run(check, held and source == "model", folder, backend=backend)


LEAKS = {
    "a model raising with its key": "raises model",
    "a model raising with an environment key": "raises environment",
    "a ModelFailure quoting an environment key": "model failure",
    "a stop_on_error tool raising with the key": "fatal tool",
}


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_failure_message_never_shows_a_secret(leak: str) -> None:
    secret = "sk_live_0123456789abcdef"  # not key-shaped (sk-...): only the policy hides it
    how = LEAKS[leak]

    class Raising(GenerativeModel):
        def secrets(self) -> tuple[str, ...]:
            return (secret,)

        async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
            yield "partial "
            if how == "model failure":
                yield ModelFailure("authentication", f"key {secret} was rejected")
                return
            raise PermissionError(f"the key {secret} was rejected")

    @tool(stop_on_error=True)
    async def fatal(text: str) -> str:
        """Fails and stops."""
        raise PermissionError(f"the key {secret} was rejected")

    calls = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "fatal", {"text": "x"}),))
    model = Keyed(secret, True, calls, calls) if how == "fatal tool" else Raising()

    async def check() -> list[StageEvent]:
        return await events_of(
            Stage.completion("hi", tools=[fatal]).with_retry(limit=1), Env.of(model)
        )

    with secret_source(secret, "environment" if "environment" in how else "model"):
        events = anyio.run(check)
    outcome = well_formed(events)
    assert isinstance(outcome, Failure)
    assert secret not in str(outcome.failure())
    assert all(secret not in str(event.error) for event in events if isinstance(event, Retrying))


@contextlib.contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("stagefx")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def rendered(records: Sequence[logging.LogRecord]) -> str:
    return "\n".join(
        f"{record.getMessage()} {getattr(record, 'stagefx_attributes', '')}" for record in records
    )


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(secret=secrets_, source=SOURCES, attribute=st.sampled_from(["note", "api_key", "token"]))
def test_a_tools_log_attributes_never_show_a_secret(
    backend: str, secret: str, source: str, attribute: str
) -> None:
    """Text attributes of `ctx.log_*` inside a tool (its Env ambient) are scrubbed."""

    @tool
    async def chatty(text: str) -> str:
        """Logs what it was given."""
        ctx.log_info("calling the service", **{attribute: f"with {secret} now"})
        return "ok"

    calls = ModelOutput.of(tool_requests=(ModelToolRequest("c1", "chatty", {"text": "x"}),))

    async def check(held: bool) -> None:
        events = await events_of(
            Stage.completion("hi", tools=[chatty]), Env.of(Keyed(secret, held, calls, "done"))
        )
        well_formed(events)

    with secret_source(secret, source) as held, captured_logs() as records:
        anyio.run(check, held, backend=backend)
    assert records
    assert secret not in rendered(records)


LOG_LEAKS = ["in the message", "in a list attribute"]


@pytest.mark.parametrize("leak", LOG_LEAKS)
def test_a_log_record_never_shows_a_secret(leak: str) -> None:
    secret = "sk_live_0123456789abcdef"

    def log(content: MultimodalContent) -> MultimodalContent:
        if leak == "in the message":
            ctx.log_info(f"using {secret}")
        elif leak == "in a list attribute":
            ctx.log_info("using", keys=[secret])
        else:
            ctx.log_info("using", note=secret)
        return content

    class Holder(GenerativeModel):
        def secrets(self) -> tuple[str, ...]:
            return (secret,)

        async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
            yield ModelOutput.of("fine")

    pipeline = Stage.sequence(Stage.completion("hi"), Stage.transform_result(log))

    async def check() -> None:
        async with ctx.scope("app", Holder()):
            well_formed(await events_of(pipeline, None))  # type: ignore[arg-type]  # ambient

    with captured_logs() as records:
        anyio.run(check)
    assert records
    assert secret not in rendered(records)

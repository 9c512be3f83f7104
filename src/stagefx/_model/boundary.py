"""The model boundary: the one path every model call and every tool call takes.

A model call, streamed or whole, passes, outermost first::

    call_model ─ span "generate", usage added to the state, events emitted
      └ durable step      (stagefx.dbos: a completed call is never made again)
        └ Recorder        (stagefx.testing: a replayed call is never paced or sent)
          └ RateLimits    (paced before it starts, reconciled with its usage at its end)
            └ your layers (in Env order)
              └ the Env's model: `stream` when the run is streamed, else `generate`

Layers are `CallLayer`s in the Env, nested by `LAYER_ORDER`; each sees a
model call as a stream (text deltas, then the whole answer) and a tool call
as an awaitable, and passes it on to what is inside it. A whole answer is the
stream collected: the boundary emits a stream's deltas as `TextDelta`s (one
delta of the whole text if the stream gave none) and keeps its last item.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Literal, TypeAlias, final

import anyio.lowlevel
import attrs
import pydantic_core

from stagefx._codec import CodecError, json_value
from stagefx._core.conversation import ModelOutput, ModelToolRequest
from stagefx._core.errors import MissingEnvironmentError, StageException, StageExecutionError
from stagefx._core.iteration import close_iterator
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, record_spend
from stagefx._env.env import Env
from stagefx._env.events import EventSink, PartialOutput, TextDelta
from stagefx._env.tracing import close_span, close_span_raised, open_span
from stagefx._model.generative import (
    NO_ANSWER,
    GenerativeModel,
    ModelStream,
    missing_model,
    model_error,
)

if TYPE_CHECKING:
    from stagefx._model.tools import Tool, ToolContext

__all__ = [
    "LAYER_ORDER",
    "NOT_JSON",
    "CallLayer",
    "LayerPlace",
    "ModelPath",
    "ToolPath",
    "call_model",
    "call_tool",
]

LayerPlace: TypeAlias = Literal["durable", "recording", "pacing", "yours"]
LAYER_ORDER: tuple[LayerPlace, ...] = ("durable", "recording", "pacing", "yours")
"""Where layers stand, outermost first: a durable step outside everything (a
completed call replays without reaching anything else), the Recorder (a
replayed call is never paced), rate limits (what they pace is what is sent),
then the user's own layers, in the order the Env holds them."""

ToolPath: TypeAlias = (
    "Callable[[Tool[..., object], ModelToolRequest, ToolContext], Awaitable[object]]"
)
"""What a layer passes a tool call on to: the layers inside it, then the tool."""


class CallLayer:
    """A role every model call and tool call under an Env passes through.

    Subclass it and override what you need; each method passes the call on
    to `inner` by default. `place` says where it stands (`LAYER_ORDER`).
    A layer that reads `inner.stream(...)` itself closes it when it is done or
    left (`try`/`finally` with `aclose`, or `contextlib.aclosing`): the
    boundary closes only the stream it is given, as soon as its answer (the
    first item that is not text) has come, so a layer's code after yielding
    the answer runs only in a `finally`.
    A `StageException` a layer raises becomes the stage's failure, carrying
    the stage's state; anything else it raises, a failure with it as cause.
    """

    place: ClassVar[LayerPlace] = "yours"

    def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        """The answer to `request` as a stream: text deltas, then the answer."""
        return inner.stream(request, env)

    async def tool_call(
        self,
        tool: Tool[..., object],
        request: ModelToolRequest,
        context: ToolContext,
        inner: ToolPath,
    ) -> object:
        """The tool's result for the model's `request` (or raise as it would)."""
        return await inner(tool, request, context)


@final
class ModelPath:
    """What a layer passes a model call on to: the layers inside it, then the
    Env's `model` (None: there is none; a call reaching it fails)."""

    __slots__ = ("_inner", "_layer", "model")

    def __init__(
        self,
        model: GenerativeModel | None,
        layer: CallLayer | None = None,
        inner: ModelPath | None = None,
    ) -> None:
        self.model = model
        self._layer = layer
        self._inner = inner

    @property
    def bare(self) -> bool:
        """Whether nothing stands between the caller and the model."""
        return self._layer is None

    def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """The call as a stream, through what is inside."""
        if self._layer is not None and self._inner is not None:
            return self._layer.model_stream(request, env, self._inner)
        return _from_model(self.model, request, env)


async def _from_model(
    model: GenerativeModel | None, request: ModelRequest, env: Env
) -> ModelStream:
    """The model itself: natively streamed when someone reads the stream, else whole."""
    if model is None:
        raise MissingEnvironmentError(
            "no GenerativeModel in the Env to answer this call", state=StageState.empty
        )
    if env.events is None:
        yield as_json(await model.generate(request, env))
        return
    stream = model.stream(request, env)
    try:
        async for item in stream:
            yield as_json(item) if isinstance(item, ModelOutput) else item
    finally:
        await close_iterator(stream)


NOT_JSON = "(arguments are not JSON)"
"""The one argument a tool gets when the model's arguments are not JSON."""


def as_json(answer: ModelOutput | ModelFailure) -> ModelOutput | ModelFailure:
    """`answer` with tool arguments JSON cannot hold replaced by `{NOT_JSON: why}`,
    so the tool's validation gives the model an error it can correct. Done as
    the answer leaves the model, so layers, cassettes and steps see what the
    tool does; `provider_data` JSON cannot hold is the provider's bug: `CodecError`."""
    if not isinstance(answer, ModelOutput):
        return answer
    if answer.provider_data:
        json_value(answer.provider_data, "provider_data")
    if not answer.tool_requests:
        return answer
    requests: list[ModelToolRequest] = []
    for asked in answer.tool_requests:
        try:
            json_value(asked.arguments, "arguments")
        except CodecError as error:
            asked = ModelToolRequest(asked.identifier, asked.tool, {NOT_JSON: str(error)})
        requests.append(asked)
    return attrs.evolve(answer, tool_requests=tuple(requests))


def _path(env: Env) -> ModelPath | None:
    """The Env's model under its layers, outermost first; None with neither."""
    model = env.get(GenerativeModel)
    layers = [provider for provider in env.providers if isinstance(provider, CallLayer)]
    if model is None and not layers:
        return None
    path = ModelPath(model)
    for layer in reversed(_ordered(layers)):
        path = ModelPath(model, layer, path)
    return path


def _ordered(layers: list[CallLayer]) -> list[CallLayer]:
    """`layers` outermost first: by `LAYER_ORDER`, then in Env order."""
    return sorted(layers, key=lambda layer: LAYER_ORDER.index(layer.place))


def _tool_path(env: Env) -> ToolPath:
    """The tool call under the Env's layers, outermost first."""
    path: ToolPath = _run_tool
    for layer in reversed(_ordered([p for p in env.providers if isinstance(p, CallLayer)])):
        path = _through(layer, path)
    return path


def _through(layer: CallLayer, inner: ToolPath) -> ToolPath:
    def call(
        tool: Tool[..., object], request: ModelToolRequest, context: ToolContext
    ) -> Awaitable[object]:
        return layer.tool_call(tool, request, context, inner)

    return call


def _run_tool(
    tool: Tool[..., object], request: ModelToolRequest, context: ToolContext
) -> Awaitable[object]:
    return tool.call(request.arguments, context)


def call_tool(
    tool: Tool[..., object], request: ModelToolRequest, context: ToolContext
) -> Awaitable[object]:
    """Run `tool` for the model's `request` through the Env's layers."""
    return _tool_path(context.env)(tool, request, context)


async def call_model(
    request: ModelRequest,
    state: StageState,
    env: Env,
    attributes: Mapping[str, str | int | bool] | None = None,
    *,
    quiet: bool = False,
) -> tuple[ModelOutput, StageState] | StageException:
    """Ask the Env's model through its layers; the answer and `state` with its
    usage added, or a failure carrying `state` (and so the usage spent before
    this call), its message scrubbed of the Env's secrets. `attributes` are
    added to the call's span (an output retry's number); the span also gets
    the time to the first delta of a streamed call. A `quiet` call (a router's
    choice: not text for the reader) emits no events."""
    path = _path(env)
    if path is None:
        return missing_model(state)
    if not env.tracer_active:
        try:
            answer = await _answer(path, request, env, None, quiet)
        except Exception as error:
            await anyio.lowlevel.checkpoint_if_cancelled()  # an error raised while cancelled
            return _failed(error, state, env)
        return _counted(answer, state, env)
    span = open_span(env.tracer, env.clock.now, "generate")
    if attributes:
        span.attributes.update(attributes)
    first: list[float] = []
    try:
        answer = await _answer(path, request, env, first, quiet)
    except Exception as error:
        outcome = _failed(error, state, env)
        close_span(span, outcome)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # an error raised while cancelled
        except BaseException as cancelled:
            close_span_raised(span, cancelled)
            raise
        return outcome
    except BaseException as error:
        close_span_raised(span, error)
        raise
    if first:
        span.attributes["time_to_first_delta_ms"] = round((first[0] - span.start) * 1000, 3)
    settled = _counted(answer, state, env)
    if isinstance(settled, StageException):
        if isinstance(answer, ModelFailure):
            span.attributes["failure"] = answer.kind
        close_span(span, settled)
        return settled
    output = settled[0]
    if output.usage is not None:
        span.attributes.update(
            model=output.usage.model,
            input_tokens=output.usage.input_tokens,
            output_tokens=output.usage.output_tokens,
        )
    span.attributes["tool_requests"] = len(output.tool_requests)
    if output.finish_reason:
        span.attributes["finish_reason"] = output.finish_reason
    close_span(span, output)
    return settled


async def _answer(
    path: ModelPath, request: ModelRequest, env: Env, first: list[float] | None, quiet: bool
) -> object:
    """The stream's answer (its first item that is not text), its text deltas
    emitted on the way (with the structured output they add up to, when one
    is asked for), unless the call is `quiet`. The stream is closed after it."""
    events = None if quiet else env.events
    if path.model is not None and path.bare and events is None:
        return as_json(await path.model.generate(request, env))  # no layer, no reader: whole
    stream = path.stream(request, env)
    partial = _Partial(events, request) if events is not None else None
    answer: object = None
    deltas: list[str] = []
    try:
        async for item in stream:
            if not isinstance(item, str):
                answer = item
                break
            text = str.__str__(item)  # a str subclass's own methods are not trusted
            if not text:
                continue
            if not deltas and first is not None:
                first.append(env.clock.now())
            deltas.append(text)
            if events is not None:
                events.emit(TextDelta(text, events.path))
                if partial is not None:
                    partial.add(text)
    finally:
        await close_iterator(stream)
    if deltas and isinstance(answer, ModelOutput) and "".join(deltas) != text_of(answer):
        raise ValueError("a model's stream gave deltas that do not join to its answer's text")
    if events is not None and not deltas and isinstance(answer, ModelOutput):
        text = text_of(answer)
        if text:  # a whole answer: its text as one delta
            events.emit(TextDelta(text, events.path))
            if partial is not None:
                partial.add(text)
    return answer


@final
class _Partial:
    """The structured output a stream's text adds up to, emitted as it grows."""

    __slots__ = ("_events", "_last", "_text", "_wanted")

    def __init__(self, events: EventSink, request: ModelRequest) -> None:
        self._events = events
        self._wanted = request.output.mode in ("json", "schema")
        self._text = ""
        self._last: object = _NOTHING

    def add(self, delta: str) -> None:
        if not self._wanted:
            return
        self._text += delta
        try:
            value: object = pydantic_core.from_json(self._text, allow_partial="trailing-strings")
        except Exception:  # not JSON (yet, or at all: a lone surrogate): the final parse says why
            return
        if value != self._last:
            self._last = value
            self._events.emit(PartialOutput(value, self._events.path))


_NOTHING = object()


def text_of(output: ModelOutput) -> str:
    """An answer's text, as its stream's deltas join to and a cache gives it."""
    return output.content.as_string()


def _failed(error: Exception, state: StageState, env: Env) -> StageException:
    if isinstance(error, StageException):  # a layer's own failure: give it the stage's state
        located = copy.copy(error)
        located.state = state
        return located.scrubbed(env.secrets())
    return StageExecutionError.wrap(error, state).scrubbed(env.secrets())


def _counted(
    answer: object, state: StageState, env: Env
) -> tuple[ModelOutput, StageState] | StageException:
    if isinstance(answer, ModelFailure):
        return model_error(answer, state).scrubbed(env.secrets())
    if not isinstance(answer, ModelOutput):
        got = type(answer).__name__
        wrong = TypeError(
            NO_ANSWER
            if answer is None
            else f"a model must answer with ModelOutput or ModelFailure, got {got}"
        )
        return StageExecutionError.wrap(wrong, state)
    if answer.usage is None:
        return answer, state
    record_spend(answer.usage)
    return answer, state.updated(state.get(UsageTotals, UsageTotals()).plus(answer.usage))

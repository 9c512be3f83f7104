"""What `Stage.stream` yields while a pipeline runs, and the sink nodes emit it to.

A streamed run carries an `EventSink` in its Env (`Env.events`); nodes that
have something to tell (the model boundary, the tool box, a retry, a cache
hit) emit to it, and a named stage gives its child a sink one name deeper.
A run that is not streamed has no sink, and nothing is emitted.
"""

from __future__ import annotations

import contextlib
from typing import TypeAlias, final

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream
from returns.result import Result

from stagefx._core.conversation import ModelToolRequest, ModelToolResponse
from stagefx._core.errors import StageException
from stagefx._core.state import StageState

__all__ = [
    "EventSink",
    "Finished",
    "PartialOutput",
    "Retrying",
    "StageEvent",
    "TextDelta",
    "ToolAnswered",
    "ToolCalled",
    "emit_result",
]

Path: TypeAlias = tuple[str, ...]


@final
@attrs.frozen(slots=True)
class TextDelta:
    """Model text as it arrives; a completion's deltas joined are its final text."""

    text: str
    stage_path: Path = ()


@final
@attrs.frozen(slots=True)
class PartialOutput:
    """Structured output parsed so far (`output="json"` or a type): the JSON
    value the text received until now holds, completed where it is cut off.
    Not validated: the final artifact is."""

    value: object
    stage_path: Path = ()


@final
@attrs.frozen(slots=True)
class ToolCalled:
    """The model asked for a tool; emitted before the tool runs."""

    request: ModelToolRequest
    stage_path: Path = ()


@final
@attrs.frozen(slots=True)
class ToolAnswered:
    """A tool's answer, as the model will read it."""

    response: ModelToolResponse
    stage_path: Path = ()


@final
@attrs.frozen(slots=True)
class Retrying:
    """`with_retry` is trying again after `error`: what this path streamed
    since its attempt began is void."""

    error: StageException
    stage_path: Path = ()


@final
@attrs.frozen(slots=True)
class Finished:
    """Always the last event: what `attempt` gives for the same run."""

    outcome: Result[StageState, StageException]


StageEvent: TypeAlias = TextDelta | PartialOutput | ToolCalled | ToolAnswered | Retrying | Finished


@final
class EventSink:
    """Where a streamed run's events go, and the named stages they come from."""

    __slots__ = ("_send", "path")

    def __init__(self, send: MemoryObjectSendStream[StageEvent], path: Path = ()) -> None:
        self._send = send
        self.path = path

    def emit(self, event: StageEvent) -> None:
        """Hand `event` to the stream's reader (unbounded: never waits). After the
        reader left, events have nowhere to go and are dropped."""
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(event)

    def named(self, label: str) -> EventSink:
        """The sink of a child of the named stage `label`."""
        return EventSink(self._send, (*self.path, label))


def emit_result(events: EventSink | None, state: StageState) -> None:
    """A stage answered from a cache: its result's text, as one delta."""
    if events is not None:
        text = state.result.as_string()
        if text:
            events.emit(TextDelta(text, events.path))

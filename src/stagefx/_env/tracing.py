"""Spans: what ran, nested how, for how long, what it cost, and how it ended.

A `Tracer` is a provider in the `Env`. Stages open spans with `open_span`;
the current span lives in a context variable, so nested stages give nested
spans and concurrent branches (which copy the context into their tasks) give
sibling spans. Under the default `NoopTracer`, built-in stages skip spans.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import NamedTuple, final

import anyio

from stagefx._core.conversation import TokenUsage
from stagefx._core.errors import StageException, describe_error
from stagefx._core.meta import AttributeValue
from stagefx._core.usage import UsageTotals

__all__ = [
    "NoopTracer",
    "RecordingTracer",
    "SpanHandle",
    "SpanRecord",
    "Tracer",
    "annotate",
    "close_span",
    "close_span_raised",
    "current_span",
    "is_tracing",
    "open_span",
]


class SpanRecord(NamedTuple):
    """One finished span. `path` holds the names from the root span down."""

    span_id: int
    parent_id: int | None
    trace_id: int
    name: str
    path: tuple[str, ...]
    start: float
    duration: float
    outcome: str
    """"success", "failure" or "cancelled"."""
    error: str | None
    attributes: Mapping[str, AttributeValue]


class Tracer:
    """Told when spans start and end. Neither method may raise.

    A role: subclass it (override what you need) to give an Env your tracer.
    An object that merely has `start` and `end` is only a value to the Env.
    """

    __slots__ = ()

    def start(self, span_id: int, parent_id: int | None, name: str) -> None:
        """A span opened under `parent_id` (None: a root span)."""

    def end(self, span: SpanRecord) -> None:
        """A span finished; `span` holds all that is known of it."""


@final
class NoopTracer(Tracer):
    """The default: no spans are kept, and built-in stages skip opening them."""

    def start(self, span_id: int, parent_id: int | None, name: str) -> None:
        """Ignored."""

    def end(self, span: SpanRecord) -> None:
        """Ignored."""


@final
class RecordingTracer(Tracer):
    """Keeps every finished span in memory, in the order they ended."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    def start(self, span_id: int, parent_id: int | None, name: str) -> None:
        """Nothing to do: spans are kept when they end."""

    def end(self, span: SpanRecord) -> None:
        """Keep `span`."""
        self.spans.append(span)

    def children(self, parent: SpanRecord | None) -> list[SpanRecord]:
        """The spans directly under `parent` (or the roots), in start order."""
        parent_id = None if parent is None else parent.span_id
        found = [span for span in self.spans if span.parent_id == parent_id]
        return sorted(found, key=lambda span: (span.start, span.span_id))

    def usage(self) -> UsageTotals:
        """Tokens of every model call recorded, failed attempts included."""
        totals = UsageTotals()
        for span in self.spans:
            model = span.attributes.get("model")
            if span.name == "generate" and isinstance(model, str):
                totals = totals.plus(
                    TokenUsage(
                        model,
                        int(span.attributes.get("input_tokens", 0)),
                        int(span.attributes.get("output_tokens", 0)),
                    )
                )
        return totals


class _Position(NamedTuple):
    span_id: int
    trace_id: int
    path: tuple[str, ...]
    attributes: dict[str, AttributeValue]


_current: ContextVar[_Position | None] = ContextVar("stagefx_span", default=None)
_ids = itertools.count(1)


def current_span() -> tuple[int, int] | None:
    """`(span_id, trace_id)` of the span the caller runs under, if any."""
    position = _current.get()
    return None if position is None else (position.span_id, position.trace_id)


def annotate(key: str, value: AttributeValue) -> None:
    """Set an attribute on the span the caller runs under (nothing if none)."""
    position = _current.get()
    if position is not None:
        position.attributes[key] = value


def is_tracing(tracer: Tracer) -> bool:
    """Whether spans go anywhere: built-in stages skip them under `NoopTracer`."""
    return type(tracer) is not NoopTracer


class SpanHandle(NamedTuple):
    """An open span: give it back to `close_span` in the task that opened it."""

    token: Token[_Position | None]
    tracer: Tracer
    now: Callable[[], float]
    position: _Position
    parent_id: int | None
    start: float

    @property
    def attributes(self) -> dict[str, AttributeValue]:
        """The span's attributes, to add to before it closes."""
        return self.position.attributes


def open_span(
    tracer: Tracer,
    now: Callable[[], float],
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> SpanHandle:
    """Open a span under the current one (it becomes the current span)."""
    parent = _current.get()
    span_id = next(_ids)
    kept: dict[str, AttributeValue] = dict(attributes) if attributes else {}
    if parent is None:
        position = _Position(span_id, span_id, (name,), kept)
        parent_id = None
    else:
        position = _Position(span_id, parent.trace_id, (*parent.path, name), kept)
        parent_id = parent.span_id
    token = _current.set(position)
    tracer.start(span_id, parent_id, name)
    return SpanHandle(token, tracer, now, position, parent_id, now())


def close_span(handle: SpanHandle, outcome: object) -> None:
    """Record the span; a `StageException` outcome marks it failed."""
    if isinstance(outcome, StageException):
        _record(handle, "failure", f"{type(outcome).__name__}: {outcome.message}")
    else:
        _record(handle, "success", None)


def close_span_raised(handle: SpanHandle, error: BaseException) -> None:
    """Record a span left by an exception; cancellation is "cancelled"."""
    if isinstance(error, anyio.get_cancelled_exc_class()):
        _record(handle, "cancelled", None)
    else:
        _record(handle, "failure", describe_error(error))


def _record(handle: SpanHandle, outcome: str, error: str | None) -> None:
    _current.reset(handle.token)
    position = handle.position
    handle.tracer.end(
        SpanRecord(
            position.span_id,
            handle.parent_id,
            position.trace_id,
            position.path[-1],
            position.path,
            handle.start,
            handle.now() - handle.start,
            outcome,
            error,
            position.attributes,
        )
    )

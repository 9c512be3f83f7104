"""Spans: what ran, nested how, for how long, and how it ended.

A `Tracer` is a provider in the `Env`. The current span lives in a context
variable, so nested stages give nested spans and concurrent branches (which
copy the context into their tasks) give sibling spans.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TypeAlias, final, runtime_checkable

import anyio
import attrs

from stagefx.clock import Clock

__all__ = [
    "AttributeValue",
    "NoopTracer",
    "RecordingTracer",
    "SpanRecord",
    "Tracer",
]

AttributeValue: TypeAlias = str | int | float | bool

_current_span: ContextVar[int | None] = ContextVar("stagefx_current_span", default=None)
_span_ids = itertools.count(1)


def current_span_id() -> int | None:
    """The id of the span the caller runs under, if any."""
    return _current_span.get()


@final
@attrs.frozen(slots=True)
class SpanRecord:
    """One finished span."""

    span_id: int
    parent_id: int | None
    name: str
    start: float
    duration: float
    outcome: str
    error: str | None = None
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict)


@runtime_checkable
class Tracer(Protocol):
    """Receives finished spans. `record` must not raise."""

    def record(self, span: SpanRecord) -> None: ...


@final
class NoopTracer:
    """The default: spans go nowhere."""

    def record(self, span: SpanRecord) -> None:
        pass


@final
class RecordingTracer:
    """Keeps every finished span in memory, in the order they ended."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    def record(self, span: SpanRecord) -> None:
        self.spans.append(span)

    def children(self, parent: SpanRecord | None) -> list[SpanRecord]:
        """The spans directly under `parent` (or the roots), by start time."""
        parent_id = None if parent is None else parent.span_id
        found = [span for span in self.spans if span.parent_id == parent_id]
        return sorted(found, key=lambda span: (span.start, span.span_id))


@final
@attrs.define
class OpenSpan:
    """A running span; the stage under it marks a failure with `fail`."""

    span_id: int
    parent_id: int | None
    name: str
    start: float
    attributes: dict[str, AttributeValue]
    outcome: str = "success"
    error: str | None = None

    def fail(self, error: BaseException) -> None:
        self.outcome = "failure"
        self.error = f"{type(error).__name__}: {error}"


@contextmanager
def span(
    tracer: Tracer, clock: Clock, name: str, attributes: Mapping[str, AttributeValue]
) -> Iterator[OpenSpan]:
    """Run a block under a new span (child of the current one) and record it at the end.

    A block left by an exception (cancellation included) is recorded as such,
    and the exception propagates unchanged.
    """
    opened = OpenSpan(next(_span_ids), _current_span.get(), name, clock.now(), dict(attributes))
    token = _current_span.set(opened.span_id)
    try:
        yield opened
    except BaseException as error:
        opened.fail(error)
        if isinstance(error, anyio.get_cancelled_exc_class()):
            opened.outcome = "cancelled"
        raise
    finally:
        _current_span.reset(token)
        tracer.record(
            SpanRecord(
                span_id=opened.span_id,
                parent_id=opened.parent_id,
                name=opened.name,
                start=opened.start,
                duration=clock.now() - opened.start,
                outcome=opened.outcome,
                error=opened.error,
                attributes=opened.attributes,
            )
        )

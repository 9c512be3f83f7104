"""OpenTelemetry export (install the `otel` extra): stagefx spans as OTel spans.

```python
async with ctx.scope("app", OpenTelemetryTracer(), ...):
```
Spans start and end as the stages do, so OTel sees real timestamps, parents
before children, and the outcome as the span status.
"""

from __future__ import annotations

from typing import final

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
except ImportError as _import_error:
    raise ImportError(
        "stagefx.otel needs OpenTelemetry: install the `otel` extra with "
        'pip install "stagefx[otel]"'
    ) from _import_error

from stagefx._env.tracing import SpanRecord, Tracer

__all__ = ["OpenTelemetryTracer"]


@final
class OpenTelemetryTracer(Tracer):
    """A stagefx `Tracer` that reports each span to an OpenTelemetry tracer."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("stagefx", tracer_provider=tracer_provider)
        self._open: dict[int, Span] = {}

    def start(self, span_id: int, parent_id: int | None, name: str) -> None:
        """Start the OTel span, under the OTel span of `parent_id`."""
        parent = None if parent_id is None else self._open.get(parent_id)
        context = None if parent is None else trace.set_span_in_context(parent)
        self._open[span_id] = self._tracer.start_span(name, context=context)

    def end(self, span: SpanRecord) -> None:
        """Set the attributes and status of the OTel span and end it."""
        opened = self._open.pop(span.span_id, None)
        if opened is None:
            return
        opened.set_attribute("stagefx.path", "/".join(span.path))
        opened.set_attribute("stagefx.outcome", span.outcome)
        for key, value in span.attributes.items():
            opened.set_attribute(f"stagefx.{key}", value)
        if span.outcome == "success":
            opened.set_status(Status(StatusCode.OK))
        else:
            opened.set_status(Status(StatusCode.ERROR, span.error or span.outcome))
        opened.end()

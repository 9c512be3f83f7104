"""Spans, usage totals, logs, OpenTelemetry export and the terminal trace tree."""

from __future__ import annotations

import logging
from functools import partial

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stagefx import (
    Env,
    ModelFailure,
    ModelOutput,
    MultimodalContent,
    RecordingTracer,
    SpanRecord,
    Stage,
    StageState,
    TokenUsage,
    UsageTotals,
    ctx,
    format_trace,
    stage,
)
from stagefx._core.request import ModelRequest
from stagefx.otel import OpenTelemetryTracer
from stagefx.testing import FunctionModel, VirtualClock
from tests.helpers import first_success

pytestmark = pytest.mark.anyio

Tree = tuple[str, str, tuple["Tree", ...]]


def tree(tracer: RecordingTracer, parent: SpanRecord | None = None) -> tuple[Tree, ...]:
    """The recorded spans as nested (name, outcome, children), in start order."""
    return tuple((span.name, span.outcome, tree(tracer, span)) for span in tracer.children(parent))


def scripted_by_input() -> FunctionModel:
    flaky_calls = 0

    def answer(request: ModelRequest) -> ModelOutput | ModelFailure:
        nonlocal flaky_calls
        asked = request.context[-1].content.as_string()
        if asked == "branch B":
            return ModelFailure("unavailable", "B is down")
        if asked == "flaky":
            flaky_calls += 1
            if flaky_calls == 1:
                return ModelFailure("rate_limited", "slow down", retry_after=1.0)
        tokens = {"intro": (10, 5), "branch A": (3, 2), "flaky": (1, 1)}[asked]
        content = MultimodalContent.of(f"answer to {asked}")
        return ModelOutput(content, usage=TokenUsage("m-1", *tokens))

    return FunctionModel(answer)


PIPELINE = Stage.sequence(
    Stage.completion("intro").with_meta(name="intro").traced(),
    Stage.concurrent(
        Stage.completion("branch A").traced(label="A"),
        Stage.completion("branch B").traced(label="B"),
        merge=first_success,
    ),
    Stage.completion("flaky").with_retry(limit=2).traced(label="flaky"),
).traced(label="pipeline")


async def test_a_nested_pipeline_gives_the_span_tree_that_ran() -> None:
    tracer = RecordingTracer()
    state = await PIPELINE.execute(env=Env.of(scripted_by_input(), tracer, VirtualClock()))
    generate = ("generate", "success", ())
    failed_generate = ("generate", "failure", ())
    assert tree(tracer) == (
        (
            "pipeline",
            "success",
            (
                ("intro", "success", (("completion", "success", (generate,)),)),
                (
                    "concurrent",
                    "success",
                    (
                        (
                            "branch 0",
                            "success",
                            (("A", "success", (("completion", "success", (generate,)),)),),
                        ),
                        (
                            "branch 1",
                            "failure",
                            (("B", "failure", (("completion", "failure", (failed_generate,)),)),),
                        ),
                    ),
                ),
                (
                    "flaky",
                    "success",
                    (
                        (
                            "retry",
                            "success",
                            (
                                ("completion", "failure", (failed_generate,)),
                                ("completion", "success", (generate,)),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )
    by_name = {span.name: span for span in tracer.spans}
    assert by_name["retry"].attributes == {"limit": 2, "attempts": 2}
    assert by_name["concurrent"].attributes == {"branches": 2}
    assert by_name["B"].error == "ModelUnavailableError: B is down"
    assert by_name["branch 1"].path == ("pipeline", "concurrent", "branch 1")
    assert len({span.trace_id for span in tracer.spans}) == 1
    expected = UsageTotals((TokenUsage("m-1", 14, 8),))
    assert state.get(UsageTotals) == expected
    assert tracer.usage() == expected


async def test_concurrent_keeps_every_branch_usage_whatever_the_merge_keeps() -> None:
    model = FunctionModel(lambda request: ModelOutput(usage=TokenUsage("m", 2, 1)))
    fan = Stage.concurrent(
        Stage.completion("a"), Stage.completion("b"), Stage.completion("c"), merge=first_success
    )
    start = StageState(values=(UsageTotals((TokenUsage("m", 100, 100),)),))
    state = await fan.execute(start, env=Env.of(model))
    assert state.get(UsageTotals) == UsageTotals((TokenUsage("m", 106, 103),))


async def test_spans_time_stages_on_the_env_clock_and_mark_cancellation() -> None:
    clock, tracer = VirtualClock(), RecordingTracer()

    @stage
    async def slow(*, state: StageState, env: Env) -> StageState:
        await env.clock.sleep(2.5)
        return state

    await slow.traced(label="slow").execute(env=Env.of(clock, tracer))
    (timed,) = tracer.spans
    assert (timed.start, timed.duration, timed.outcome) == (0.0, 2.5, "success")

    started = anyio.Event()

    @stage
    async def forever(*, state: StageState) -> StageState:
        started.set()
        await anyio.sleep_forever()
        return state

    async with anyio.create_task_group() as group:
        group.start_soon(partial(forever.traced(label="forever").attempt, env=Env.of(tracer)))
        await started.wait()
        group.cancel_scope.cancel()
    assert (tracer.spans[-1].name, tracer.spans[-1].outcome) == ("forever", "cancelled")


async def test_logs_carry_the_scope_and_the_ids_of_the_trace_and_span(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stagefx")
    tracer = RecordingTracer()

    @stage
    async def logs(*, state: StageState) -> StageState:
        ctx.log_info("inside", step=1)
        return state

    async with ctx.scope("service", tracer):
        await Stage.sequence(logs.traced(label="inner")).traced(label="outer").execute()
    (record,) = caplog.records
    inner = next(span for span in tracer.spans if span.name == "inner")
    assert record.stagefx_scope == "service"  # type: ignore[attr-defined]  # set through `extra`
    assert record.stagefx_span == inner.span_id  # type: ignore[attr-defined]  # set through `extra`
    assert record.stagefx_trace == inner.trace_id  # type: ignore[attr-defined]  # set through `extra`


async def test_opentelemetry_sees_the_same_tree_attributes_and_status() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await PIPELINE.attempt(
        env=Env.of(scripted_by_input(), OpenTelemetryTracer(provider), VirtualClock())
    )
    spans = {span.name: span for span in exporter.get_finished_spans()}
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("generate") == 5
    pipeline, retry, failed = spans["pipeline"], spans["retry"], spans["B"]
    assert pipeline.parent is None
    assert spans["intro"].parent is not None
    assert spans["intro"].parent.span_id == pipeline.context.span_id
    assert retry.attributes is not None
    assert retry.attributes["stagefx.attempts"] == 2
    assert retry.attributes["stagefx.path"] == "pipeline/flaky/retry"
    assert pipeline.status.status_code is StatusCode.OK
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ModelUnavailableError: B is down"
    trace_ids = {span.context.trace_id for span in exporter.get_finished_spans()}
    assert len(trace_ids) == 1


async def test_the_terminal_tree_shows_timings_usage_and_failures() -> None:
    tracer = RecordingTracer()
    await PIPELINE.attempt(env=Env.of(scripted_by_input(), tracer, VirtualClock()))
    text = format_trace(tracer.spans, "document run")
    lines = text.splitlines()
    assert lines[0] == "document run"
    assert lines[1] == "└── pipeline 1000.0 ms success"  # the retry waited retry_after=1.0
    assert any("generate" in line and "m-1: 10 in / 5 out" in line for line in lines)
    assert any("B 0.0 ms failure ModelUnavailableError: B is down" in line for line in lines)
    assert any("retry" in line and "attempts=2" in line for line in lines)
    assert "\x1b[" not in text

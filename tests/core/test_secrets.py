"""API keys and authorization headers never reach spans, logs or failures."""

from __future__ import annotations

import logging

import pytest

from stagefx import RecordingTracer, Stage, ctx, format_trace, tool
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, demo_answer

pytestmark = pytest.mark.anyio

SECRET = "sk-proj-SECRET0123456789abcdef"


@tool
async def word_count(text: str) -> int:
    """Count words in text."""
    return len(text.split())


async def test_no_secret_in_spans_logs_or_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's included
    tracer = RecordingTracer()
    pipeline = Stage.sequence(
        Stage.completion("A document worth analysing.", instructions="Analyze."),
        Stage.completion("Count words.", tools=[word_count]),
        Stage.completion("Summarise."),
    ).traced(label="pipeline")
    with FakeOpenAIServer(demo_answer) as server:
        async with ctx.scope(
            "secrets",
            OpenAIResponsesConfig(model="gpt-4o"),
            tracer,
            disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),),
        ) as env:
            ctx.log_info("configured", api_key=SECRET, authorization=f"Bearer {SECRET}")
            succeeded = await pipeline.attempt()
            server.inject(Fault.status(401, message=f"Incorrect API key: {SECRET}"))
            failed = await pipeline.attempt()
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was used
    error = failed.failure()
    seen = [
        caplog.text,
        repr(tracer.spans),
        format_trace(tracer.spans),
        str(error),
        repr(error),
        repr(error.__dict__),
        repr(succeeded),
        repr(env),
    ]
    for text in seen:
        assert SECRET not in text
    assert "***" in str(error)

"""API keys and authorization headers never reach spans, logs or failures;
logs hide secrets by name and by value, and nothing else."""

from __future__ import annotations

import logging

import pytest

from stagefx import RecordingTracer, Stage, ctx, format_trace
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, demo_answer
from tests.helpers import word_count

pytestmark = pytest.mark.anyio

SECRET = "sk-proj-SECRET0123456789abcdef"


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


KEYS = [
    "sk-proj-AbCdEf0123456789AbCdEf0123456789",
    "gsk_0123456789abcdefABCDEF0123456789abcdefABCD",
    "0123456789abcdef0123456789abcdef",  # an Azure-style 32-hex key
    "AIzaSyA-0123456789abcdefghijklmnopqrstu",
    "xai-0123456789ABCDEFabcdef0123456789ABCDEFabcdef",
]


async def test_ordinary_attribute_names_are_not_hidden(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stagefx"):
        ctx.log_info(
            "usage", input_tokens=12, output_tokens=3, max_tokens=100, tokenizer="o200k_base"
        )
    (record,) = caplog.records
    assert record.stagefx_attributes == {  # type: ignore[attr-defined]  # set through `extra`
        "input_tokens": 12,
        "output_tokens": 3,
        "max_tokens": 100,
        "tokenizer": "o200k_base",
    }


async def test_secret_names_are_hidden_whatever_their_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="stagefx"):
        ctx.log_info("auth", api_key="x", access_token="y", client_secret="z", authorization="w")
    (record,) = caplog.records
    assert set(record.stagefx_attributes.values()) == {"***"}  # type: ignore[attr-defined]  # set through `extra`


@pytest.mark.parametrize("key", KEYS)
async def test_the_providers_exact_key_is_scrubbed_from_logged_values(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="stagefx"):
        async with ctx.scope("app", disposables=(OpenAI(api_key=key),)):
            ctx.log_info("echo", body=f"the server said: invalid key {key}!")
    (record,) = caplog.records
    assert key not in record.getMessage()
    assert key not in str(record.stagefx_attributes)  # type: ignore[attr-defined]  # set through `extra`
    assert "invalid key ***!" in record.getMessage()

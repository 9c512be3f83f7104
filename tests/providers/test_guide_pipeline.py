"""The Stage guide's pipeline (completion, tool, cached summary, retry), as the
demo runs it, unchanged on all three providers: through each real SDK against
its fake server, it gives what it gives on the in-process demo model."""

from __future__ import annotations

import pytest
from examples.document_pipeline import DOCUMENT, model_setup, pipeline

from stagefx import Env, ModelInput, StageState, UsageTotals, ctx
from stagefx.anthropic import Anthropic, AnthropicConfig
from stagefx.gemini import Gemini, GeminiConfig
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import (
    FakeAnthropicServer,
    FakeGeminiServer,
    FakeOpenAIServer,
    Fault,
    FunctionModel,
    demo_answer,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

KEY = "test-key-not-real"

Provider = OpenAI | Anthropic | Gemini
Server = type[FakeOpenAIServer] | type[FakeAnthropicServer] | type[FakeGeminiServer]

SERVED: dict[str, tuple[Server, object, type[Provider]]] = {
    "openai": (FakeOpenAIServer, OpenAIResponsesConfig(model="gpt-4o"), OpenAI),
    "anthropic": (
        FakeAnthropicServer,
        AnthropicConfig(model="claude-sonnet-4-5", max_tokens=1024),
        Anthropic,
    ),
    "gemini": (FakeGeminiServer, GeminiConfig(model="gemini-2.5-flash"), Gemini),
}
"""Each provider: its fake server, a config, the provider's class."""


@pytest.mark.parametrize("name", list(SERVED))
async def test_the_guide_pipeline_runs_unchanged_on_every_provider(name: str) -> None:
    serving, config, provider_class = SERVED[name]
    in_process = await pipeline(DOCUMENT).execute(env=Env.of(FunctionModel(demo_answer)))
    with serving(demo_answer) as server:
        provider = provider_class(api_key=KEY, base_url=server.base_url)
        server.inject(Fault.status(503))  # the pipeline's with_retry(limit=2) recovers
        async with ctx.scope("guide", config, disposables=(provider,)):
            state = await pipeline(DOCUMENT).execute()
    assert state.result.as_string() == in_process.result.as_string()
    assert turns(state) == turns(in_process)
    answered = [
        response.tool
        for request in server.model_requests
        for turn in request.context
        if isinstance(turn, ModelInput)
        for response in turn.tool_responses
    ]
    assert "word_count" in answered  # the tool ran and its answer went back
    assert len(server.requests) == len(server.model_requests) + 1  # the 503, then each call
    assert state.get(UsageTotals, UsageTotals()).models  # the server's usage was counted


def turns(state: StageState) -> list[tuple[str, str]]:
    """The context as (kind, text) pairs: what the pipeline said and heard."""
    return [(type(turn).__name__, turn.content.as_string()) for turn in state.context]


@pytest.mark.parametrize(
    ("keys", "chosen"),
    [
        ({}, OpenAI),
        ({"ANTHROPIC_API_KEY": KEY}, Anthropic),
        ({"GEMINI_API_KEY": KEY}, Gemini),
        ({"GOOGLE_API_KEY": KEY}, Gemini),
        ({"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}, OpenAI),
    ],
)
def test_the_demo_runs_on_whichever_provider_has_a_key(
    keys: dict[str, str], chosen: type[Provider], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    config, provider = model_setup()
    assert type(provider) is chosen
    assert type(config) in (OpenAIResponsesConfig, AnthropicConfig, GeminiConfig)

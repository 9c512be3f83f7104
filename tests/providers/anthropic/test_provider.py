"""The Anthropic provider, through the real `anthropic` client, against FakeAnthropicServer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
from returns.result import Failure

from stagefx import (
    Env,
    ImageContent,
    ModelAuthenticationError,
    ModelContextTooLongError,
    ModelFailure,
    ModelInput,
    ModelInvalidRequestError,
    ModelOutput,
    ModelRateLimitError,
    ModelRefusalError,
    ModelToolRequest,
    ModelToolResponse,
    ModelUnavailableError,
    MultimodalContent,
    RateLimitHint,
    Stage,
    StageException,
    StageState,
    TokenUsage,
    ctx,
    tool,
)
from stagefx._core.request import ModelRequest, OutputSpec, ToolSpec
from stagefx.anthropic import Anthropic, AnthropicConfig
from stagefx.testing import Fault, Recorder
from stagefx.testing._fake_anthropic import FakeAnthropicServer

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

SECRET = "sk-ant-secret-abcdef1234567890"
CONFIG = AnthropicConfig(model="claude-sonnet-4-5", max_tokens=1024)
LOOKUP = ToolSpec(
    "lookup",
    "Look something up.",
    {
        "type": "object",
        "properties": {"query": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["query", "days"],
    },
)
ANSWER_SCHEMA = OutputSpec(
    mode="schema",
    schema={
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    },
    name="Answer",
)
THOUGHT: dict[str, object] = {
    "type": "thinking",
    "thinking": "Let me think.",
    "signature": "c2lnbmF0dXJl",
}
THINKING = {"anthropic": {"thinking": [THOUGHT]}}
"""A `provider_data` keeping one thinking block, as the provider keeps them."""


def rich_request() -> ModelRequest:
    """A request using every mapped feature (no turns to merge, so it decodes back equal)."""
    first = ModelToolRequest("toolu_1", "lookup", {"query": "weather", "days": 2})
    second = ModelToolRequest("toolu_2", "lookup", {"query": "wind", "days": 1})
    return ModelRequest(
        instructions="Be brief.",
        context=(
            ModelInput(
                MultimodalContent.of(
                    "Look at these",
                    ImageContent.of_url("https://example.com/cat.png"),
                    ImageContent.of_bytes(b"\x89PNG", mime_type="image/png"),
                )
            ),
            ModelOutput(
                MultimodalContent.of("Let me check."), (first, second), provider_data=THINKING
            ),
            ModelInput(
                tool_responses=(
                    ModelToolResponse("toolu_1", "lookup", MultimodalContent.of("sunny")),
                    ModelToolResponse("toolu_2", "lookup", MultimodalContent.of("no"), error=True),
                )
            ),
            ModelOutput.of("It is sunny."),
            ModelInput.of("Thanks. Now as JSON."),
        ),
        tools=(LOOKUP,),
        output=ANSWER_SCHEMA,
        extra={"temperature": 0.5},
    )


def provider(server: FakeAnthropicServer) -> Anthropic:
    return Anthropic(api_key=SECRET, base_url=server.base_url)


async def test_a_request_arrives_at_the_server_exactly_as_it_was_made() -> None:
    sent = rich_request()
    with FakeAnthropicServer(lambda request: '{"answer": "sunny"}') as server:
        async with provider(server) as model:
            answer = await model.generate(sent, Env.of(CONFIG))
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == '{"answer": "sunny"}'
    assert answer.finish_reason == "stop"
    (received,) = server.model_requests
    assert received.instructions == sent.instructions
    assert received.context == sent.context
    assert [getattr(turn, "provider_data", None) for turn in received.context] == [
        getattr(turn, "provider_data", None) for turn in sent.context
    ]  # out of equality: compared on their own
    assert received.tools == sent.tools
    assert received.output == sent.output
    assert received.extra == sent.extra
    (raw,) = server.requests
    assert raw.path == "/v1/messages"
    assert raw.headers["authorization"] == f"Bearer {SECRET}"
    assert "anthropic-version" in raw.headers
    body = raw.body
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 1024
    assert body["tool_choice"] == {"type": "any"}  # the request has tools of its own
    messages = body["messages"]
    assert isinstance(messages, list)
    roles = [message["role"] for message in messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
        },
    ]
    assert messages[1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me think.",
        "signature": "c2lnbmF0dXJl",
    }
    assert [block["type"] for block in messages[1]["content"]] == [
        "thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no", "is_error": True},
    ]


async def test_turns_of_one_role_in_a_row_are_merged_and_empty_text_is_never_sent() -> None:
    request = ModelRequest(
        "",
        (
            ModelInput.of("a"),
            ModelInput.of("", "b"),
            ModelOutput.of("x"),
            ModelOutput(),
            ModelOutput.of("y"),
            ModelInput(),
            ModelInput.of("z"),
        ),
    )
    with FakeAnthropicServer(lambda request: "ok") as server:
        async with provider(server) as model:
            await model.generate(request, Env.of(CONFIG))
    body = server.requests[0].body
    assert "system" not in body  # no instructions: no system prompt
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "z"}]},
    ]


class Weather(pydantic.BaseModel):
    city: str
    words: int


async def test_tools_several_per_turn_then_structured_output_through_a_pipeline() -> None:
    @tool
    async def word_count(text: str) -> int:
        """Count words in text."""
        return len(text.split())

    answers = iter(
        [
            ModelOutput(
                tool_requests=(
                    ModelToolRequest("toolu_a", "word_count", {"text": "a b c"}),
                    ModelToolRequest("toolu_b", "word_count", {"text": "d e"}),
                )
            ),
            ModelOutput.of('{"city": "Oslo", "words": 5}'),
        ]
    )
    with FakeAnthropicServer(lambda request: next(answers)) as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            state = await Stage.completion("count", tools=[word_count], output=Weather).execute()
    assert state.result.artifacts(Weather) == (Weather(city="Oslo", words=5),)
    first, second = (raw.body for raw in server.requests)
    assert first["tool_choice"] == {"type": "any"}
    tools = first["tools"]
    assert isinstance(tools, list)
    assert [spec["name"] for spec in tools] == ["word_count", "Weather"]
    assert tools[1]["input_schema"]["properties"].keys() == {"city", "words"}
    messages = second["messages"]
    assert isinstance(messages, list)
    assert [block["type"] for block in messages[-2]["content"]] == ["tool_use", "tool_use"]
    assert messages[-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "3"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "2"},
    ]
    final = state.context[-1]
    assert isinstance(final, ModelOutput)
    assert final.usage is not None
    assert final.usage.model == "claude-fake"


async def test_structured_output_alone_forces_its_tool_and_reads_the_answer_from_it() -> None:
    class Pair(pydantic.BaseModel):
        left: int
        right: int

    numbers = OutputSpec(
        mode="schema", schema={"type": "array", "items": {"type": "integer"}}, name="Numbers"
    )
    answers = iter(['{"left": 1, "right": 2}', "[1, 2]"])
    with FakeAnthropicServer(lambda request: next(answers)) as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)) as env:
            state = await Stage.completion("pair", output=Pair).execute()
            model = env.get(Anthropic)
            assert model is not None
            listed = await model.generate(
                ModelRequest("", (ModelInput.of("numbers"),), output=numbers), env
            )
    assert state.result.artifacts(Pair) == (Pair(left=1, right=2),)
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "Pair"}
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "pair"}]}
    ]
    # A schema that is not an object's is wrapped: the tool's input is {"value": ...}.
    wrapped = server.requests[1].body["tools"]
    assert isinstance(wrapped, list)
    assert wrapped[0]["input_schema"]["required"] == ["value"]
    assert isinstance(listed, ModelOutput)
    assert listed.content.as_string() == "[1, 2]"
    assert server.model_requests[1].output == numbers


async def test_usage_with_cache_tokens_and_the_rate_limit_headers() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "cached"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 7,
        },
    }
    headers = {
        "date": "Mon, 01 Jan 2024 00:00:00 GMT",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-tokens-remaining": "oops",
        "anthropic-ratelimit-requests-reset": "2024-01-01T00:00:06Z",
        "anthropic-ratelimit-tokens-reset": "2024-01-01T00:01:00Z",
    }
    with FakeAnthropicServer() as server:
        server.inject(Fault.raw(json.dumps(body), headers=headers))
        async with provider(server) as model:
            answer = await model.generate(ModelRequest("", (ModelInput.of("hi"),)), Env.of(CONFIG))
    assert isinstance(answer, ModelOutput)
    assert answer.usage == TokenUsage("claude-sonnet-4-5-20250929", 115, 7)
    assert answer.limits == RateLimitHint(
        remaining_requests=49, remaining_tokens=None, reset_requests=6.0, reset_tokens=60.0
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(429, retry_after="2"), ModelRateLimitError),
        (Fault.status(401, message=f"invalid x-api-key: {SECRET}"), ModelAuthenticationError),
        (Fault.status(403), ModelAuthenticationError),
        (Fault.status(529), ModelUnavailableError),
        (Fault.status(500), ModelUnavailableError),
        (
            Fault.status(400, message="prompt is too long: 208310 tokens > 200000 maximum"),
            ModelContextTooLongError,
        ),
        (
            Fault.status(400, message=f"max_tokens: bad value for {SECRET}"),
            ModelInvalidRequestError,
        ),
        (Fault.malformed(), ModelUnavailableError),
        (Fault.truncated(), ModelUnavailableError),
        (Fault.drop(), ModelUnavailableError),
        (Fault.error_event(after=0, code="overloaded_error"), ModelUnavailableError),
    ],
)
async def test_faults_become_typed_failures_with_the_state_and_no_secret(
    fault: Fault, expected: type[StageException]
) -> None:
    start = StageState(result="before")
    with FakeAnthropicServer(lambda request: "unused") as server:
        server.inject(fault)
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            outcome = await Stage.completion("hi").attempt(start)
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert type(error) is expected, repr(error)
    assert error.state == start
    assert SECRET not in str(error)
    assert SECRET not in repr(error.__dict__)


async def test_a_429_carries_the_servers_wait_capped() -> None:
    request = ModelRequest("", (ModelInput.of("hi"),))
    with FakeAnthropicServer() as server:
        server.inject(Fault.status(429, retry_after="2"), Fault.status(429, retry_after="1e999"))
        async with Anthropic(api_key=SECRET, base_url=server.base_url, max_retry_after=30) as model:
            first = await model.generate(request, Env.of(CONFIG))
            second = await model.generate(request, Env.of(CONFIG))
    assert isinstance(first, ModelFailure)
    assert (first.kind, first.retry_after) == ("rate_limited", 2.0)
    assert isinstance(second, ModelFailure)
    assert second.retry_after == 30.0
    assert "capped at 30 s" in second.message


async def test_failures_the_callback_gives_reach_the_provider_typed() -> None:
    cases = {
        "rate_limited": ModelFailure("rate_limited", "slow down", 3.0),
        "unavailable": ModelFailure("unavailable", "overloaded"),
        "context_too_long": ModelFailure("context_too_long", "prompt is too long"),
        "authentication": ModelFailure("authentication", "bad key"),
        "refused": ModelFailure("refused", "no"),
    }
    for kind, failure in cases.items():

        def fail(request: ModelRequest, failure: ModelFailure = failure) -> ModelFailure:
            return failure

        with FakeAnthropicServer(fail) as server:
            async with provider(server) as model:
                answer = await model.generate(
                    ModelRequest("", (ModelInput.of("hi"),)), Env.of(CONFIG)
                )
        assert isinstance(answer, ModelFailure)
        assert answer.kind == kind, answer
        if kind == "rate_limited":
            assert answer.retry_after == 3.0


async def test_a_refusal_is_a_refusal_error() -> None:
    with FakeAnthropicServer(lambda request: ModelFailure("refused", "no")) as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelRefusalError)


async def test_thinking_blocks_go_back_unchanged_with_their_signatures() -> None:
    @tool
    async def clock() -> str:
        """The time."""
        return "noon"

    redacted = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}
    kept = {"anthropic": {"thinking": [THOUGHT, redacted]}}
    answers = iter(
        [
            ModelOutput(
                tool_requests=(ModelToolRequest("toolu_t", "clock", {}),), provider_data=kept
            ),
            ModelOutput.of("It is noon."),
        ]
    )
    thinking = AnthropicConfig(model="claude-sonnet-4-5", max_tokens=4096, thinking_budget=2048)
    with FakeAnthropicServer(lambda request: next(answers)) as server:
        async with ctx.scope("t", thinking, disposables=(provider(server),)):
            state = await Stage.completion("time?", tools=[clock]).execute()
    assert state.result.as_string() == "It is noon."
    first, second = (raw.body for raw in server.requests)
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "tool_choice" not in first
    messages = second["messages"]
    assert isinstance(messages, list)
    assert messages[1]["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"},
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
        {"type": "tool_use", "id": "toolu_t", "name": "clock", "input": {}},
    ]
    turn = state.context[1]
    assert isinstance(turn, ModelOutput)
    assert turn.content == MultimodalContent.empty  # thinking is not what the model said
    assert turn.provider_data == kept
    assert server.model_requests[1].context[1].provider_data == kept  # type: ignore[union-attr]  # an output turn


async def test_a_message_decodes_its_thinking_into_provider_data_not_content() -> None:
    """Whole and streamed, the blocks are kept as the API gave them, in
    order; the content holds only what the model said, and the stage's
    result no empty-text artifact."""
    redacted = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}
    second: dict[str, object] = {"type": "thinking", "thinking": "More.", "signature": "bW9yZQ=="}
    kept = {"anthropic": {"thinking": [THOUGHT, redacted, second]}}
    answer = ModelOutput(MultimodalContent.of("Fine."), provider_data=kept)
    with FakeAnthropicServer(lambda request: answer) as server:
        async with provider(server) as model:
            request = ModelRequest("", (ModelInput.of("q"),))
            whole = await model.generate(request, Env.of(CONFIG))
            *_, streamed = [item async for item in model.stream(request, Env.of(CONFIG))]
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            state = await Stage.completion("q").execute()
    for output in (whole, streamed):
        assert isinstance(output, ModelOutput)
        assert output.content == MultimodalContent.of("Fine.")
        assert output.provider_data == kept
    assert state.result == MultimodalContent.of("Fine.")
    last = state.context[-1]
    assert isinstance(last, ModelOutput)
    assert last.provider_data == kept


async def test_structured_output_with_thinking_lets_the_model_choose() -> None:
    thinking = AnthropicConfig(model="claude-sonnet-4-5", max_tokens=4096, thinking_budget=1024)
    with FakeAnthropicServer(lambda request: '{"answer": "yes"}') as server:
        async with provider(server) as model:
            answer = await model.generate(
                ModelRequest("", (ModelInput.of("q"),), output=ANSWER_SCHEMA), Env.of(thinking)
            )
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == '{"answer": "yes"}'
    assert server.requests[0].body["tool_choice"] == {"type": "auto"}


async def test_a_recorded_pipeline_replays_unchanged_without_the_server(tmp_path: Path) -> None:
    cassette = tmp_path / "anthropic.json"

    @tool
    async def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    thinking = AnthropicConfig(model="claude-sonnet-4-5", max_tokens=4096, thinking_budget=1024)
    pipeline = Stage.sequence(
        Stage.completion("Say hello.", instructions="Be brief."),
        Stage.completion("Shout it.", tools=[shout]),
        Stage.completion("As JSON.", output="json"),
    )

    def answer(request: ModelRequest) -> ModelOutput | str:
        last = request.context[-1]
        if request.tools and not (isinstance(last, ModelInput) and last.tool_responses):
            return ModelOutput(
                tool_requests=(ModelToolRequest("toolu_s", "shout", {"text": "hi"}),),
                provider_data=THINKING,
            )
        if request.output.mode == "json":
            return '{"said": "HI"}'
        return "hello"

    with FakeAnthropicServer(answer) as server:
        async with ctx.scope("t", thinking, Recorder(cassette), disposables=(provider(server),)):
            recorded = await pipeline.execute()
        calls = len(server.requests)
    assert calls == 4
    assert SECRET not in cassette.read_text()
    # The server is gone and the key unknown: every call replays from the cassette.
    gone = Anthropic(api_key=SECRET, base_url="http://127.0.0.1:9")
    async with ctx.scope("t", thinking, Recorder(cassette, mode="replay"), disposables=(gone,)):
        replayed = await pipeline.execute()
    assert replayed.context == recorded.context
    assert replayed.result == recorded.result
    kept = [turn.provider_data for turn in replayed.context if isinstance(turn, ModelOutput)]
    assert kept == [
        turn.provider_data for turn in recorded.context if isinstance(turn, ModelOutput)
    ]
    assert THINKING in kept  # the thinking blocks survived the cassette
    sent_back = json.dumps([raw.body["messages"] for raw in server.requests[2:]])
    assert json.dumps(THOUGHT) in sent_back  # and went back with the tool's answer


async def test_the_provider_reads_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeAnthropicServer(lambda request: "from env") as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        async with ctx.scope("t", CONFIG, disposables=(Anthropic(base_url=server.base_url),)):
            state = await Stage.completion("hi").execute()
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert state.result.as_string() == "from env"
    assert Anthropic().secrets() == (SECRET,)
    assert repr(Anthropic(api_key=SECRET)) == "Anthropic()"


async def test_no_key_is_an_authentication_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with ctx.scope("t", CONFIG, disposables=(Anthropic(base_url="http://127.0.0.1:9"),)):
        outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelAuthenticationError)
    assert "ANTHROPIC_API_KEY" in str(outcome.failure())


async def test_fingerprint_secrets_and_scopes() -> None:
    model = Anthropic(api_key=SECRET)
    env = Env.of(AnthropicConfig(model="claude-x", max_tokens=10, temperature=0.2, top_k=5))
    assert model.fingerprint(env) == {
        "provider": "anthropic",
        "model": "claude-x",
        "max_tokens": 10,
        "temperature": 0.2,
        "top_k": 5,
    }
    assert SECRET not in repr(model.fingerprint(env))
    assert model.secrets() == (SECRET,)
    with FakeAnthropicServer(lambda request: "ok") as server:
        shared = provider(server)
        async with ctx.scope("outer", CONFIG, disposables=(shared,)):
            async with ctx.scope("inner", disposables=(shared,)):
                await Stage.completion("one").execute()
            state = await Stage.completion("two").execute()  # still open: outer holds it
    assert state.result.as_string() == "ok"


async def test_misuse_is_reported_clearly() -> None:
    closed = Anthropic(api_key=SECRET, base_url="http://127.0.0.1:9")
    outcome = await Stage.completion("hi").attempt(env=Env.of(closed, CONFIG))
    assert "Anthropic() is not open" in str(outcome.failure())
    async with Anthropic(api_key=SECRET, base_url="http://127.0.0.1:9") as opened:
        outcome = await Stage.completion("hi").attempt(env=Env.of(opened))
    assert "no Anthropic config in the Env" in str(outcome.failure())
    with pytest.raises(ValueError, match="max_tokens"):
        AnthropicConfig(model="m", max_tokens=0)
    with pytest.raises(ValueError, match="max_retry_after"):
        Anthropic(max_retry_after=float("inf"))


def test_public_names_and_the_install_hint() -> None:
    assert Anthropic.__module__ == AnthropicConfig.__module__ == "stagefx.anthropic"
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['anthropic'] = None; import stagefx.anthropic",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0
    assert 'pip install "stagefx[anthropic]"' in missing.stderr

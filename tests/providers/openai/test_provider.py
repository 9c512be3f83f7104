"""The OpenAI provider, through the real `openai` client, against FakeOpenAIServer."""

from __future__ import annotations

import asyncio

import anyio
import anyio.to_thread
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
    Stage,
    StageException,
    StageState,
    StageTimeoutError,
    ctx,
    tool,
)
from stagefx._core.request import ModelRequest, OutputSpec, ToolSpec
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._chat import encode_request as encode_chat
from stagefx.openai._responses import encode_request as encode_responses
from stagefx.testing import FakeOpenAIServer, Fault, VirtualClock

pytestmark = pytest.mark.anyio

SECRET = "sk-secret-abcdef1234567890"
CONFIGS = [OpenAIResponsesConfig(model="gpt-4o"), OpenAIChatConfig(model="llama3")]


@pytest.fixture(params=CONFIGS, ids=["responses", "chat"])
def config(request: pytest.FixtureRequest) -> OpenAIResponsesConfig | OpenAIChatConfig:
    chosen = request.param
    assert isinstance(chosen, OpenAIResponsesConfig | OpenAIChatConfig)
    return chosen


def rich_request() -> ModelRequest:
    """A request using every mapped feature."""
    call = ModelToolRequest("call_1", "lookup", {"query": "weather", "days": 2})
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
            ModelOutput(MultimodalContent.of("Let me check."), (call,)),
            ModelInput(
                tool_responses=(
                    ModelToolResponse("call_1", "lookup", MultimodalContent.of("sunny")),
                )
            ),
            ModelOutput.of("It is sunny."),
            ModelInput.of("Thanks. Now as JSON."),
        ),
        tools=(
            ToolSpec(
                "lookup",
                "Look something up.",
                {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["query", "days"],
                    "additionalProperties": False,
                },
            ),
        ),
        output=OutputSpec(
            mode="schema",
            schema={
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            },
            name="Answer",
        ),
        extra={"temperature": 0.5},
    )


async def test_a_request_arrives_at_the_server_exactly_as_it_was_made(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    sent = rich_request()
    with FakeOpenAIServer(lambda request: '{"answer": "sunny"}') as server:
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            answer = await provider.generate(sent, Env.of(config))
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == '{"answer": "sunny"}'
    (received,) = server.model_requests
    assert received.instructions == sent.instructions
    assert received.context == sent.context
    assert received.tools == sent.tools
    assert received.output == sent.output
    assert received.extra == sent.extra
    (raw,) = server.requests
    assert raw.headers["authorization"] == f"Bearer {SECRET}"
    assert raw.body["model"] == config.model


async def test_strict_mode_is_asked_only_for_schemas_that_allow_it() -> None:
    loose = ToolSpec("t", "", {"type": "object", "properties": {"a": {"type": "integer"}}})
    request = ModelRequest("", (ModelInput.of("hi"),), (loose,), OutputSpec(mode="json"))
    with FakeOpenAIServer(lambda request: "{}") as server:
        async with OpenAI(api_key=SECRET, base_url=server.base_url) as provider:
            for config in CONFIGS:
                await provider.generate(request, Env.of(config))
    responses_body, chat_body = (raw.body for raw in server.requests)
    assert responses_body["tools"] == [
        {
            "type": "function",
            "name": "t",
            "description": "",
            "parameters": loose.parameters,
            "strict": False,
        }
    ]
    assert responses_body["text"] == {"format": {"type": "json_object"}}
    assert chat_body["response_format"] == {"type": "json_object"}


async def test_tool_calls_structured_output_and_usage_through_a_pipeline(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    @tool
    async def word_count(text: str) -> int:
        """Count words in text."""
        return len(text.split())

    answers = iter(
        [
            ModelOutput(
                tool_requests=(ModelToolRequest("call_9", "word_count", {"text": "a b c"}),)
            ),
            ModelOutput.of('{"words": 3}'),
        ]
    )
    with FakeOpenAIServer(lambda request: next(answers)) as server:
        async with ctx.scope(
            "t", config, disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),)
        ):
            state = await Stage.completion("count", tools=[word_count], output="json").execute()
    assert state.result.artifacts(dict) == ({"words": 3},)
    second = server.model_requests[1]
    last = second.context[-1]
    assert isinstance(last, ModelInput)
    assert last.tool_responses[0].content.as_string() == "3"
    final = state.context[-1]
    assert isinstance(final, ModelOutput)
    assert final.usage is not None
    assert final.usage.model == "fake-model"
    assert final.usage.output_tokens == 2


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(500), ModelUnavailableError),
        (Fault.status(503), ModelUnavailableError),
        (
            Fault.status(401, message=f"Incorrect API key provided: {SECRET}"),
            ModelAuthenticationError,
        ),
        (Fault.status(400, code="context_length_exceeded"), ModelContextTooLongError),
        (Fault.status(400, message="bad parameter"), ModelInvalidRequestError),
        (Fault.status(429, retry_after="2"), ModelRateLimitError),
        (Fault.malformed(), ModelUnavailableError),
        (Fault.truncated(), ModelUnavailableError),
        (Fault.drop(), ModelUnavailableError),
    ],
)
async def test_faults_become_typed_failures_with_the_state_and_no_secret(
    config: OpenAIResponsesConfig | OpenAIChatConfig, fault: Fault, expected: type[StageException]
) -> None:
    start = StageState(result="before")
    with FakeOpenAIServer(lambda request: "unused") as server:
        server.inject(fault)
        async with ctx.scope(
            "t", config, disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),)
        ):
            outcome = await Stage.completion("hi").attempt(start)
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert type(error) is expected, repr(error)
    assert error.state == start
    assert SECRET not in str(error)
    assert SECRET not in repr(error.__dict__)


async def test_refusals_become_refusal_errors(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    with FakeOpenAIServer(lambda request: ModelFailure("refused", "no")) as server:
        async with ctx.scope(
            "t", config, disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),)
        ):
            outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelRefusalError)


async def test_a_429_under_retry_waits_retry_after_on_the_clock_then_succeeds(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    clock = VirtualClock()
    with FakeOpenAIServer(lambda request: "finally") as server:
        server.inject(Fault.status(429, retry_after="2"), Fault.status(429, retry_after="3"))
        async with ctx.scope(
            "t", config, clock, disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),)
        ):
            state = await Stage.completion("hi").with_retry(limit=3, delay=0.5).execute()
    assert state.result.as_string() == "finally"
    assert clock.now() == 5.0
    assert len(server.requests) == 3


async def test_cancelling_mid_request_leaves_no_task_and_no_open_connection(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    with FakeOpenAIServer(lambda request: "unused") as server:
        server.inject(Fault.hang())
        async with (
            ctx.scope("t", config, disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),)),
            anyio.create_task_group() as group,
        ):
            group.start_soon(Stage.completion("hi").attempt)
            assert await anyio.to_thread.run_sync(server.wait_for_connections, 1)
            group.cancel_scope.cancel()
        assert await anyio.to_thread.run_sync(server.wait_for_connections, 0)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_hanging_server_times_out_under_with_timeout(
    config: OpenAIResponsesConfig | OpenAIChatConfig,
) -> None:
    with FakeOpenAIServer(lambda request: "unused") as server:
        server.inject(Fault.hang())
        async with ctx.scope(
            "t",
            config,
            VirtualClock(),
            disposables=(OpenAI(api_key=SECRET, base_url=server.base_url),),
        ):
            outcome = await Stage.completion("hi").with_timeout(30).attempt()
        assert isinstance(outcome.failure(), StageTimeoutError)
        assert await anyio.to_thread.run_sync(server.wait_for_connections, 0)


async def test_the_provider_reads_key_and_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAIServer(lambda request: "from env") as server:
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        async with ctx.scope("t", CONFIGS[0], disposables=(OpenAI(),)):
            state = await Stage.completion("hi").execute()
    assert state.result.as_string() == "from env"
    assert repr(OpenAI(api_key=SECRET)) == "OpenAI()"


async def test_misuse_is_reported_clearly() -> None:
    closed = OpenAI(api_key=SECRET, base_url="http://127.0.0.1:9/v1")
    outcome = await Stage.completion("hi").attempt(env=Env.of(closed, CONFIGS[0]))
    assert "OpenAI() is not open" in str(outcome.failure())
    async with OpenAI(api_key=SECRET, base_url="http://127.0.0.1:9/v1") as opened:
        outcome = await Stage.completion("hi").attempt(env=Env.of(opened))
    assert "no OpenAI config in the Env" in str(outcome.failure())


@pytest.mark.both_backends
async def test_openai_requests_skip_turns_emptied_of_tool_traffic() -> None:
    request = ModelToolRequest("c1", "lookup", {})
    context = (
        ModelInput.of("question"),
        ModelOutput(tool_requests=(request,)),
        ModelInput(tool_responses=(ModelToolResponse("c1", "lookup", MultimodalContent.of("42")),)),
        ModelOutput.of("it is 42"),
    )
    stripped = (await Stage.strip_context_tools().execute(StageState(context=context))).context
    assert len(stripped) == 4
    chat = encode_chat(ModelRequest("", stripped), "m", {})
    assert chat["messages"] == [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "it is 42"},
    ]
    responses = encode_responses(ModelRequest("", stripped), "m", {})
    items = responses["input"]
    assert isinstance(items, list)
    assert [item.get("role") for item in items] == ["user", "assistant"]

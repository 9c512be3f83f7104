"""The Gemini provider, through the real `google-genai` client, against FakeGeminiServer."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
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
    Stage,
    StageException,
    StageState,
    ctx,
    tool,
)
from stagefx._core.request import ModelRequest, OutputSpec, ToolSpec
from stagefx.gemini import Gemini, GeminiConfig
from stagefx.gemini._wire import call_identifier
from stagefx.testing import Fault, Recorder
from stagefx.testing._fake_gemini import FakeGeminiServer
from stagefx.testing._models import Answer

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

SECRET = "AIzaSy-secret-abcdef1234567890"
CONFIG = GeminiConfig(model="gemini-2.5-flash")
SIGNED = call_identifier(None, 0)
SIGNATURE = "c2lnbmF0dXJlLW9uZQ=="
SIGNATURES = {"gemini": {"signatures": {SIGNED: SIGNATURE}}}
"""A `provider_data` keeping the thought signature of the call `SIGNED`."""

PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["query", "days"],
    "additionalProperties": False,
}


def rich_request() -> ModelRequest:
    """A request using every mapped feature."""
    calls = (
        ModelToolRequest(SIGNED, "lookup", {"query": "weather", "days": 2}),
        ModelToolRequest(call_identifier("call-b", 1), "lookup", {"query": "tide", "days": 1}),
    )
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
            ModelOutput(MultimodalContent.of("Let me check."), calls, provider_data=SIGNATURES),
            ModelInput(
                tool_responses=(
                    ModelToolResponse(calls[0].identifier, "lookup", MultimodalContent.of("sunny")),
                    ModelToolResponse(
                        calls[1].identifier, "lookup", MultimodalContent.of("no tide"), error=True
                    ),
                )
            ),
            ModelOutput.of("It is sunny."),
            ModelInput.of("Thanks. Now as JSON."),
        ),
        tools=(ToolSpec("lookup", "Look something up.", PARAMETERS),),
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


def provider(server: FakeGeminiServer) -> Gemini:
    return Gemini(api_key=SECRET, base_url=server.base_url)


async def test_a_request_arrives_at_the_server_exactly_as_it_was_made() -> None:
    sent = rich_request()
    with FakeGeminiServer(lambda request: '{"answer": "sunny"}') as server:
        async with provider(server) as gemini:
            answer = await gemini.generate(sent, Env.of(CONFIG))
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == '{"answer": "sunny"}'
    (received,) = server.model_requests
    assert received.instructions == sent.instructions
    assert received.context == sent.context
    assert [getattr(turn, "provider_data", None) for turn in received.context] == [
        getattr(turn, "provider_data", None) for turn in sent.context
    ]  # out of equality: compared on their own
    assert received.tools == sent.tools
    assert received.output.schema == sent.output.schema
    assert received.extra == sent.extra
    (raw,) = server.requests
    assert raw.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert raw.headers["x-goog-api-key"] == SECRET
    body = raw.body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [content["role"] for content in body["contents"]] == [  # type: ignore[attr-defined]  # JSON read back
        "user",
        "model",
        "user",
        "model",
        "user",
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "description": "Look something up.",
                    "parametersJsonSchema": PARAMETERS,
                }
            ]
        }
    ]
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": sent.output.schema,
        "temperature": 0.5,
    }


async def test_parts_are_encoded_as_gemini_takes_them() -> None:
    with FakeGeminiServer(lambda request: "ok") as server:
        async with provider(server) as gemini:
            await gemini.generate(rich_request(), Env.of(CONFIG))
    contents = json.loads(json.dumps(server.requests[0].body["contents"]))
    assert contents[0]["parts"] == [
        {"text": "Look at these"},
        {"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"\x89PNG").decode()}},
    ]
    signed, unsigned = contents[1]["parts"][1:]
    assert signed == {
        "functionCall": {"name": "lookup", "args": {"query": "weather", "days": 2}},
        "thoughtSignature": SIGNATURE,
    }
    assert unsigned == {
        "functionCall": {"id": "call-b", "name": "lookup", "args": {"query": "tide", "days": 1}}
    }
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"output": "sunny"}}},
        {"functionResponse": {"id": "call-b", "name": "lookup", "response": {"error": "no tide"}}},
    ]


async def test_empty_text_parts_are_never_sent() -> None:
    request = ModelRequest(
        "",
        (
            ModelInput.of("", "hi", ""),
            ModelOutput(tool_requests=(ModelToolRequest(SIGNED, "t", {}),)),
            ModelInput(tool_responses=(ModelToolResponse(SIGNED, "t", MultimodalContent.empty),)),
        ),
    )
    with FakeGeminiServer(lambda request: "ok") as server:
        async with provider(server) as gemini:
            await gemini.generate(request, Env.of(CONFIG))
    body = server.requests[0].body
    assert "systemInstruction" not in body
    assert "".join(json.dumps(body).split()).count('{"text":""}') == 0
    assert json.loads(json.dumps(body["contents"]))[0]["parts"] == [{"text": "hi"}]


async def test_config_options_go_where_gemini_reads_them() -> None:
    config = GeminiConfig(
        model="gemini-3-pro",
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_output_tokens=300,
        thinking_budget=0,
        extra={
            "seed": 7,
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        },
    )
    with FakeGeminiServer(lambda request: "ok") as server:
        async with provider(server) as gemini:
            await gemini.generate(ModelRequest("", (ModelInput.of("hi"),)), Env.of(config))
            assert gemini.fingerprint(Env.of(config)) == {
                "provider": "gemini",
                "model": "gemini-3-pro",
                **config.options(),
            }
    body = server.requests[0].body
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 300,
        "thinkingConfig": {"thinkingBudget": 0},
        "seed": 7,
    }
    assert body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
    ]
    assert body["model"] == "models/gemini-3-pro"


async def test_several_tool_calls_in_one_turn_round_trip_through_a_pipeline() -> None:
    @tool
    async def word_count(text: str) -> int:
        """Count words in text."""
        return len(text.split())

    answers: Iterator[Answer] = iter(
        [
            ModelOutput(
                tool_requests=(
                    ModelToolRequest(SIGNED, "word_count", {"text": "a b c"}),
                    ModelToolRequest(call_identifier(None, 1), "word_count", {"text": "d e"}),
                ),
                provider_data=SIGNATURES,
            ),
            "five words",
        ]
    )
    with FakeGeminiServer(lambda request: next(answers)) as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            state = await Stage.completion("count", tools=[word_count]).execute()
    assert state.result.as_string() == "five words"
    second = server.model_requests[1]
    asked, answered = second.context[-2:]
    assert isinstance(asked, ModelOutput)
    assert [call.identifier for call in asked.tool_requests] == ["gemini-call-0", "gemini-call-1"]
    assert asked.provider_data == SIGNATURES  # the signature came back
    assert isinstance(answered, ModelInput)
    assert [r.content.as_string() for r in answered.tool_responses] == ["3", "2"]
    contents = json.loads(json.dumps(server.requests[1].body["contents"]))
    assert contents[1]["parts"][0]["thoughtSignature"] == SIGNATURE
    assert "thoughtSignature" not in contents[1]["parts"][1]
    kept = state.context[1]
    assert isinstance(kept, ModelOutput)
    assert kept.provider_data == SIGNATURES
    final = state.context[-1]
    assert isinstance(final, ModelOutput)
    assert final.usage is not None
    assert final.usage.model == "fake-gemini"
    assert final.usage.output_tokens == 2


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


async def test_structured_output_with_a_pydantic_type() -> None:
    with FakeGeminiServer(lambda request: '{"city": "Oslo", "celsius": 4}') as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            state = await Stage.completion("weather?", output=Weather).execute()
    assert state.result.artifacts(Weather) == (Weather(city="Oslo", celsius=4),)
    generation = json.loads(json.dumps(server.requests[0].body["generationConfig"]))
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"]["properties"]["city"] == {
        "title": "City",
        "type": "string",
    }


async def test_usage_counts_thoughts_as_output() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "thinking...", "thought": True}, {"text": "Hi"}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 3,
            "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gemini-2.5-flash-001",
    }
    with FakeGeminiServer() as server:
        server.inject(Fault.raw(json.dumps(body)))
        async with provider(server) as gemini:
            answer = await gemini.generate(ModelRequest("", (ModelInput.of("hi"),)), Env.of(CONFIG))
    assert isinstance(answer, ModelOutput)
    assert answer.content.as_string() == "Hi"
    assert answer.usage is not None
    assert (answer.usage.model, answer.usage.input_tokens, answer.usage.output_tokens) == (
        "gemini-2.5-flash-001",
        10,
        23,
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(500), ModelUnavailableError),
        (Fault.status(503), ModelUnavailableError),
        (Fault.status(401, message=f"bad key {SECRET}"), ModelAuthenticationError),
        (
            Fault.status(400, code="API_KEY_INVALID", message=f"API key not valid: {SECRET}"),
            ModelAuthenticationError,
        ),
        (
            Fault.status(
                400,
                message="The input token count (2000000) exceeds the maximum "
                "number of tokens allowed (1048576).",
            ),
            ModelContextTooLongError,
        ),
        (Fault.status(400, message="bad parameter"), ModelInvalidRequestError),
        (Fault.status(429, retry_after="2"), ModelRateLimitError),
        (Fault.malformed(), ModelUnavailableError),
        (Fault.truncated(), ModelUnavailableError),
        (Fault.drop(), ModelUnavailableError),
    ],
)
async def test_faults_become_typed_failures_with_the_state_and_no_secret(
    fault: Fault, expected: type[StageException]
) -> None:
    start = StageState(result="before")
    with FakeGeminiServer(lambda request: "unused") as server:
        server.inject(fault)
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            outcome = await Stage.completion("hi").attempt(start)
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert type(error) is expected, repr(error)
    assert error.state == start
    assert SECRET not in str(error)
    assert SECRET not in repr(error.__dict__)


async def test_a_429_carries_its_retry_info_delay_capped() -> None:
    with FakeGeminiServer(lambda request: "unused") as server:
        server.inject(Fault.status(429, retry_after="1.5"), Fault.status(429, retry_after="9999"))
        async with Gemini(api_key=SECRET, base_url=server.base_url, max_retry_after=30) as gemini:
            first = await gemini.generate(ModelRequest("", (ModelInput.of("a"),)), Env.of(CONFIG))
            second = await gemini.generate(ModelRequest("", (ModelInput.of("b"),)), Env.of(CONFIG))
    assert isinstance(first, ModelFailure)
    assert (first.kind, first.retry_after) == ("rate_limited", 1.5)
    assert isinstance(second, ModelFailure)
    assert second.retry_after == 30.0
    assert "capped at 30 s" in second.message


@pytest.mark.parametrize(
    "body",
    [
        {"promptFeedback": {"blockReason": "SAFETY"}},
        {"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]},
        {"candidates": [{"finishReason": "PROHIBITED_CONTENT"}]},
    ],
    ids=["prompt-blocked", "answer-safety", "prohibited"],
)
async def test_safety_blocks_become_refusals(body: object) -> None:
    with FakeGeminiServer() as server:
        server.inject(Fault.raw(json.dumps(body)))
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelRefusalError)


async def test_a_refusal_from_the_callback_is_a_blocked_prompt() -> None:
    with FakeGeminiServer(lambda request: ModelFailure("refused", "no")) as server:
        async with ctx.scope("t", CONFIG, disposables=(provider(server),)):
            outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelRefusalError)


async def test_the_key_comes_from_the_environment_and_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", SECRET)
    with FakeGeminiServer(lambda request: "from env") as server:
        gemini = Gemini(base_url=server.base_url)
        assert gemini.secrets() == (SECRET,)
        async with ctx.scope("t", CONFIG, disposables=(gemini,)):
            state = await Stage.completion("hi").execute()
        monkeypatch.setenv("GEMINI_API_KEY", "gemini-key-wins-0000")
        assert gemini.secrets() == ("gemini-key-wins-0000",)
    assert state.result.as_string() == "from env"
    assert server.requests[0].headers["x-goog-api-key"] == SECRET
    assert repr(Gemini(api_key=SECRET)) == "Gemini()"
    assert SECRET not in json.dumps(gemini.fingerprint(Env.of(CONFIG)))


async def test_no_key_is_an_authentication_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    async with ctx.scope("t", CONFIG, disposables=(Gemini(base_url="http://127.0.0.1:9/"),)):
        outcome = await Stage.completion("hi").attempt()
    assert isinstance(outcome.failure(), ModelAuthenticationError)


async def test_several_scopes_share_one_client_closed_at_the_last_exit() -> None:
    with FakeGeminiServer(lambda request: "ok") as server:
        gemini = provider(server)
        async with ctx.scope("outer", CONFIG, disposables=(gemini,)):
            async with ctx.scope("inner", CONFIG, disposables=(gemini,)):
                await Stage.completion("a").execute()
            await Stage.completion("b").execute()  # still open after the inner exit
        assert server.wait_for_connections(0)
    outcome = await Stage.completion("hi").attempt(env=Env.of(gemini, CONFIG))
    assert "Gemini() is not open" in str(outcome.failure())


async def test_misuse_is_reported_clearly() -> None:
    async with Gemini(api_key=SECRET, base_url="http://127.0.0.1:9/") as opened:
        outcome = await Stage.completion("hi").attempt(env=Env.of(opened))
    assert "no Gemini config in the Env" in str(outcome.failure())
    with pytest.raises(ValueError, match="max_retry_after"):
        Gemini(max_retry_after=float("inf"))


async def test_the_recorder_records_and_replays_a_gemini_pipeline_unchanged(
    tmp_path: Path,
) -> None:
    @tool
    async def word_count(text: str) -> int:
        """Count words in text."""
        return len(text.split())

    def answer(request: ModelRequest) -> Answer:
        if request.output.mode == "json":
            return '{"words": 3}'
        last = request.context[-1]
        if isinstance(last, ModelInput) and last.tool_responses:
            return "three"
        return ModelOutput(
            tool_requests=(ModelToolRequest(SIGNED, "word_count", {"text": "a b c"}),),
            provider_data=SIGNATURES,
        )

    pipeline = Stage.sequence(
        Stage.completion("count", tools=[word_count]),
        Stage.completion("as JSON", output="json"),
    )
    cassette = tmp_path / "gemini.json"
    with FakeGeminiServer(answer) as server:
        async with ctx.scope(
            "t", CONFIG, Recorder(cassette, mode="record"), disposables=(provider(server),)
        ):
            recorded = await pipeline.execute()
        sent = len(server.requests)
    assert SECRET not in cassette.read_text()
    async with ctx.scope(
        "t",
        CONFIG,
        Recorder(cassette, mode="replay"),
        disposables=(Gemini(api_key=SECRET, base_url="http://127.0.0.1:9/"),),
    ):
        replayed = await pipeline.execute()
    assert sent == 3
    assert replayed.context == recorded.context
    assert replayed.result == recorded.result
    kept = [turn.provider_data for turn in replayed.context if isinstance(turn, ModelOutput)]
    assert kept == [
        turn.provider_data for turn in recorded.context if isinstance(turn, ModelOutput)
    ]
    assert SIGNATURES in kept  # the signature survived the cassette
    assert SIGNATURE in cassette.read_text()
    assert "~thoughtSignature~" not in cassette.read_text()  # no identifier carries it


async def test_signatures_are_kept_in_provider_data_and_sent_back_on_their_parts() -> None:
    """A text's and a call's thought signatures, read from Gemini's own
    answer: the identifier stays Gemini's id, the content only the text,
    and the next request carries each signature on the part that had it."""
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True, "thoughtSignature": "dGg="},
                        {"text": "Checking.", "thoughtSignature": "dGV4dA=="},
                        {
                            "functionCall": {"id": "fc-1", "name": "t", "args": {}},
                            "thoughtSignature": "Y2FsbA==",
                        },
                        {"functionCall": {"name": "t", "args": {"n": 1}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
    }
    kept = {"gemini": {"signatures": {"fc-1": "Y2FsbA=="}, "text_signature": "dGV4dA=="}}
    with FakeGeminiServer(lambda request: "ok") as server:
        server.inject(Fault.raw(json.dumps(body)))
        async with provider(server) as gemini:
            answer = await gemini.generate(ModelRequest("", (ModelInput.of("hi"),)), Env.of(CONFIG))
            assert isinstance(answer, ModelOutput)
            assert answer.content == MultimodalContent.of("Checking.")
            assert [call.identifier for call in answer.tool_requests] == ["fc-1", "gemini-call-1"]
            assert answer.provider_data == kept
            responses = tuple(
                ModelToolResponse(call.identifier, "t", MultimodalContent.of("done"))
                for call in answer.tool_requests
            )
            request = ModelRequest(
                "", (ModelInput.of("hi"), answer, ModelInput(tool_responses=responses))
            )
            await gemini.generate(request, Env.of(CONFIG))
    contents = json.loads(json.dumps(server.requests[1].body["contents"]))
    assert contents[1]["parts"] == [
        {"text": "Checking.", "thoughtSignature": "dGV4dA=="},
        {"functionCall": {"id": "fc-1", "name": "t", "args": {}}, "thoughtSignature": "Y2FsbA=="},
        {"functionCall": {"name": "t", "args": {"n": 1}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"id": "fc-1", "name": "t", "response": {"output": "done"}}},
        {"functionResponse": {"name": "t", "response": {"output": "done"}}},
    ]
    (received,) = server.model_requests  # the injected answer skipped the first
    assert received.context[1].provider_data == kept  # type: ignore[union-attr]  # an output turn

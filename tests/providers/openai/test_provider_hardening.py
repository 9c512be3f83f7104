"""The OpenAI provider does not trust the server (issue 12, its provider part).

One regression test, or group, per mechanism, each named for it:

- statuses: every documented Responses `status` becomes its typed outcome;
- Retry-After: parsed leniently, capped (`OpenAI(max_retry_after=...)`), noted;
- malformed bodies: any kind is `ModelUnavailableError`; tool arguments that
  are not a JSON object become an error answer the model can correct;
- redaction by value: the provider's exact key, whatever its shape, and any
  `Bearer` token never reach a failure, a span or a log;
- shared providers: one `OpenAI()` entered by overlapping scopes stays open
  until the last exits.

Then a hypothesis property over hostile wire bodies, on both anyio backends.
Everything runs against `FakeOpenAIServer`; waits are on a `VirtualClock`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from functools import cache

import anyio
import anyio.to_thread
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from stagefx import (
    Env,
    ModelContextTooLongError,
    ModelError,
    ModelInput,
    ModelInvalidRequestError,
    ModelOutput,
    ModelRateLimitError,
    ModelRefusalError,
    ModelUnavailableError,
    RecordingTracer,
    Stage,
    StageException,
    StageState,
    ctx,
    format_trace,
    tool,
)
from stagefx._core.secrets import Scrubber
from stagefx._model.http import retry_after
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._errors import kind_of
from stagefx.openai._wire import INVALID_ARGUMENTS
from stagefx.testing import FakeOpenAIServer, Fault, VirtualClock
from tests.contract.shared import shared_file

pytestmark = pytest.mark.anyio

RESPONSES = OpenAIResponsesConfig(model="gpt-4o")
CHAT = OpenAIChatConfig(model="llama3")
Config = OpenAIResponsesConfig | OpenAIChatConfig
CONFIGS: list[Config] = [RESPONSES, CHAT]

KEYS = {  # one key of each shape a server might echo
    "openai": "sk-proj-Q7x2Lm9Pz4Kd8Rt1Vb6Nc3Hs5Jw0Ye2Ua",
    "groq": "gsk_8fJ2kQ9mZx4LpR7tVb1NcY3Hs6Dw0Ea5Ui2Oq",
    "azure": "3f9a1c7e5b2d4086af1e9c3b7d5a2f40",
    "google": "AIzaSyD4-x9Qm2Lp7Rt1Vb6Nc3Hs5Jw0Ye2UaKq",
    "anthropic": "sk-ant-api03-Zx4Lp7Rt1Vb6Nc3Hs5Jw0Ye2Ua8Kq9Mm",
    "opaque": "tenant7.Zq4Kx9Lm2Pr5Tv8",
    "token": "eyJhbGciOiJSUzI1NiJ9." + "eyJhdWQiOiJhcGkiLCJzdWIiOiJ0ZXN0In0" * 4 + ".c2lnbmF0dXJl",
}
KEY = KEYS["groq"]


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    added.append((a, b))
    return a + b


added: list[tuple[int, int]] = []


def response_body(status: str | None = "completed", **fields: object) -> bytes:
    """A Responses API body (`status` left out when None)."""
    body: dict[str, object] = {"id": "resp_1", "object": "response", "model": "gpt-4o"}
    if status is not None:
        body["status"] = status
    body.setdefault("output", [])
    body.update(fields)
    return json.dumps(body).encode()


def message(text: str) -> dict[str, object]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


async def attempt(
    server: FakeOpenAIServer,
    *faults: Fault,
    config: Config = RESPONSES,
    stage: Stage | None = None,
    key: str = KEY,
    clock: VirtualClock | None = None,
    tracer: RecordingTracer | None = None,
    max_retry_after: float = 60.0,
) -> Result[StageState, StageException]:
    server.inject(*faults)
    provider = OpenAI(api_key=key, base_url=server.base_url, max_retry_after=max_retry_after)
    providers = [config, clock or VirtualClock(), *([tracer] if tracer else [])]
    async with ctx.scope("hardening", *providers, disposables=(provider,)):
        outcome = await (stage or Stage.completion("hi")).attempt()
    assert server.pending_faults == 0
    return outcome


def failed(outcome: object) -> StageException:
    assert isinstance(outcome, Failure), outcome
    error = outcome.failure()
    assert isinstance(error, StageException)
    return error


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(lambda request: "done") as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(server: FakeOpenAIServer) -> Iterator[None]:
    server.clear_faults()
    yield
    server.clear_faults()


# Statuses ----------------------------------------------------------------------


@cache
def response_schemas() -> Mapping[str, object]:
    spec = json.loads(shared_file("spec/openai-openapi.json").read_text())
    schemas: Mapping[str, object] = spec["components"]["schemas"]
    return schemas


def test_statuses_the_spec_documents_are_exactly_the_ones_mapped() -> None:
    """The Response object of OpenAI's OpenAPI description: `status`,
    `error.code` (ResponseErrorCode) and `incomplete_details.reason`."""
    schemas = response_schemas()
    response = schemas["Response"]
    assert isinstance(response, dict)
    (properties,) = (
        part["properties"] for part in response["allOf"] if "status" in part.get("properties", {})
    )
    assert set(properties["status"]["enum"]) == {
        "completed",
        "failed",
        "in_progress",
        "cancelled",
        "queued",
        "incomplete",
    }
    (details,) = (
        option
        for option in properties["incomplete_details"]["anyOf"]
        if option.get("type") == "object"
    )
    assert set(details["properties"]["reason"]["enum"]) == {"max_output_tokens", "content_filter"}
    error_code = schemas["ResponseErrorCode"]
    assert isinstance(error_code, dict)
    kinds = {code: kind_of(code) for code in error_code["enum"]}
    assert kinds["rate_limit_exceeded"] == "rate_limited"
    assert kinds["server_error"] == "unavailable"
    assert kinds["invalid_prompt"] == "invalid_request"
    # Every documented code but the server-side ones names something specific.
    vague = {code for code, kind in kinds.items() if kind == "unavailable"}
    assert vague == {"server_error", "vector_store_timeout"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("rate_limit_exceeded", ModelRateLimitError),
        ("server_error", ModelUnavailableError),
        ("vector_store_timeout", ModelUnavailableError),
        ("context_length_exceeded", ModelContextTooLongError),
        ("invalid_prompt", ModelInvalidRequestError),
        ("invalid_image_url", ModelInvalidRequestError),
        ("bio_policy", ModelRefusalError),
        ("a_code_from_next_year", ModelUnavailableError),
    ],
)
async def test_status_failed_with_an_error_object_is_its_typed_failure(
    server: FakeOpenAIServer, code: str, expected: type[ModelError]
) -> None:
    body = response_body("failed", error={"code": code, "message": "it went wrong"})
    error = failed(await attempt(server, Fault.raw(body)))
    assert type(error) is expected
    assert str(error) == f"OpenAI: the response failed: {code}: it went wrong"


async def test_status_failed_rate_limit_reads_retry_after_from_the_answer(
    server: FakeOpenAIServer,
) -> None:
    body = response_body("failed", error={"code": "rate_limit_exceeded", "message": "slow down"})
    error = failed(await attempt(server, Fault.raw(body, headers={"Retry-After": "7"})))
    assert isinstance(error, ModelRateLimitError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize("error", [None, "boom", [1, 2], {}])
async def test_status_failed_without_a_usable_error_object_is_unavailable(
    server: FakeOpenAIServer, error: object
) -> None:
    outcome = await attempt(server, Fault.raw(response_body("failed", error=error)))
    assert type(failed(outcome)) is ModelUnavailableError


async def test_status_failed_is_retried_like_any_failure(server: FakeOpenAIServer) -> None:
    """It used to be an empty success that no retry saw."""
    body = response_body("failed", error={"code": "server_error", "message": "oops"})
    stage = Stage.completion("hi").with_retry(limit=1)
    outcome = await attempt(server, Fault.raw(body), stage=stage)
    assert isinstance(outcome, Success)
    assert outcome.unwrap().result.as_string() == "done"


async def test_status_incomplete_at_max_output_tokens_is_a_length_success(
    server: FakeOpenAIServer,
) -> None:
    body = response_body(
        "incomplete",
        incomplete_details={"reason": "max_output_tokens"},
        output=[message("The answer is")],
    )
    outcome = await attempt(server, Fault.raw(body))
    state = outcome.unwrap()
    assert state.result.as_string() == "The answer is"
    last = state.context[-1]
    assert isinstance(last, ModelOutput)
    assert last.finish_reason == "length"


async def test_status_incomplete_at_max_output_tokens_without_output_is_invalid_request(
    server: FakeOpenAIServer,
) -> None:
    body = response_body("incomplete", incomplete_details={"reason": "max_output_tokens"})
    error = failed(await attempt(server, Fault.raw(body)))
    assert type(error) is ModelInvalidRequestError
    assert "max_output_tokens" in str(error)


async def test_status_incomplete_by_content_filter_is_a_refusal(server: FakeOpenAIServer) -> None:
    body = response_body(
        "incomplete", incomplete_details={"reason": "content_filter"}, output=[message("Sure, h")]
    )
    assert type(failed(await attempt(server, Fault.raw(body)))) is ModelRefusalError


@pytest.mark.parametrize("status", ["cancelled", "queued", "in_progress", "paused"])
async def test_status_cancelled_pending_or_unknown_is_unavailable(
    server: FakeOpenAIServer, status: str
) -> None:
    body = response_body(status, output=[message("half")])
    error = failed(await attempt(server, Fault.raw(body)))
    assert type(error) is ModelUnavailableError
    assert status in str(error)


async def test_status_chat_200_with_an_error_object_is_its_typed_failure(
    server: FakeOpenAIServer,
) -> None:
    """OpenAI-compatible servers (routers, proxies) answer some failures with 200."""
    body = json.dumps({"error": {"message": "upstream busy", "code": 429}}).encode()
    error = failed(await attempt(server, Fault.raw(body), config=CHAT))
    assert type(error) is ModelUnavailableError  # a numeric code names nothing
    body = json.dumps({"error": {"message": "slow", "type": "rate_limit_exceeded"}}).encode()
    error = failed(await attempt(server, Fault.raw(body), config=CHAT))
    assert type(error) is ModelRateLimitError


# Retry-After -------------------------------------------------------------------


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "later", "retry-after": "4"}, 4.0),
        (
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            30.0,
        ),
        (
            {
                "retry-after": "Wed, 21 Oct 2015 07:27:00 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            0.0,
        ),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_retry_after_is_parsed_leniently(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers, 60.0) == (expected, "")


def test_retry_after_dates_without_a_date_header_count_from_now() -> None:
    then = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after({"retry-after": then}, 60.0, now=1_000_000) == (30.0, "")


@pytest.mark.parametrize(
    ("headers", "asked"),
    [
        ({"retry-after": "inf"}, "inf"),
        ({"retry-after": "1e999"}, "inf"),
        ({"retry-after": "nan"}, "nan"),
        ({"retry-after": "31536000"}, "31536000"),
        ({"retry-after-ms": "1e12"}, "1000000000"),
        (
            {
                "retry-after": "Fri, 31 Dec 9999 23:59:59 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            "2.5e+11",
        ),
    ],
)
def test_retry_after_beyond_the_cap_is_capped_with_a_note(
    headers: dict[str, str], asked: str
) -> None:
    seconds, note = retry_after(headers, 60.0)
    assert seconds == 60.0
    assert note.startswith("server asked to wait ")
    assert note.endswith(" s; capped at 60 s")
    if asked != "2.5e+11":
        assert note == f"server asked to wait {asked} s; capped at 60 s"


@pytest.mark.parametrize("config", [RESPONSES, CHAT], ids=["responses", "chat"])
@pytest.mark.parametrize("value", ["inf", "1e999", "31536000", http_date(10**9)])
async def test_retry_after_capped_through_the_provider(
    server: FakeOpenAIServer, config: Config, value: str
) -> None:
    error = failed(await attempt(server, Fault.status(429, retry_after=value), config=config))
    assert isinstance(error, ModelRateLimitError)
    assert error.retry_after == 60.0
    assert str(error).endswith("; capped at 60 s)")
    assert "server asked to wait " in str(error)


@pytest.mark.parametrize("value", ["soon", "in a minute", "  ", "1,5"])
async def test_retry_after_unparseable_is_still_a_rate_limit_failure(
    server: FakeOpenAIServer, value: str
) -> None:
    error = failed(await attempt(server, Fault.status(429, retry_after=value)))
    assert type(error) is ModelRateLimitError
    assert isinstance(error, ModelRateLimitError)
    assert error.retry_after is None
    assert "capped" not in str(error)


async def test_retry_after_cap_is_configurable(server: FakeOpenAIServer) -> None:
    error = failed(await attempt(server, Fault.status(429, retry_after="30"), max_retry_after=5))
    assert isinstance(error, ModelRateLimitError)
    assert error.retry_after == 5.0
    assert "server asked to wait 30 s; capped at 5 s" in str(error)
    for wrong in (-1.0, float("inf"), float("nan"), "60", True):
        with pytest.raises(ValueError, match="max_retry_after"):
            OpenAI(max_retry_after=wrong)  # type: ignore[arg-type]  # wrong on purpose


async def test_retry_after_under_with_retry_waits_only_the_cap(server: FakeOpenAIServer) -> None:
    """`Retry-After: inf` used to make with_retry sleep for ever."""
    clock = VirtualClock()
    stage = Stage.completion("hi").with_retry(limit=2, delay=0.5)
    faults = (Fault.status(429, retry_after="inf"), Fault.status(429, retry_after="1e999"))
    outcome = await attempt(server, *faults, stage=stage, clock=clock)
    assert outcome.unwrap().result.as_string() == "done"
    assert clock.sleeps == [60.0, 60.0]


# Malformed bodies and tool arguments -------------------------------------------

DEEP = 100_000
MALFORMED = {
    "not JSON": b"<html>Bad gateway</html>",
    "empty": b"",
    "a string": b'"hello"',
    "null": b"null",
    "a list": b"[1, 2, 3]",
    "wrong types": b'{"output": 5, "choices": "none"}',
    "wrong item types": json.dumps(
        {
            "output": [{"type": "message", "content": [{"type": "output_text", "text": 5}]}],
            "choices": [{"message": {"tool_calls": [{"id": 1, "function": {"name": None}}]}}],
        }
    ).encode(),
    "5,000-digit integer": b'{"output": [], "choices": [], "usage": {"input_tokens": '
    + b"9" * 5000
    + b"}}",
    "deep nesting": b'{"output": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep objects": b'{"output": [' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"]}",
    "invalid UTF-8": b'{"output": [{"type": "message", "content": '
    b'[{"type": "output_text", "text": "\xff\xfe"}]}]}',
    "lone surrogate": b'{"output": [], "choices": [], "model": "\\ud800"',
    "status of the wrong type": b'{"status": ["failed"], "output": []}',
}


@pytest.mark.parametrize("config", [RESPONSES, CHAT], ids=["responses", "chat"])
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_bodies_of_any_kind_are_unavailable(
    server: FakeOpenAIServer, config: Config, body: bytes
) -> None:
    error = failed(await attempt(server, Fault.raw(body), config=config))
    assert type(error) is ModelUnavailableError, repr(error)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, ModelInvalidRequestError), (429, ModelRateLimitError), (500, ModelUnavailableError)],
)
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_error_bodies_keep_the_status_failure(
    server: FakeOpenAIServer, status: int, expected: type[ModelError], body: bytes
) -> None:
    error = failed(await attempt(server, Fault.status(status, body=body)))
    assert type(error) is expected, repr(error)
    assert len(str(error)) < 2000


BAD_ARGUMENTS = {
    "invalid JSON": '{"a": 1,',
    "a list": "[1, 2]",
    "a string": '"1 and 2"',
    "too deep": '{"a": ' + "[" * 200 + "]" * 200 + "}",
    "a 5,000-digit integer": '{"a": ' + "7" * 5000 + ', "b": 1}',
    "nested past the parser": "[" * DEEP + "]" * DEEP,
}


@pytest.mark.parametrize("config", [RESPONSES, CHAT], ids=["responses", "chat"])
@pytest.mark.parametrize("arguments", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
async def test_tool_arguments_not_a_json_object_become_an_error_answer(
    server: FakeOpenAIServer, config: Config, arguments: str
) -> None:
    if isinstance(config, OpenAIResponsesConfig):
        call = {"type": "function_call", "call_id": "c1", "name": "add", "arguments": arguments}
        body = response_body(output=[call])
    else:
        function = {"name": "add", "arguments": arguments}
        choice = {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": function}],
            },
            "finish_reason": "tool_calls",
        }
        body = json.dumps({"choices": [choice], "model": "llama3"}).encode()
    added.clear()
    before = len(server.requests)
    outcome = await attempt(
        server, Fault.raw(body), config=config, stage=Stage.completion("hi", tools=[add])
    )
    state = outcome.unwrap()
    assert state.result.as_string() == "done"
    assert added == []  # the tool never ran
    request, response = state.context[-3:-1]
    assert isinstance(request, ModelOutput)
    assert request.tool_requests[0].arguments == {INVALID_ARGUMENTS: arguments}
    assert isinstance(response, ModelInput)
    (answer,) = response.tool_responses
    assert answer.error
    told = (
        "invalid arguments for add: a: Field required; b: Field required; "
        "(arguments are not a JSON object): Extra inputs are not permitted"
    )
    assert answer.content.as_string() == told
    sent_input = server.model_requests[-1].context[-1]
    assert isinstance(sent_input, ModelInput)
    (sent_answer,) = sent_input.tool_responses
    assert sent_answer.content.as_string() == told  # what the model reads
    # The model sees its own call as it made it, not the marker.
    sent = json.loads(json.dumps(server.requests[before + 1].body))
    if isinstance(config, OpenAIResponsesConfig):
        (echoed,) = (item for item in sent["input"] if item.get("type") == "function_call")
    else:
        (with_call,) = (message for message in sent["messages"] if message.get("tool_calls"))
        echoed = with_call["tool_calls"][0]["function"]
    assert echoed["arguments"] == arguments


async def test_tool_arguments_empty_or_null_are_no_arguments(server: FakeOpenAIServer) -> None:
    @tool
    async def ping() -> str:
        """Answer pong."""
        return "pong"

    for arguments in ("", None, "  "):
        call = {"type": "function_call", "call_id": "c1", "name": "ping", "arguments": arguments}
        outcome = await attempt(
            server,
            Fault.raw(response_body(output=[call])),
            stage=Stage.completion("hi", tools=[ping]),
        )
        assert outcome.unwrap().result.as_string() == "done"
        response = server.model_requests[-1].context[-1]
        assert isinstance(response, ModelInput)
        assert response.tool_responses[0].content.as_string() == "pong"


# Redaction by value ------------------------------------------------------------


def echoing(key: str) -> dict[str, Fault]:
    """Faults whose bodies (or whose model) echo `key` back."""
    said = f"Incorrect API key provided: {key}. Header was Authorization: Bearer {key}"
    return {
        "400": Fault.status(400, message=said),
        "401": Fault.status(401, message=said),
        "403": Fault.status(403, message=said),
        "429": Fault.status(429, message=said, retry_after="inf"),
        "500": Fault.status(500, message=said),
        "raw 400 body": Fault.status(
            400, body=json.dumps({"error": {"message": said, "code": key}})
        ),
        "failed status": Fault.raw(response_body("failed", error={"code": key, "message": said})),
        "unknown status": Fault.raw(response_body(key)),
        "refusal": Fault.raw(
            response_body(
                output=[{"type": "message", "content": [{"type": "refusal", "refusal": said}]}]
            )
        ),
        "long message": Fault.status(400, message="x" * 995 + key + "y" * 2000),
    }


@pytest.mark.parametrize("fault", echoing("KEY").keys())
@pytest.mark.parametrize("shape", KEYS.keys())
async def test_redaction_by_value_scrubs_the_exact_key_everywhere(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture, shape: str, fault: str
) -> None:
    key = KEYS[shape]
    caplog.set_level(logging.DEBUG)
    tracer = RecordingTracer()
    stage = Stage.completion("hi").traced(label="ask")
    error = failed(await attempt(server, echoing(key)[fault], stage=stage, key=key, tracer=tracer))
    assert isinstance(error, ModelError)
    seen = {
        "str": str(error),
        "repr": repr(error),
        "fields": repr(error.__dict__),
        "pickle": pickle.dumps(error).decode("latin-1"),
        "unpickled": str(pickle.loads(pickle.dumps(error))),
        "spans": repr(tracer.spans),
        "trace": format_trace(tracer.spans),
        "logs": caplog.text,
    }
    for where, text in seen.items():
        assert key not in text, where
        assert key[:12] not in text, where  # nor a prefix left by shortening
    assert "***" in str(error)


async def test_redaction_by_value_covers_a_key_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = KEYS["azure"]
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server.inject(Fault.status(401, message=f"bad key {key}"))
    async with ctx.scope("t", RESPONSES, disposables=(OpenAI(base_url=server.base_url),)):
        error = failed(await Stage.completion("hi").attempt())
    assert key not in str(error)
    assert str(error) == "OpenAI 401: bad key ***"


def test_redaction_by_value_scrubs_encoded_keys_and_bearer_tokens() -> None:
    scrub = Scrubber(["ab+c/d=="])
    assert scrub("k=ab%2Bc%2Fd%3D%3D and ab+c/d== and Bearer xyz.123") == "k=*** and *** and ***"
    assert scrub("sk-abcdef123456 stays a shape match") == "*** stays a shape match"
    assert scrub.clip("a" * 2000 + "ab+c/d==", limit=10) == "aaaaaaaaaa... (1993 more)"
    # A placeholder key for a local server is too short to mean anything.
    assert Scrubber(["x", ""])("max_tokens exceeded") == "max_tokens exceeded"


# Shared providers --------------------------------------------------------------


async def test_shared_provider_stays_open_until_the_last_overlapping_scope_exits(
    server: FakeOpenAIServer,
) -> None:
    provider = OpenAI(api_key=KEY, base_url=server.base_url)
    first_in, first_out, second_in = anyio.Event(), anyio.Event(), anyio.Event()
    results: list[str] = []

    async def first() -> None:
        async with ctx.scope("first", RESPONSES, disposables=(provider,)):
            results.append((await Stage.completion("a").execute()).result.as_string())
            first_in.set()
            await second_in.wait()
        first_out.set()

    async def second() -> None:
        await first_in.wait()
        async with ctx.scope("second", CHAT, disposables=(provider,)):
            second_in.set()
            await first_out.wait()  # the first scope has exited: still open here
            results.append((await Stage.completion("b").execute()).result.as_string())
            client = provider._client  # the one client both scopes shared
            assert client is not None
            assert not client.is_closed()
        assert client.is_closed()
        assert provider._client is None

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
    assert results == ["done", "done"]
    # Closed after the last: a call now is refused, and entering again reopens.
    refused = failed(await Stage.completion("c").attempt(env=Env.of(provider, RESPONSES)))
    assert "OpenAI() is not open" in str(refused)
    async with ctx.scope("again", RESPONSES, disposables=(provider,)):
        assert (await Stage.completion("d").execute()).result.as_string() == "done"
    assert await anyio.to_thread.run_sync(server.wait_for_connections, 0)


async def test_shared_provider_in_nested_scopes_closes_after_the_outer(
    server: FakeOpenAIServer,
) -> None:
    provider = OpenAI(api_key=KEY, base_url=server.base_url)
    async with ctx.scope("outer", RESPONSES, disposables=(provider,)):
        async with ctx.scope("inner", disposables=(provider,)):
            await Stage.completion("a").execute()
        state = await Stage.completion("b").execute()  # the inner exit closed nothing
        client = provider._client
        assert client is not None
        assert not client.is_closed()
    assert state.result.as_string() == "done"
    assert client.is_closed()


# Hostile wire bodies: the property ---------------------------------------------

FIELDS = [
    "status",
    "error",
    "code",
    "message",
    "type",
    "output",
    "content",
    "text",
    "refusal",
    "choices",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "call_id",
    "id",
    "usage",
    "incomplete_details",
    "reason",
    "model",
    "finish_reason",
    "input_tokens",
]
NAMES = [
    "completed",
    "failed",
    "incomplete",
    "cancelled",
    "queued",
    "in_progress",
    "message",
    "function_call",
    "output_text",
    "refusal",
    "max_output_tokens",
    "content_filter",
    "rate_limit_exceeded",
    "server_error",
    "context_length_exceeded",
    "invalid_prompt",
    "add",
]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
WAITS = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "1e999", "-3", "31536000", "soon", "0", "2.5", ""]),
    st.sampled_from(["Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]),
    st.floats().map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.datetimes().map(lambda moment: email.utils.format_datetime(moment, usegmt=False)),
    HEADER_TEXT,
)
ERRORS = [400, 401, 403, 404, 408, 409, 422, 429, 429, 429, 500, 502, 503, 529]


@cache
def hostile_texts(key: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=12),
        st.sampled_from(NAMES),
        st.just(key),
        st.just(f"Bearer {key}"),
        st.builds(lambda a, b: f"{a}{key}{b}", st.text(max_size=4), st.text(max_size=4)),
    )


@cache
def json_values(key: str) -> st.SearchStrategy[object]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_texts(key),
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), children, max_size=5)
        ),
        max_leaves=8,
    )


@cache
def shaped_bodies(key: str) -> st.SearchStrategy[object]:
    """Bodies close to what each API sends, each field possibly wrong."""
    value = json_values(key)
    texts = hostile_texts(key)
    arguments = st.one_of(
        texts, st.just('{"a": 1, "b": 2}'), value.map(json.dumps), st.just("[" * 3000), value
    )
    item = st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "function_call", "reasoning"]) | texts},
        optional={
            "content": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["output_text", "refusal"]) | texts},
                    optional={"text": texts | value, "refusal": texts | value},
                ),
                max_size=3,
            )
            | value,
            "call_id": texts | value,
            "name": st.just("add") | texts,
            "arguments": arguments,
        },
    )
    responses = st.fixed_dictionaries(
        {"output": st.lists(item, max_size=3) | value},
        optional={
            "status": st.sampled_from(NAMES) | texts | value,
            "error": st.fixed_dictionaries(
                {}, optional={"code": texts | value, "message": texts | value}
            )
            | value,
            "incomplete_details": st.fixed_dictionaries({"reason": st.sampled_from(NAMES) | value})
            | value,
            "usage": value,
            "model": texts | value,
        },
    )
    call = st.fixed_dictionaries(
        {
            "id": texts | value,
            "function": st.fixed_dictionaries(
                {"name": st.just("add") | texts, "arguments": arguments}
            ),
        }
    )
    chat = st.fixed_dictionaries(
        {
            "choices": st.lists(
                st.fixed_dictionaries(
                    {
                        "message": st.fixed_dictionaries(
                            {},
                            optional={
                                "content": texts | value,
                                "refusal": texts | value,
                                "tool_calls": st.lists(call, max_size=2) | value,
                            },
                        )
                    },
                    optional={
                        "finish_reason": st.sampled_from(["stop", "length", "content_filter"])
                        | value
                    },
                ),
                max_size=2,
            )
            | value
        },
        optional={"error": value, "usage": value, "model": texts | value},
    )
    error = st.fixed_dictionaries(
        {
            "error": st.fixed_dictionaries(
                {"message": texts}, optional={"code": texts, "type": texts}
            )
            | value
        }
    )  # an error body, echoing what it likes
    return st.one_of(responses, chat, error, value)


@cache
def error_bodies(key: str) -> st.SearchStrategy[object]:
    """OpenAI-style error bodies whose message (or code, or type) echoes the key."""
    texts = hostile_texts(key)
    error = st.fixed_dictionaries(
        {"message": texts}, optional={"code": texts, "type": texts, "param": texts}
    )
    return st.fixed_dictionaries({"error": error})


def encoded(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda body: json.dumps(body).encode())


BODIES: dict[str, Callable[[str], st.SearchStrategy[bytes]]] = {  # each kind, drawn evenly
    "error body": lambda key: encoded(error_bodies(key)),
    "API-shaped": lambda key: encoded(shaped_bodies(key)),
    "any JSON": lambda key: encoded(json_values(key)),
    "random bytes": lambda key: st.binary(max_size=40),
    "truncated": lambda key: st.builds(
        lambda body, cut: body[:cut], encoded(shaped_bodies(key)), st.integers(0, 200)
    ),
    "invalid UTF-8": lambda key: encoded(shaped_bodies(key)).map(
        lambda body: body.replace(b'"', b'"\xff', 1)
    ),
    "huge integer": lambda key: st.integers(4000, 6000).map(
        lambda digits: b'{"output": [], "usage": {"input_tokens": ' + b"9" * digits + b"}}"
    ),
    "deep lists": lambda key: st.integers(500, 60_000).map(
        lambda depth: b"[" * depth + b"]" * depth
    ),
    "deep error": lambda key: st.integers(500, 3000).map(
        lambda depth: b'{"error": ' * depth + b"1" + b"}" * depth
    ),
}


@st.composite
def hostile_answers(draw: st.DrawFn) -> tuple[str, Config, bytes, dict[str, str], bool]:
    key = draw(st.sampled_from(sorted(KEYS.values())))
    kind = draw(st.sampled_from(sorted(BODIES)))
    event(f"body: {kind}")
    body = draw(BODIES[kind](key))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Retry-After"] = draw(WAITS)
    if draw(st.booleans()):
        headers["retry-after-ms"] = draw(WAITS)
    if draw(st.booleans()):
        headers["Date"] = draw(WAITS)
    retried = draw(st.sampled_from([False, False, True]))
    config = draw(st.sampled_from(CONFIGS))
    return key, config, body, headers, retried


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def hostile_loop(
    request: pytest.FixtureRequest, server: FakeOpenAIServer
) -> Iterator[tuple[BlockingPortal, dict[str, OpenAI]]]:
    """An event loop of each anyio backend, and one provider per key held open
    in it, so each example's own scope enters it again (and leaves it open)."""
    with start_blocking_portal(request.param) as portal, ExitStack() as opened:
        providers = {key: OpenAI(api_key=key, base_url=server.base_url) for key in KEYS.values()}
        for provider in providers.values():
            opened.enter_context(portal.wrap_async_context_manager(provider))
        yield portal, providers


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # only clears faults: each example uses its own
    ],
    derandomize=True,
)
@given(answer=hostile_answers(), success=st.sampled_from([200, 201]), error=st.sampled_from(ERRORS))
def test_hostile_wire_bodies_end_typed_bounded_and_without_the_key(
    server: FakeOpenAIServer,
    hostile_loop: tuple[BlockingPortal, dict[str, OpenAI]],
    answer: tuple[str, Config, bytes, dict[str, str], bool],
    success: int,
    error: int,
) -> None:
    """Whatever the server answers (each body both as a success and as an
    error status), `attempt()` returns quickly a Success or a `ModelError`
    whose text, repr and pickle hold no key, and no wait exceeds the cap."""
    portal, providers = hostile_loop
    key, config, body, headers, retried = answer
    stage = Stage.completion("hi", tools=[add], tool_rounds=2)
    if retried:
        stage = stage.with_retry(limit=1)

    async def run(status: int, clock: VirtualClock) -> object:
        server.inject(Fault.raw(body, status=status, headers=headers))
        with anyio.fail_after(10):
            async with ctx.scope("hostile", config, clock, disposables=(providers[key],)):
                return await stage.attempt()

    for status in (success, error):
        clock = VirtualClock()
        started = time.monotonic()
        outcome = portal.call(run, status, clock)
        assert time.monotonic() - started < 10
        assert server.pending_faults == 0
        assert all(0 <= wait <= 60 for wait in clock.sleeps)
        if isinstance(outcome, Success):
            event(f"{status // 100}xx: success")
            continue
        failure = failed(outcome)
        assert isinstance(failure, ModelError), repr(failure)
        event(f"{status // 100}xx: {type(failure).__name__}")
        if isinstance(failure, ModelRateLimitError) and failure.retry_after is not None:
            assert 0 <= failure.retry_after <= 60
        if "***" in str(failure):
            event("a scrubbed message")
        for text in (str(failure), repr(failure), repr(failure.__dict__)):
            assert key not in text
        assert key.encode() not in pickle.dumps(failure)

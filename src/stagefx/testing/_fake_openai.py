"""FakeOpenAIServer: a real HTTP server on 127.0.0.1 that speaks enough OpenAI.

It serves `/v1/responses` and `/v1/chat/completions` for the official
`openai` client, turns each request back into a `ModelRequest`, answers with a
FunctionModel-style callback (whole, or as server-sent events when the request
says `"stream": true`), records every raw request, and injects faults on
demand. It runs on its own thread and event loop (aiohttp), so it serves
sync and async tests alike, on any anyio backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar, cast, final

try:  # aiohttp serves; openai because the wire pieces are shared with the provider
    import openai
    from aiohttp import web
except ImportError as _import_error:
    raise ImportError(
        "FakeOpenAIServer needs aiohttp and openai: install the `testing` and `openai` extras "
        'with pip install "stagefx[testing]" "stagefx[openai]"'
    ) from _import_error

from stagefx._core.request import ModelFailure
from stagefx._model.body import MalformedBody
from stagefx.testing._demo import demo_answer
from stagefx.testing._fake_http import (
    Callback,
    ChunkHook,
    FakeHTTPServer,
    Fault,
    Headers,
    RecordedRequest,
    SentChunk,
    Split,
    StreamEvent,
)
from stagefx.testing._openai_codec import _chat as chat
from stagefx.testing._openai_codec import _responses as responses

del openai  # imported above only to check it is installed

__all__ = ["Fault", "FakeOpenAIServer", "RecordedRequest", "SentChunk"]


@final
class FakeOpenAIServer(FakeHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 and an ephemeral port.

    `with FakeOpenAIServer(callback) as server:` then point the client at
    `server.base_url`. The callback gets the decoded `ModelRequest` and
    answers like a `FunctionModel`: text, content, a `ModelOutput` (with tool
    requests) or a `ModelFailure` (sent as the matching HTTP error).
    `latency` delays every answer (for benchmarks); `inject` queues faults;
    `record=False` keeps no requests (for long load runs). `headers` are
    added to every answer the callback gives (not to errors or faults): a
    mapping, or a function of the `ModelRequest` returning one, e.g.
    `{"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6s"}`.

    A request with `"stream": true` is answered as OpenAI streams: server-sent
    events (Responses API events; Chat Completions chunks, the usage last when
    `stream_options.include_usage`, then `[DONE]`), each written to the socket
    on its own. `chunk_size` cuts text and tool-call arguments into pieces:
    every that many characters, or a function of the text returning the pieces
    in order (they must join to the text; a benchmark may ask for 1,000).
    Each event sent is appended to `sent_chunks` (unless `record=False`), and
    `on_chunk` (sync or async) is called on the server's thread just before
    each is written: it may wait, holding the stream, so a test can see the
    first delta arrive before the last chunk is sent.
    """

    _truncated: ClassVar[str] = '{"id": "resp_1", "output": [{"type": "mess'

    def __init__(
        self,
        answer: Callback = demo_answer,
        *,
        model: str = "fake-model",
        latency: float = 0.0,
        record: bool = True,
        headers: Headers | None = None,
        chunk_size: int | Split = 4,
        on_chunk: ChunkHook | None = None,
    ) -> None:
        super().__init__(answer, model, latency, record, headers, chunk_size, on_chunk)

    @property
    def base_url(self) -> str:
        return f"{self._root}/v1"

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/responses", self._handle)
        router.add_post("/v1/chat/completions", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_object(request)
        if isinstance(body, str):
            return _error(400, body, "invalid_request_error")
        self._record_request(request, request.path, body)
        chat_api = request.path.endswith("/chat/completions")
        streaming = body.get("stream") is True
        faulted, fault = await self._use_fault(request, streaming=streaming)
        if faulted is not None:
            return faulted
        decode_request = chat.decode_request if chat_api else responses.decode_request
        encode_response = chat.encode_response if chat_api else responses.encode_response
        try:
            decoded = decode_request(body)
        except MalformedBody as error:
            return _error(400, str(error), "invalid_request_error")
        output = await self._call(decoded)
        response_id = self._next_id()
        if isinstance(output, ModelFailure):
            if output.kind != "refused":
                return _failure(output)
            encode_refusal = chat.encode_refusal if chat_api else responses.encode_refusal
            encoded = encode_refusal(output.message, model=self._model, response_id=response_id)
        else:
            encoded = encode_response(output, model=self._model, response_id=response_id)
        if not streaming:
            return web.json_response(encoded, headers=self._extra_headers(decoded))
        if chat_api:
            options = body.get("stream_options")
            include_usage = (
                isinstance(options, Mapping)
                and cast("Mapping[str, object]", options).get("include_usage") is True
            )
            events = chat.encode_stream(encoded, self._split, include_usage=include_usage)
        else:
            events = responses.encode_stream(encoded, self._split)

        def error_event(fault: Fault, index: int) -> StreamEvent:
            if chat_api:
                return chat.encode_stream_error(fault.code, fault.message)
            return responses.encode_stream_error(fault.code, fault.message, index)

        return await self._stream(
            request, events, response_id, fault, self._extra_headers(decoded), error_event
        )

    def _status(self, fault: Fault) -> web.Response:
        if fault.kind == "status" and fault.body is None and not fault.headers:
            headers = {} if fault.retry_after is None else {"retry-after": fault.retry_after}
            return _error(fault.status_code, fault.message, "injected", fault.code, headers)
        return _raw(fault)

    def _error_answer(self, fault: Fault) -> Fault:
        error = {
            "message": fault.message,
            "type": "server_error",
            "param": None,
            "code": fault.code,
        }
        return Fault.raw(json.dumps({"error": error}))


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status=status,
        headers=headers,
    )


_FAILURE_STATUS = {
    "rate_limited": (429, "rate_limit_exceeded"),
    "unavailable": (503, "server_error"),
    "context_too_long": (400, "context_length_exceeded"),
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "invalid_api_key"),
}


def _failure(failure: ModelFailure) -> web.Response:
    status, code = _FAILURE_STATUS[failure.kind]
    headers = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
    return _error(status, failure.message, code, code, headers)


def _raw(fault: Fault) -> web.Response:
    """`fault`'s status, headers and body, as they are (an error body if none)."""
    headers = {"Content-Type": "application/json"}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    for name, value in fault.headers:
        headers.pop(next((key for key in headers if key.lower() == name.lower()), ""), None)
        headers[name] = value
    body = fault.body
    if body is None:
        error = {"message": fault.message, "type": "injected", "param": None, "code": fault.code}
        body = json.dumps({"error": error}).encode()
    return web.Response(body=body, status=fault.status_code, headers=headers)

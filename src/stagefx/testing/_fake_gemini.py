"""FakeGeminiServer: a real HTTP server on 127.0.0.1 that speaks enough Gemini.

It serves `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` for the official `google-genai` client,
turns each body back into a `ModelRequest`, answers with a FunctionModel-style
callback (whole, or as server-sent events), records every raw request, and
injects the faults `FakeOpenAIServer` does (the same `Fault` values). It runs
on its own thread and event loop (aiohttp), so it serves sync and async tests
alike, on any anyio backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar, Final, final

try:  # aiohttp serves; google-genai because the wire pieces are shared with the provider
    from aiohttp import web
    from google import genai
except ImportError as _import_error:
    raise ImportError(
        "FakeGeminiServer needs aiohttp and google-genai: install the `testing` and `gemini` "
        'extras with pip install "stagefx[testing]" "stagefx[gemini]"'
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
    Split,
)
from stagefx.testing._gemini_codec import _generate as generate

del genai  # imported above only to check it is installed

__all__ = ["FakeGeminiServer"]


@final
class FakeGeminiServer(FakeHTTPServer):
    """A Gemini API server on 127.0.0.1 and an ephemeral port.

    `with FakeGeminiServer(callback) as server:` then pass
    `Gemini(base_url=server.base_url, api_key=...)`. The callback gets the
    decoded `ModelRequest` and answers like a `FunctionModel`: text, content,
    a `ModelOutput` (with tool requests; thought signatures kept in its
    `provider_data` as the provider keeps them are sent on their parts) or a
    `ModelFailure` (sent as Gemini's HTTP error, a rate limit with a
    `google.rpc.RetryInfo`; `refused` as a prompt blocked for SAFETY).
    `latency` delays every answer; `inject` queues `Fault`s (`Fault.status`'s
    `retry_after` becomes a `RetryInfo` `retryDelay`); `headers` are added
    to every answer the callback gives.

    `:streamGenerateContent` answers as Gemini streams: a server-sent event
    per piece of text (`chunk_size`: characters, or a function returning the
    pieces), one per function call, then the finish reason and usage. Each
    event sent is appended to `sent_chunks` (its `last` marks the end), and
    `on_chunk` is called on the server's thread just before each is written.
    """

    _truncated: ClassVar[str] = '{"candidates": [{"content": {"parts": [{"te'

    def __init__(
        self,
        answer: Callback = demo_answer,
        *,
        model: str = "fake-gemini",
        latency: float = 0.0,
        record: bool = True,
        headers: Headers | None = None,
        chunk_size: int | Split = 4,
        on_chunk: ChunkHook | None = None,
    ) -> None:
        super().__init__(answer, model, latency, record, headers, chunk_size, on_chunk)

    @property
    def base_url(self) -> str:
        """The server root, as `Gemini(base_url=...)` takes it."""
        return f"{self._root}/"

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1beta/models/{call}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        _, _, method = request.match_info["call"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"unknown method {method!r}")
        body = await self._read_object(request)
        if isinstance(body, str):
            return _error(400, body)
        self._record_request(request, request.path_qs, body)
        streaming = method == "streamGenerateContent"
        faulted, fault = await self._use_fault(request, streaming=streaming)
        if faulted is not None:
            return faulted
        try:
            decoded = generate.decode_request(body)
        except MalformedBody as error:
            return _error(400, str(error))
        output = await self._call(decoded)
        response_id = self._next_id()
        if isinstance(output, ModelFailure):
            if output.kind != "refused":
                return _failure(output)
            encoded = generate.encode_blocked("SAFETY", model=self._model, response_id=response_id)
        else:
            encoded = generate.encode_response(output, model=self._model, response_id=response_id)
        if not streaming:
            return web.json_response(encoded, headers=self._extra_headers(decoded))
        chunks = generate.encode_stream(encoded, self._split)
        return await self._stream(
            request, chunks, response_id, fault, self._extra_headers(decoded), _error_event
        )

    def _status(self, fault: Fault) -> web.Response:
        if fault.kind == "status" and fault.body is None and not fault.headers:
            delay = None if fault.retry_after is None else f"{fault.retry_after}s"
            reason = "API_KEY_INVALID" if fault.code == "API_KEY_INVALID" else None
            return _error(fault.status_code, fault.message, retry_delay=delay, reason=reason)
        headers = {"Content-Type": "application/json", **dict(fault.headers)}
        body = fault.body
        if body is None:
            body = json.dumps(generate.encode_error(fault.status_code, fault.message)).encode()
        return web.Response(body=body, status=fault.status_code, headers=headers)

    def _error_answer(self, fault: Fault) -> Fault:
        return Fault.status(_CODES.get(fault.code or "", 500), message=fault.message)


_CODES: Final = {
    "server_error": 500,
    "rate_limit_exceeded": 429,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
}
"""`Fault.error_event` codes (OpenAI's names) as the HTTP codes Gemini's error objects carry."""


def _error_event(fault: Fault, index: int) -> generate.StreamChunk:
    return generate.StreamChunk(
        generate.encode_error(_CODES.get(fault.code or "", 500), fault.message), end=True
    )


def _error(
    status: int,
    message: str,
    *,
    retry_delay: str | None = None,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        generate.encode_error(status, message, retry_delay=retry_delay, reason=reason),
        status=status,
        headers=headers,
    )


def _failure(failure: ModelFailure) -> web.Response:
    delay = None if failure.retry_after is None else f"{failure.retry_after:g}s"
    if failure.kind == "rate_limited":
        return _error(429, failure.message, retry_delay=delay)
    if failure.kind == "authentication":
        return _error(400, failure.message, reason="API_KEY_INVALID")
    if failure.kind == "context_too_long":
        return _error(
            400,
            f"The input token count exceeds the maximum number of tokens allowed: "
            f"{failure.message}",
        )
    if failure.kind == "invalid_request":
        return _error(400, failure.message)
    return _error(503, failure.message)

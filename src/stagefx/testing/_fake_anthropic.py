"""FakeAnthropicServer: a real HTTP server on 127.0.0.1 that speaks enough of
Anthropic's Messages API.

It serves `POST /v1/messages` for the official `anthropic` client, turns each
request back into a `ModelRequest`, answers with a FunctionModel-style
callback (whole, or as server-sent events when the request says
`"stream": true`), records every raw request, and injects faults on demand
with the same `Fault` vocabulary as `FakeOpenAIServer`. It runs on its own
thread and event loop (aiohttp), so it serves sync and async tests alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar, final

try:  # aiohttp serves; anthropic because the wire pieces are shared with the provider
    import anthropic
    from aiohttp import web
except ImportError as _import_error:
    raise ImportError(
        "FakeAnthropicServer needs aiohttp and anthropic: install the `testing` and "
        '`anthropic` extras with pip install "stagefx[testing]" "stagefx[anthropic]"'
    ) from _import_error

from stagefx._core.request import ModelFailure
from stagefx._model.body import MalformedBody
from stagefx.testing._anthropic_codec import _messages as messages
from stagefx.testing._demo import demo_answer
from stagefx.testing._fake_http import (
    Callback,
    ChunkHook,
    FakeHTTPServer,
    Fault,
    Headers,
    Split,
    StreamEvent,
)

del anthropic  # imported above only to check it is installed

__all__ = ["FakeAnthropicServer"]

_FAILURES: Mapping[str, tuple[int, str]] = {
    "rate_limited": (429, "rate_limit_error"),
    "unavailable": (529, "overloaded_error"),
    "context_too_long": (400, "invalid_request_error"),
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "authentication_error"),
}

_STATUS_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@final
class FakeAnthropicServer(FakeHTTPServer):
    """An Anthropic Messages API server on 127.0.0.1 and an ephemeral port.

    `with FakeAnthropicServer(callback) as server:` then point the client at
    `server.base_url` (the server root, as the SDK takes it). The callback gets
    the decoded `ModelRequest` and answers like a `FunctionModel`: text,
    content, a `ModelOutput` (with tool requests, or thinking blocks kept in
    its `provider_data` as the provider keeps them) or a `ModelFailure`
    (sent as Anthropic's HTTP error: `unavailable` as 529 "overloaded";
    `refused` as a message whose `stop_reason` is `refusal`). With
    structured output, an answer whose text is JSON comes back as the output
    tool's call, as the model answers.

    `latency`, `record`, `headers`, `chunk_size`, `on_chunk`, `inject` and the
    faults (`Fault` from `stagefx.testing`) work as on `FakeOpenAIServer`;
    `Fault.status(...)` answers with Anthropic's error body, its `code` (if
    given) as the error's `type`; `Fault.error_event` sends an `error` event
    (type `code`, default `overloaded_error`).
    """

    _truncated: ClassVar[str] = '{"id": "msg_1", "type": "message", "content": [{"type": "te'

    def __init__(
        self,
        answer: Callback = demo_answer,
        *,
        model: str = "claude-fake",
        latency: float = 0.0,
        record: bool = True,
        headers: Headers | None = None,
        chunk_size: int | Split = 4,
        on_chunk: ChunkHook | None = None,
    ) -> None:
        super().__init__(answer, model, latency, record, headers, chunk_size, on_chunk)

    @property
    def base_url(self) -> str:
        """The server's root URL (the SDK adds `/v1/messages`)."""
        return self._root

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_object(request)
        if isinstance(body, str):
            return _error(400, "invalid_request_error", body)
        self._record_request(request, request.path, body)
        streaming = body.get("stream") is True
        faulted, fault = await self._use_fault(request, streaming=streaming)
        if faulted is not None:
            return faulted
        try:
            decoded = messages.decode_request(body)
            tool = messages.answer_tool(body)
        except (MalformedBody, ValueError) as error:
            return _error(400, "invalid_request_error", str(error))
        output = await self._call(decoded)
        response_id = self._next_id()
        if isinstance(output, ModelFailure):
            if output.kind != "refused":
                return _failure(output)
            encoded = messages.encode_refusal(model=self._model, response_id=response_id)
        else:
            encoded = messages.encode_response(
                output, model=self._model, response_id=response_id, tool=tool
            )
        if not streaming:
            return web.json_response(encoded, headers=self._extra_headers(decoded))
        events = messages.encode_stream(encoded, self._split)
        return await self._stream(
            request,
            events,
            f"msg_{response_id}",
            fault,
            self._extra_headers(decoded),
            _error_event,
        )

    def _status(self, fault: Fault) -> web.Response:
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        headers.update(dict(fault.headers))
        body = fault.body
        if body is None:
            kind = fault.code or _STATUS_TYPES.get(fault.status_code, "api_error")
            body = json.dumps(messages.encode_error(kind, fault.message)).encode()
        return web.Response(body=body, status=fault.status_code, headers=headers)

    def _error_answer(self, fault: Fault) -> Fault:
        return Fault.raw(
            json.dumps(messages.encode_error(fault.code or "overloaded_error", fault.message))
        )


def _error_event(fault: Fault, index: int) -> StreamEvent:
    return messages.encode_stream_error(fault.code or "overloaded_error", fault.message)


def _error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(messages.encode_error(kind, message), status=status, headers=headers)


def _failure(failure: ModelFailure) -> web.Response:
    status, kind = _FAILURES[failure.kind]
    message = failure.message
    if failure.kind == "context_too_long" and "too long" not in message:
        message = f"prompt is too long: {message}"
    headers = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
    return _error(status, kind, message, headers)

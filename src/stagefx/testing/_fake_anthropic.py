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

import asyncio
import inspect
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self, cast, final

import attrs

try:  # aiohttp serves; anthropic because the wire pieces are shared with the provider
    import anthropic
    from aiohttp import web
except ImportError as _import_error:
    raise ImportError(
        "FakeAnthropicServer needs aiohttp and anthropic: install the `testing` and "
        '`anthropic` extras with pip install "stagefx[testing]" "stagefx[anthropic]"'
    ) from _import_error

from stagefx._conversation import ModelInput, ModelOutput, TokenUsage
from stagefx._model import ModelFailure, ModelRequest
from stagefx.anthropic._wire import MalformedBody
from stagefx.testing._anthropic_codec import _messages as codec
from stagefx.testing._demo import demo_answer
from stagefx.testing._fake_openai import Fault, RecordedRequest, SentChunk
from stagefx.testing._models import Answer, as_output
from stagefx.testing._openai_codec._stream import Split, StreamEvent, splitter

del anthropic  # imported above only to check it is installed

__all__ = ["FakeAnthropicServer"]

Callback = Callable[[ModelRequest], Answer | Awaitable[Answer]]
Headers = Mapping[str, str] | Callable[[ModelRequest], Mapping[str, str]]
ChunkHook = Callable[[SentChunk], Awaitable[None] | None]

_STREAMING = frozenset({"cut", "error_event", "stall"})

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
class FakeAnthropicServer:
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
        if not callable(chunk_size) and (
            isinstance(chunk_size, bool)
            or not isinstance(cast(object, chunk_size), int)
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size needs characters >= 1 or a function, got {chunk_size!r}")
        self._split = splitter(chunk_size)
        self._on_chunk = on_chunk
        self._answer = answer
        self._headers = headers
        self._model = model
        self._latency = latency
        self._record = record
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []
        self.model_requests: list[ModelRequest] = []
        self.sent_chunks: list[SentChunk] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._stopped = asyncio.Event()

    @property
    def base_url(self) -> str:
        """The server's root URL (the SDK adds `/v1/messages`)."""
        if not self._port:
            raise RuntimeError("FakeAnthropicServer is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is used by one upcoming request, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def open_connections(self) -> int:
        """TCP connections the server holds open right now."""
        runner = self._runner
        server = None if runner is None else runner.server
        return 0 if server is None else len(server.connections)

    def wait_for_connections(self, count: int, *, timeout: float = 5.0) -> bool:
        """Block until exactly `count` connections are open (True), or `timeout`."""
        loop = self._loop
        if loop is None:
            return count == 0

        async def settle() -> None:
            while self.open_connections != count:  # noqa: ASYNC110  # aiohttp offers no close hook
                await asyncio.sleep(0.001)

        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(settle(), timeout), loop)
        try:
            future.result()
        except TimeoutError:
            return False
        return True

    # Lifecycle (as FakeOpenAIServer's) ------------------------------------------

    def __enter__(self) -> Self:
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as error:  # reported to the starting thread
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_until_complete(self._stopped.wait())
            loop.run_until_complete(self._stop())
            loop.close()

        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=serve, name="FakeAnthropicServer", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join()
        self._loop, self._thread, self._port = None, None, 0

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Serving -------------------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "request body is not JSON")
        if not isinstance(parsed, dict):
            return _error(400, "invalid_request_error", "request body is not an object")
        body = cast("dict[str, object]", parsed)  # a JSON object: its keys are str
        if self._record:
            headers = {key.lower(): value for key, value in request.headers.items()}
            self.requests.append(RecordedRequest(request.path, body, headers))
        streaming = body.get("stream") is True
        fault = self._next_fault()
        if fault is not None and fault.kind in _STREAMING and not streaming:
            fault = _whole(fault)
        if fault is not None and fault.kind not in ("delay", *_STREAMING):
            return await _faulty(request, fault)
        delay = fault.seconds if fault is not None and fault.kind == "delay" else self._latency
        if delay:
            await asyncio.sleep(delay)
        try:
            decoded = codec.decode_request(body)
            tool = codec.answer_tool(body)
        except (MalformedBody, ValueError) as error:
            return _error(400, "invalid_request_error", str(error))
        if self._record:
            self.model_requests.append(decoded)
        answer = self._answer(decoded)
        if inspect.isawaitable(answer):
            answer = await answer
        output = as_output(answer)
        response_id = f"{next(self._ids):06d}"
        if isinstance(output, ModelFailure):
            if output.kind != "refused":
                return _failure(output)
            encoded = codec.encode_refusal(model=self._model, response_id=response_id)
        else:
            if output.usage is None:
                output = attrs.evolve(output, usage=_usage(decoded, output, self._model))
            encoded = codec.encode_response(
                output, model=self._model, response_id=response_id, tool=tool
            )
        if not streaming:
            return web.json_response(encoded, headers=self._extra_headers(decoded))
        events = codec.encode_stream(encoded, self._split)
        stream_fault = None if fault is None or fault.kind == "delay" else fault
        return await self._stream(
            request, events, response_id, stream_fault, self._extra_headers(decoded)
        )

    async def _stream(
        self,
        request: web.Request,
        events: Sequence[StreamEvent],
        response_id: str,
        fault: Fault | None,
        headers: Mapping[str, str] | None,
    ) -> web.StreamResponse:
        """Send `events` one by one; a streaming `fault` strikes before the
        first chunk past its `after`, or before the end."""
        response = web.StreamResponse(
            headers={
                **(headers or {}),
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        deltas = 0
        try:
            for index, event in enumerate(events):
                if fault is not None and (event.end or (event.delta and deltas == fault.after)):
                    return await self._strike(request, response, fault, response_id, index)
                await self._send(response, event, response_id, index, last=index == len(events) - 1)
                deltas += event.delta
            await response.write_eof()
        except ConnectionResetError:  # the client left mid-stream, as clients may
            pass
        return response

    async def _send(
        self,
        response: web.StreamResponse,
        event: StreamEvent,
        response_id: str,
        index: int,
        *,
        last: bool,
    ) -> None:
        chunk = SentChunk(f"msg_{response_id}", index, event.text, last, time.monotonic())
        if self._on_chunk is not None:
            called = self._on_chunk(chunk)
            if inspect.isawaitable(called):
                await called
        await response.write(event.encode())
        if self._record:
            self.sent_chunks.append(attrs.evolve(chunk, at=time.monotonic()))

    async def _strike(
        self,
        request: web.Request,
        response: web.StreamResponse,
        fault: Fault,
        response_id: str,
        index: int,
    ) -> web.StreamResponse:
        if fault.kind == "cut":
            transport = request.transport
            if transport is not None:
                transport.abort()  # no terminating chunk: the client sees the body cut
            return response
        if fault.kind == "error_event":
            error = codec.encode_stream_error(fault.code or "overloaded_error", fault.message)
            await self._send(response, error, response_id, index, last=True)
            await response.write_eof()
            return response
        await asyncio.Event().wait()  # stall: ends when the client disconnects
        return response

    def _extra_headers(self, request: ModelRequest) -> dict[str, str] | None:
        headers = self._headers
        if headers is None:
            return None
        return dict(headers(request) if callable(headers) else headers)


def _whole(fault: Fault) -> Fault:
    """What a streaming fault does to a request that does not stream."""
    if fault.kind == "cut":
        return Fault.truncated()
    if fault.kind == "stall":
        return Fault.hang()
    return Fault.raw(
        json.dumps(codec.encode_error(fault.code or "overloaded_error", fault.message))
    )


def _error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(codec.encode_error(kind, message), status=status, headers=headers)


def _failure(failure: ModelFailure) -> web.Response:
    status, kind = _FAILURES[failure.kind]
    message = failure.message
    if failure.kind == "context_too_long" and "too long" not in message:
        message = f"prompt is too long: {message}"
    headers = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
    return _error(status, kind, message, headers)


async def _faulty(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind in ("status", "raw"):
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        headers.update(dict(fault.headers))
        body = fault.body
        if body is None:
            kind = fault.code or _STATUS_TYPES.get(fault.status_code, "api_error")
            body = json.dumps(codec.encode_error(kind, fault.message)).encode()
        return web.Response(body=body, status=fault.status_code, headers=headers)
    if fault.kind == "malformed":
        return web.Response(text="<html>this is not json", content_type="application/json")
    if fault.kind == "truncated":
        return web.Response(
            text='{"id": "msg_1", "type": "message", "content": [{"type": "te',
            content_type="application/json",
        )
    if fault.kind == "drop":
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response()
    await asyncio.Event().wait()  # hang: ends when the client disconnects
    return web.Response()


def _usage(request: ModelRequest, output: ModelOutput, model: str) -> TokenUsage:
    """Deterministic token counts: words in, words out."""
    words_in = sum(
        len(turn.content.as_string().split())
        for turn in request.context
        if isinstance(turn, ModelInput)
    )
    return TokenUsage(
        model, words_in + len(request.instructions.split()), len(output.content.as_string().split())
    )

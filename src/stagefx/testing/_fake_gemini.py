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

import asyncio
import inspect
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Self, cast, final

import attrs

try:  # aiohttp serves; the Fault vocabulary is FakeOpenAIServer's
    from aiohttp import web

    from stagefx.testing._fake_openai import Fault, RecordedRequest, SentChunk
    from stagefx.testing._openai_codec._stream import Split, splitter
except ImportError as _import_error:
    raise ImportError(
        "FakeGeminiServer needs aiohttp and openai: install the `testing` and `openai` extras "
        'with pip install "stagefx[testing]" "stagefx[openai]"'
    ) from _import_error

from stagefx._conversation import ModelInput, ModelOutput, TokenUsage
from stagefx._model import ModelFailure, ModelRequest
from stagefx.gemini._wire import MalformedBody
from stagefx.testing._demo import demo_answer
from stagefx.testing._gemini_codec import (
    StreamChunk,
    decode_request,
    encode_blocked,
    encode_error,
    encode_response,
    encode_stream,
)
from stagefx.testing._models import Answer, as_output

__all__ = ["FakeGeminiServer"]

Callback = Callable[[ModelRequest], Answer | Awaitable[Answer]]
Headers = Mapping[str, str] | Callable[[ModelRequest], Mapping[str, str]]
ChunkHook = Callable[[SentChunk], Awaitable[None] | None]

_STREAMING: Final = frozenset({"cut", "error_event", "stall"})


@final
class FakeGeminiServer:
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
        """The server root, as `Gemini(base_url=...)` takes it."""
        if not self._port:
            raise RuntimeError("FakeGeminiServer is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._port}/"

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
        self._thread = threading.Thread(target=serve, name="FakeGeminiServer", daemon=True)
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
        app.router.add_post("/v1beta/models/{call}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        _, _, method = request.match_info["call"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"unknown method {method!r}")
        try:
            parsed = json.loads(await request.read())
        except json.JSONDecodeError:
            return _error(400, "request body is not JSON")
        if not isinstance(parsed, dict):
            return _error(400, "request body is not an object")
        body = cast("dict[str, object]", parsed)  # a JSON object: its keys are str
        if self._record:
            headers = {key.lower(): value for key, value in request.headers.items()}
            self.requests.append(RecordedRequest(request.path_qs, body, headers))
        streaming = method == "streamGenerateContent"
        fault = self._next_fault()
        if fault is not None and fault.kind in _STREAMING and not streaming:
            fault = _whole(fault)
        if fault is not None and fault.kind not in ("delay", *_STREAMING):
            return await _faulty(request, fault)
        delay = fault.seconds if fault is not None and fault.kind == "delay" else self._latency
        if delay:
            await asyncio.sleep(delay)
        try:
            decoded = decode_request(body)
        except MalformedBody as error:
            return _error(400, str(error))
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
            encoded = encode_blocked("SAFETY", model=self._model, response_id=response_id)
        else:
            if output.usage is None:
                output = attrs.evolve(output, usage=_usage(decoded, output, self._model))
            encoded = encode_response(output, model=self._model, response_id=response_id)
        if not streaming:
            return web.json_response(encoded, headers=self._extra_headers(decoded))
        stream_fault = None if fault is None or fault.kind == "delay" else fault
        chunks = encode_stream(encoded, self._split)
        return await self._stream(
            request, chunks, response_id, stream_fault, self._extra_headers(decoded)
        )

    async def _stream(
        self,
        request: web.Request,
        chunks: Sequence[StreamChunk],
        response_id: str,
        fault: Fault | None,
        headers: Mapping[str, str] | None,
    ) -> web.StreamResponse:
        """Send `chunks` one by one as server-sent events; a streaming `fault`
        strikes before the first chunk past its `after`, or before the end."""
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
            for index, chunk in enumerate(chunks):
                if fault is not None and (chunk.end or (chunk.delta and deltas == fault.after)):
                    return await self._strike(request, response, fault, response_id, index)
                await self._send(response, chunk, response_id, index, last=chunk.end)
                deltas += chunk.delta
            await response.write_eof()
        except ConnectionResetError:  # the client left mid-stream, as clients may
            pass
        return response

    async def _send(
        self,
        response: web.StreamResponse,
        chunk: StreamChunk,
        response_id: str,
        index: int,
        *,
        last: bool,
    ) -> None:
        sent = SentChunk(response_id, index, chunk.text, last, time.monotonic())
        if self._on_chunk is not None:
            called = self._on_chunk(sent)
            if inspect.isawaitable(called):
                await called
        await response.write(chunk.encode())
        if self._record:
            self.sent_chunks.append(attrs.evolve(sent, at=time.monotonic()))

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
            code = _CODES.get(fault.code or "", 500)
            error = StreamChunk(encode_error(code, fault.message), end=True)
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


_CODES: Final = {
    "server_error": 500,
    "rate_limit_exceeded": 429,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
}
"""`Fault.error_event` codes (OpenAI's names) as the HTTP codes Gemini's error objects carry."""


def _whole(fault: Fault) -> Fault:
    """What a streaming fault does to a request that does not stream."""
    if fault.kind == "cut":
        return Fault.truncated()
    if fault.kind == "stall":
        return Fault.hang()
    return Fault.status(_CODES.get(fault.code or "", 500), message=fault.message)


def _error(
    status: int,
    message: str,
    *,
    retry_delay: str | None = None,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        encode_error(status, message, retry_delay=retry_delay, reason=reason),
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


async def _faulty(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "status" and fault.body is None and not fault.headers:
        delay = None if fault.retry_after is None else f"{fault.retry_after}s"
        reason = "API_KEY_INVALID" if fault.code == "API_KEY_INVALID" else None
        return _error(fault.status_code, fault.message, retry_delay=delay, reason=reason)
    if fault.kind in ("status", "raw"):
        headers = {"Content-Type": "application/json", **dict(fault.headers)}
        body = fault.body
        if body is None:
            body = json.dumps(encode_error(fault.status_code, fault.message)).encode()
        return web.Response(body=body, status=fault.status_code, headers=headers)
    if fault.kind == "malformed":
        return web.Response(text="<html>this is not json", content_type="application/json")
    if fault.kind == "truncated":
        return web.Response(
            text='{"candidates": [{"content": {"parts": [{"te', content_type="application/json"
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

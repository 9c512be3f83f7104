"""FakeOpenAIServer: a real HTTP server on 127.0.0.1 that speaks enough OpenAI.

It serves `/v1/responses` and `/v1/chat/completions` for the official
`openai` client, turns each request back into a `ModelRequest`, answers with a
FunctionModel-style callback (whole, or as server-sent events when the request
says `"stream": true`), records every raw request, and injects faults on
demand. It runs on its own thread and event loop (aiohttp), so it serves
sync and async tests alike, on any anyio backend.
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
from typing import Literal, Self, cast, final

import attrs

try:  # aiohttp serves; openai because the wire pieces are shared with the provider
    import openai
    from aiohttp import web
except ImportError as _import_error:
    raise ImportError(
        "FakeOpenAIServer needs aiohttp and openai: install the `testing` and `openai` extras "
        'with pip install "stagefx[testing]" "stagefx[openai]"'
    ) from _import_error

from stagefx._conversation import ModelInput, ModelOutput, TokenUsage
from stagefx._model import ModelFailure, ModelRequest
from stagefx.openai._wire import MalformedBody
from stagefx.testing._demo import demo_answer
from stagefx.testing._models import Answer, as_output
from stagefx.testing._openai_codec import _chat as chat
from stagefx.testing._openai_codec import _responses as responses
from stagefx.testing._openai_codec._stream import Split, StreamEvent, splitter

del openai  # imported above only to check it is installed

__all__ = ["Fault", "FakeOpenAIServer", "RecordedRequest", "SentChunk"]

Callback = Callable[[ModelRequest], Answer | Awaitable[Answer]]
Headers = Mapping[str, str] | Callable[[ModelRequest], Mapping[str, str]]
ChunkHook = Callable[["SentChunk"], Awaitable[None] | None]


@final
@attrs.frozen(slots=True)
class Fault:
    """One injected failure, used by the next request the server gets.

    Build with the class methods: `Fault.status(429, retry_after="2")`,
    `Fault.delay(0.05)`, `Fault.hang()`, `Fault.malformed()`,
    `Fault.truncated()`, `Fault.drop()`, `Fault.raw(b"...", status=200)`; and,
    for a streamed answer, `Fault.cut(after=3)`, `Fault.error_event(after=3)`,
    `Fault.stall(after=3)`, where `after` counts the chunks of text or
    tool-call arguments sent first (the end of the answer is never sent).
    """

    kind: Literal[
        "status",
        "delay",
        "hang",
        "malformed",
        "truncated",
        "drop",
        "raw",
        "cut",
        "error_event",
        "stall",
    ]
    status_code: int = 500
    retry_after: str | None = None
    code: str | None = None
    message: str = "injected fault"
    seconds: float = 0.0
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    after: int = 0

    @classmethod
    def status(
        cls,
        status_code: int,
        *,
        retry_after: str | None = None,
        code: str | None = None,
        message: str = "injected fault",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with an OpenAI-style error body and `status_code`; `body`
        replaces that body byte for byte, `headers` are added."""
        return cls(
            "status",
            status_code,
            retry_after,
            code,
            message,
            body=_bytes(body),
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def raw(
        cls, body: bytes | str, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Fault:
        """Answer with exactly `body` (JSON content type unless `headers` say
        otherwise) and `status`: hostile or malformed answers of any kind."""
        return cls("raw", status, body=_bytes(body), headers=tuple((headers or {}).items()))

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, after `seconds` of server-side latency."""
        return cls("delay", seconds=seconds)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer; the request ends only when the client gives up."""
        return cls("hang")

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls("malformed")

    @classmethod
    def truncated(cls) -> Fault:
        """Answer 200 with a valid answer cut in half."""
        return cls("truncated")

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def cut(cls, *, after: int) -> Fault:
        """Stream `after` chunks, then close the connection mid-answer.
        (A request that does not stream gets `truncated()`.)"""
        return cls("cut", after=_count(after))

    @classmethod
    def error_event(
        cls, *, after: int, code: str | None = "server_error", message: str = "injected fault"
    ) -> Fault:
        """Stream `after` chunks, then the error OpenAI sends when a stream
        fails midway (an `error` event; on Chat Completions an `error`
        object), then end the stream. (A request that does not stream gets
        that error object in a 200 body.)"""
        return cls("error_event", code=code, message=message, after=_count(after))

    @classmethod
    def stall(cls, *, after: int) -> Fault:
        """Stream `after` chunks, then send nothing more until the client goes
        away. (A request that does not stream gets `hang()`.)"""
        return cls("stall", after=_count(after))


_STREAMING = frozenset({"cut", "error_event", "stall"})


def _count(after: int) -> int:
    if isinstance(after, bool) or not isinstance(cast(object, after), int) or after < 0:
        raise ValueError(f"after= needs a number of chunks >= 0, got {after!r}")
    return after


def _whole(fault: Fault) -> Fault:
    """What a streaming fault does to a request that does not stream."""
    if fault.kind == "cut":
        return Fault.truncated()
    if fault.kind == "stall":
        return Fault.hang()
    error = {"message": fault.message, "type": "server_error", "param": None, "code": fault.code}
    return Fault.raw(json.dumps({"error": error}))


def _bytes(body: bytes | str | None) -> bytes | None:
    return body.encode() if isinstance(body, str) else body


@final
@attrs.frozen(slots=True)
class RecordedRequest:
    """A request as the server received it (headers lower-cased)."""

    path: str
    body: Mapping[str, object]
    headers: Mapping[str, str]


@final
@attrs.frozen(slots=True)
class SentChunk:
    """One server-sent event of a streamed answer, as the server sent it.

    `response_id` is the answer's number, as in its `id` (`resp_000001`,
    `chatcmpl-000001`); `index` counts the events of its answer from 0;
    `data` is the event's data line (JSON, or `[DONE]`); `last` says it ends
    the answer (the Responses API's `response.completed`, Chat Completions'
    `[DONE]`, or an injected error event); `at` is `time.monotonic()` when it
    was written to the socket (for `on_chunk`, called just before the write:
    the time of that call).
    """

    response_id: str
    index: int
    data: str
    last: bool
    at: float


@final
class FakeOpenAIServer:
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
        if not self._port:
            raise RuntimeError("FakeOpenAIServer is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._port}/v1"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is used by one upcoming request, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        """Injected faults no request has used yet."""
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        """Drop the injected faults no request has used."""
        with self._lock:
            self._faults.clear()

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

    # Lifecycle -----------------------------------------------------------------

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
        self._thread = threading.Thread(target=serve, name="FakeOpenAIServer", daemon=True)
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
        app.router.add_post("/v1/responses", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", 0, backlog=4096
        )  # load tests connect in bursts
        await site.start()
        sockets = self._runner.addresses
        self._port = int(sockets[0][1])

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
            return _error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(parsed, dict):
            return _error(400, "request body is not an object", "invalid_request_error")
        body = cast("dict[str, object]", parsed)  # a JSON object: its keys are str
        if self._record:
            headers = {key.lower(): value for key, value in request.headers.items()}
            self.requests.append(RecordedRequest(request.path, body, headers))
        chat_api = request.path.endswith("/chat/completions")
        streaming = body.get("stream") is True
        fault = self._next_fault()
        if fault is not None and fault.kind in _STREAMING and not streaming:
            fault = _whole(fault)
        if fault is not None and fault.kind not in ("delay", *_STREAMING):
            return await _faulty(request, fault)
        delay = fault.seconds if fault is not None and fault.kind == "delay" else self._latency
        if delay:
            await asyncio.sleep(delay)
        decode_request = chat.decode_request if chat_api else responses.decode_request
        encode_response = chat.encode_response if chat_api else responses.encode_response
        try:
            decoded = decode_request(body)
        except MalformedBody as error:
            return _error(400, str(error), "invalid_request_error")
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
            encode_refusal = chat.encode_refusal if chat_api else responses.encode_refusal
            encoded = encode_refusal(output.message, model=self._model, response_id=response_id)
        else:
            if output.usage is None:
                output = attrs.evolve(output, usage=_usage(decoded, output, self._model))
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
        stream_fault = None if fault is None or fault.kind == "delay" else fault
        return await self._stream(
            request, events, response_id, stream_fault, chat_api, self._extra_headers(decoded)
        )

    async def _stream(
        self,
        request: web.Request,
        events: Sequence[StreamEvent],
        response_id: str,
        fault: Fault | None,
        chat_api: bool,
        headers: Mapping[str, str] | None,
    ) -> web.StreamResponse:
        """Send `events` one by one as server-sent events; a streaming `fault`
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
            for index, event in enumerate(events):
                if fault is not None and (event.end or (event.delta and deltas == fault.after)):
                    return await self._strike(
                        request, response, fault, chat_api, response_id, index
                    )
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
        chunk = SentChunk(response_id, index, event.text, last, time.monotonic())
        if self._on_chunk is not None:
            called = self._on_chunk(chunk)
            if inspect.isawaitable(called):
                await called
        await response.write(event.encode())  # aiohttp writes each to the socket (chunked)
        if self._record:
            self.sent_chunks.append(attrs.evolve(chunk, at=time.monotonic()))

    async def _strike(
        self,
        request: web.Request,
        response: web.StreamResponse,
        fault: Fault,
        chat_api: bool,
        response_id: str,
        index: int,
    ) -> web.StreamResponse:
        if fault.kind == "cut":
            transport = request.transport
            if transport is not None:
                transport.abort()  # no terminating chunk: the client sees the body cut
            return response
        if fault.kind == "error_event":
            error = (
                chat.encode_stream_error(fault.code, fault.message)
                if chat_api
                else responses.encode_stream_error(fault.code, fault.message, index)
            )
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


async def _faulty(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "status" and fault.body is None and not fault.headers:
        headers = {} if fault.retry_after is None else {"retry-after": fault.retry_after}
        return _error(fault.status_code, fault.message, "injected", fault.code, headers)
    if fault.kind in ("status", "raw"):
        return _raw(fault)
    if fault.kind == "malformed":
        return web.Response(text="<html>this is not json", content_type="application/json")
    if fault.kind == "truncated":
        return web.Response(
            text='{"id": "resp_1", "output": [{"type": "mess', content_type="application/json"
        )
    if fault.kind == "drop":
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response()
    await asyncio.Event().wait()  # hang: ends when the client disconnects
    return web.Response()


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

"""What the fake provider servers share: the fault vocabulary, the recorded
requests and sent chunks, server-sent events, and the server itself.

`FakeHTTPServer` runs an aiohttp app on 127.0.0.1 and an ephemeral port, on its
own thread and event loop, so it serves sync and async tests alike, on any
anyio backend; `FakeOpenAIServer`, `FakeAnthropicServer` and `FakeGeminiServer`
build on it and add their routes and wire formats. Nothing here needs a
provider's SDK: only aiohttp (the `testing` extra).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import ClassVar, Final, Literal, Protocol, Self, cast, final

import attrs

try:  # aiohttp serves
    from aiohttp import web
except ImportError as _import_error:
    raise ImportError(
        "stagefx's fake servers need aiohttp: install the `testing` extra with "
        'pip install "stagefx[testing]"'
    ) from _import_error

from stagefx._core.conversation import ModelInput, ModelOutput, TokenUsage
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx.testing._models import Answer, as_output

__all__ = [
    "STREAMING",
    "Callback",
    "ChunkHook",
    "Event",
    "FakeHTTPServer",
    "Fault",
    "Headers",
    "RecordedRequest",
    "SentChunk",
    "Split",
    "StreamEvent",
]

Callback = Callable[[ModelRequest], Answer | Awaitable[Answer]]
Headers = Mapping[str, str] | Callable[[ModelRequest], Mapping[str, str]]
ChunkHook = Callable[["SentChunk"], Awaitable[None] | None]
Split = Callable[[str], Sequence[str]]
"""Cuts a text into the pieces streamed one by one; they join to the text."""


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


STREAMING: Final = frozenset({"cut", "error_event", "stall"})
"""The kinds of `Fault` that strike a streamed answer midway."""


def _count(after: int) -> int:
    if isinstance(after, bool) or not isinstance(cast(object, after), int) or after < 0:
        raise ValueError(f"after= needs a number of chunks >= 0, got {after!r}")
    return after


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


class Event(Protocol):
    """One server-sent event as a server writes it (`StreamEvent`, or a
    codec's own kind)."""

    @property
    def delta(self) -> bool: ...

    @property
    def end(self) -> bool: ...

    @property
    def text(self) -> str: ...

    def encode(self) -> bytes: ...


@final
@attrs.frozen(slots=True)
class StreamEvent:
    """One server-sent event of a streamed answer.

    `delta`: it carries a piece of text or of tool-call arguments (the chunks a
    streaming fault counts). `end`: it belongs to the end of the answer, which
    a streaming fault never lets through.
    """

    data: dict[str, object] | None  # None: the `[DONE]` sentinel that ends a chat stream
    name: str | None = None  # the SSE `event:` field (Responses API)
    delta: bool = False
    end: bool = False

    @property
    def text(self) -> str:
        """The event's data line as sent: JSON, or `[DONE]`."""
        return "[DONE]" if self.data is None else json.dumps(self.data)

    def encode(self) -> bytes:
        """The event on the wire, blank line included."""
        head = "" if self.name is None else f"event: {self.name}\n"
        return f"{head}data: {self.text}\n\n".encode()


def splitter(chunk_size: int | Split) -> Split:
    """`chunk_size` as a `Split`: an int cuts every that many characters; a
    function is used as it is."""
    if callable(chunk_size):
        return chunk_size
    size = chunk_size

    def split(text: str) -> Sequence[str]:
        return [text[start : start + size] for start in range(0, len(text), size)]

    return split


class FakeHTTPServer(abc.ABC):
    """A fake provider server on 127.0.0.1 and an ephemeral port: the
    lifecycle, the faults, the records and the streaming that every fake
    shares. A subclass adds its routes (`_routes`), its `base_url`, and how
    it answers a fault (`_status`, `_error_answer`, `_truncated`)."""

    _truncated: ClassVar[str]
    """The body `Fault.truncated()` answers: a valid answer cut in half."""

    def __init__(
        self,
        answer: Callback,
        model: str,
        latency: float,
        record: bool,
        headers: Headers | None,
        chunk_size: int | Split,
        on_chunk: ChunkHook | None,
    ) -> None:
        """The settings each fake's own signature documents, in its order."""
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
    def _root(self) -> str:
        """`http://127.0.0.1:<port>`, while the server runs."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

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
        self._thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
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
        self._routes(app.router)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", 0, backlog=4096
        )  # load tests connect in bursts
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # What a subclass says ------------------------------------------------------

    @abc.abstractmethod
    def _routes(self, router: web.UrlDispatcher) -> None:
        """Add the provider's routes."""

    @abc.abstractmethod
    def _status(self, fault: Fault) -> web.Response:
        """The answer to `Fault.status(...)` or `Fault.raw(...)`."""

    @abc.abstractmethod
    def _error_answer(self, fault: Fault) -> Fault:
        """What `Fault.error_event` does to a request that does not stream."""

    # Serving -------------------------------------------------------------------

    async def _read_object(self, request: web.Request) -> dict[str, object] | str:
        """The request's body, a JSON object; or why it is not one."""
        try:
            parsed = json.loads(await request.read())
        except json.JSONDecodeError:
            return "request body is not JSON"
        if not isinstance(parsed, dict):
            return "request body is not an object"
        return cast("dict[str, object]", parsed)  # a JSON object: its keys are str

    def _record_request(self, request: web.Request, path: str, body: Mapping[str, object]) -> None:
        if self._record:
            headers = {key.lower(): value for key, value in request.headers.items()}
            self.requests.append(RecordedRequest(path, body, headers))

    async def _use_fault(
        self, request: web.Request, *, streaming: bool
    ) -> tuple[web.StreamResponse | None, Fault | None]:
        """Use the next injected fault: the answer it makes (if it makes one,
        nothing more is to be done), and the streaming fault left for the
        stream to strike with; a delay (or `latency`) is waited out here."""
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault.kind in STREAMING and not streaming:
            fault = self._whole(fault)
        if fault is not None and fault.kind not in ("delay", *STREAMING):
            return await self._faulty(request, fault), None
        delay = fault.seconds if fault is not None and fault.kind == "delay" else self._latency
        if delay:
            await asyncio.sleep(delay)
        return None, None if fault is None or fault.kind == "delay" else fault

    def _whole(self, fault: Fault) -> Fault:
        """What a streaming fault does to a request that does not stream."""
        if fault.kind == "cut":
            return Fault.truncated()
        if fault.kind == "stall":
            return Fault.hang()
        return self._error_answer(fault)

    async def _faulty(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind in ("status", "raw"):
            return self._status(fault)
        if fault.kind == "malformed":
            return web.Response(text="<html>this is not json", content_type="application/json")
        if fault.kind == "truncated":
            return web.Response(text=self._truncated, content_type="application/json")
        if fault.kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response()
        await asyncio.Event().wait()  # hang: ends when the client disconnects
        return web.Response()

    async def _call(self, decoded: ModelRequest) -> ModelOutput | ModelFailure:
        """The callback's answer to `decoded` (recorded), with token usage."""
        if self._record:
            self.model_requests.append(decoded)
        answer = self._answer(decoded)
        if inspect.isawaitable(answer):
            answer = await answer
        output = as_output(answer)
        if isinstance(output, ModelOutput) and output.usage is None:
            output = attrs.evolve(output, usage=_usage(decoded, output, self._model))
        return output

    def _next_id(self) -> str:
        return f"{next(self._ids):06d}"

    async def _stream(
        self,
        request: web.Request,
        events: Sequence[Event],
        response_id: str,
        fault: Fault | None,
        headers: Mapping[str, str] | None,
        error_event: Callable[[Fault, int], Event],
    ) -> web.StreamResponse:
        """Send `events` one by one as server-sent events; a streaming `fault`
        strikes before the first chunk past its `after`, or before the end
        (`error_event` makes its event, from the fault and the event's index)."""
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
                        request, response, fault, response_id, index, error_event
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
        event: Event,
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
        response_id: str,
        index: int,
        error_event: Callable[[Fault, int], Event],
    ) -> web.StreamResponse:
        if fault.kind == "cut":
            transport = request.transport
            if transport is not None:
                transport.abort()  # no terminating chunk: the client sees the body cut
            return response
        if fault.kind == "error_event":
            await self._send(response, error_event(fault, index), response_id, index, last=True)
            await response.write_eof()
            return response
        await asyncio.Event().wait()  # stall: ends when the client disconnects
        return response

    def _extra_headers(self, request: ModelRequest) -> dict[str, str] | None:
        headers = self._headers
        if headers is None:
            return None
        return dict(headers(request) if callable(headers) else headers)


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

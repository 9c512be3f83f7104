"""MCP servers as tool sources: a disposable that runs a session with the
server, and stands in a stage's `tools=` for the tools the server lists."""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Literal, TypeVar, cast, final

import anyio
import anyio.abc
import httpx2
import mcp_types
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.client.session import IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from stagefx._core.content import (
    ArtifactContent,
    ContentPart,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx._core.errors import MissingEnvironmentError, ToolError, describe_error
from stagefx._core.schema import Shape, ValidationFailure
from stagefx._core.state import StageState
from stagefx._env.env import Env, HoldsSecrets
from stagefx._model.boundary import NOT_JSON
from stagefx._model.tools import Tool, ToolSource, ToolUnavailable

__all__ = ["MCPServer", "MCPToolError", "MCPTools"]

T = TypeVar("T")


class MCPToolError(Exception):
    """A tool's result with `isError`: its text is the error answer the model reads."""


@final
class MCPServer(ToolSource):
    """An MCP server whose tools a stage may use: a disposable of `ctx.scope`
    (started at entry, stopped at exit, no process left behind), and in a
    stage's `tools=` a stand-in for every tool it lists (`server.tools(*names)`
    for some). Build one with `MCPServer.stdio(...)` or `MCPServer.http(...)`.

    `timeout`: the longest a call may take (None: no limit); a server that
    takes longer fails the stage with a `ToolError` naming it. `start_timeout`:
    the longest the server may take to start (or the HTTP session to open).
    """

    def __init__(
        self,
        name: str,
        transport: Literal["stdio", "http"],
        *,
        command: str = "",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        url: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if not name:
            raise ValueError("an MCPServer needs a name")
        for given in (timeout, start_timeout):
            if given is not None and not (given > 0 and math.isfinite(given)):
                raise ValueError(f"a timeout must be a positive number of seconds, got {given!r}")
        self.name = name
        self.transport = transport
        self.command = command
        self.args = tuple(args)
        self.env = None if env is None else dict(env)
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._open: dict[object, list[AbstractAsyncContextManager[_Connection]]] = {}

    @classmethod
    def stdio(
        cls,
        name: str,
        *,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        start_timeout: float = 30.0,
    ) -> MCPServer:
        """A server run as a subprocess, spoken to over its stdin and stdout.
        `env` is added to a minimal inherited environment (PATH, HOME, ...)."""
        if not command:
            raise ValueError("MCPServer.stdio needs a command")
        return cls(
            name,
            "stdio",
            command=command,
            args=args,
            env=env,
            timeout=timeout,
            start_timeout=start_timeout,
        )

    @classmethod
    def http(
        cls,
        name: str,
        *,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        start_timeout: float = 30.0,
    ) -> MCPServer:
        """A server reached over streamable HTTP at `url`, every request with `headers`
        (an `Authorization` header, say: its value is kept out of messages)."""
        if not url:
            raise ValueError("MCPServer.http needs a url")
        return cls(
            name, "http", url=url, headers=headers, timeout=timeout, start_timeout=start_timeout
        )

    def tools(self, *names: str) -> MCPTools:
        """Only the named tools of this server (a name it does not list fails the stage)."""
        return MCPTools(self, names)

    async def resolve(self, env: Env) -> Sequence[Tool[..., object]]:
        """Every tool the server lists now (from the connection open in `env`)."""
        return await self._connection(env).tools()

    def _connection(self, env: Env) -> _Connection:
        for provider in reversed(env.providers):
            if isinstance(provider, _Connection) and provider.server is self:
                return provider
        raise MissingEnvironmentError(
            f"MCP server {self.name!r} is not running: "
            "give it to ctx.scope(..., disposables=(server,))",
            state=StageState.empty,
        )

    def secrets(self) -> tuple[str, ...]:
        """The header values (credentials) to keep out of messages and logs."""
        return tuple(value for value in self.headers.values() if value)

    async def __aenter__(self) -> _Connection:
        """Start the server (or the HTTP session) and list nothing yet."""
        opened = _connected(self)
        connection = await opened.__aenter__()
        self._open.setdefault(_task(), []).append(opened)
        return connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the session and the server process, even under cancellation."""
        key = _task()
        stack = self._open[key]
        opened = stack.pop()
        if not stack:
            del self._open[key]
        await opened.__aexit__(kind, error, traceback)

    def __str__(self) -> str:
        return f"mcp:{self.name}"

    def __repr__(self) -> str:
        where = self.url if self.transport == "http" else " ".join((self.command, *self.args))
        return f"MCPServer.{self.transport}({self.name!r}, {where!r})"


@final
class MCPTools(ToolSource):
    """Some of an MCP server's tools, by name: `server.tools("read", "search")`."""

    def __init__(self, server: MCPServer, names: Sequence[str]) -> None:
        if not names:
            raise ValueError(f"{server.name}.tools() needs at least one tool name")
        self.server = server
        self.names = tuple(names)

    async def resolve(self, env: Env) -> Sequence[Tool[..., object]]:
        """The named tools as the server lists them now."""
        listed = {found.name: found for found in await self.server.resolve(env)}
        missing = [name for name in self.names if name not in listed]
        if missing:
            offered = ", ".join(sorted(listed)) or "none"
            raise ToolError(
                f"MCP server {self.server.name!r} lists no tool named "
                f"{', '.join(map(repr, missing))} (it lists: {offered})",
                state=StageState.empty,
            )
        return [listed[name] for name in self.names]

    def __str__(self) -> str:
        return f"mcp:{self.server.name}({', '.join(self.names)})"


def _task() -> object:
    """The task entering and leaving a server: `ctx.scope` does both in one task."""
    return anyio.get_current_task().id


@final
class _Connection(HoldsSecrets):
    """One running session with a server: the provider an `MCPServer` adds to
    the scope's Env. Its session lives in a task of its own, so a transport
    that fails cancels only that task, never the scope's body; the calls under
    way then fail with `ToolUnavailable` naming the server."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self._client: Client | None = None
        self.running = False
        self.started = False
        self._failure: BaseException | None = None
        self._stop = anyio.Event()
        self._calls: set[anyio.CancelScope] = set()
        self._listed: tuple[Tool[..., object], ...] | None = None
        self._listing = anyio.Lock()

    def secrets(self) -> tuple[str, ...]:
        return self.server.secrets()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The session, from start to stop; never raises but cancellation."""
        started = False
        try:
            async with self._client_of() as client:
                self._client = client
                self.running = self.started = started = True
                task_status.started()
                await self._stop.wait()
        except Exception as error:  # an ExceptionGroup too: kept, and told to the calls
            self._failure = error
        finally:
            self.running = False
            self._client = None
            for scope in tuple(self._calls):
                scope.cancel()
            if not started:
                task_status.started()

    def _client_of(self) -> Client:
        server = self.server
        if server.transport == "stdio":
            parameters = StdioServerParameters(
                command=server.command, args=list(server.args), env=server.env
            )
            transport = stdio_client(parameters, errlog=sys.stderr)
        else:
            transport = _over_http(server)
        return Client(
            transport,
            mode="legacy",
            cache=None,
            message_handler=self._heard,
        )

    async def _heard(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._listed = None  # listed again at the next round of a stage

    def stop(self) -> None:
        self._stop.set()

    def failed(self, doing: str) -> ToolUnavailable:
        why = "" if self._failure is None else f": {_why(self._failure)}"
        return ToolUnavailable(f"MCP server {self.server.name!r} failed {doing}{why}")

    async def tools(self) -> tuple[Tool[..., object], ...]:
        """The server's tools, listed again only after it said its list changed."""
        listed = self._listed
        if listed is not None:
            return listed
        async with self._listing:
            if self._listed is None:
                result = await self._request("listing its tools", self._list_all)
                self._listed = tuple(self._tool(spec) for spec in result)
            return self._listed

    async def _list_all(self, client: Client) -> list[mcp_types.Tool]:
        found: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            found.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return found

    def _tool(self, spec: mcp_types.Tool) -> Tool[..., object]:
        name = spec.name

        async def call(**arguments: object) -> MultimodalContent:
            return await self.call(name, arguments)

        def check(value: object) -> dict[str, object]:
            if not isinstance(value, dict):
                raise ValidationFailure("arguments must be a JSON object")
            given = cast("dict[object, object]", value)  # JSON from the model: str keys
            arguments = {str(key): item for key, item in given.items()}
            if NOT_JSON in arguments:
                raise ValidationFailure(str(arguments[NOT_JSON]))
            return arguments  # the server checks them against its schema

        schema: dict[str, object] = dict(spec.input_schema)
        schema.pop("title", None)
        return Tool(
            call,
            name=name,
            description=spec.description or spec.title or "",
            shape=Shape(schema, check, name),
        )

    async def call(self, name: str, arguments: Mapping[str, object]) -> MultimodalContent:
        """`tools/call`: the result as content; `MCPToolError` for an `isError`
        result; `ToolUnavailable` naming the server when it fails or hangs."""

        async def send(client: Client) -> mcp_types.CallToolResult:
            return await client.call_tool(name, dict(arguments))

        result = await self._request(f"calling {name!r}", send)
        if result.is_error:
            raise MCPToolError(_text(result.content) or "the tool reported an error")
        return _content(result)

    async def _request(self, doing: str, send: Callable[[Client], Awaitable[T]]) -> T:
        client = self._client
        if client is None:
            raise self.failed(doing)
        scope = anyio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                if self.server.timeout is None:
                    return await send(client)
                with anyio.fail_after(self.server.timeout):
                    return await send(client)
        except TimeoutError as error:
            raise ToolUnavailable(
                f"MCP server {self.server.name!r} did not answer {doing} "
                f"within {self.server.timeout:g} s"
            ) from error
        except MCPError as error:
            if error.code == mcp_types.CONNECTION_CLOSED or self._client is None:
                raise self.failed(doing) from error
            raise MCPToolError(f"MCP server {self.server.name!r}: {error.message}") from error
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            raise self.failed(doing) from error
        finally:
            self._calls.discard(scope)
        raise self.failed(doing)  # cancelled by `run`: the session ended under the call


@asynccontextmanager
async def _connected(server: MCPServer) -> AsyncGenerator[_Connection, None]:
    """A session with `server` in a task group of its own; `ToolError` naming
    the server when it cannot be started or reached (within its timeout)."""
    connection = _Connection(server)
    starting = anyio.move_on_after(server.start_timeout)
    raised: Exception | None = None
    async with anyio.create_task_group() as group:
        with starting:
            await group.start(connection.run)
        if connection.running:
            try:
                yield connection
            except Exception as error:  # the scope's: raised as is, not in a group
                raised = error
            finally:
                connection.stop()
        else:
            connection.stop()
            group.cancel_scope.cancel()
    if raised is not None:
        raise raised
    if connection.started:
        return
    if starting.cancelled_caught:
        raise ToolError(
            f"MCP server {server.name!r} did not start within {server.start_timeout:g} s",
            state=StageState.empty,
        )
    raise ToolError(
        str(connection.failed("to start")).replace("failed to start", "could not start"),
        state=StageState.empty,
    )


@asynccontextmanager
async def _over_http(server: MCPServer) -> AsyncGenerator[TransportStreams, None]:
    """Streamable HTTP with the server's headers on every request; the HTTP
    client closed with the session."""
    timeout = httpx2.Timeout(30.0, read=300.0)
    http = httpx2.AsyncClient(headers=server.headers, timeout=timeout)
    async with http, streamable_http_client(server.url, http_client=http) as streams:
        yield streams


def _why(error: BaseException) -> str:
    """What went wrong, from the leaves of an exception group (the SDK wraps
    a refused connection in one)."""
    leaves: list[str] = []
    pending: list[BaseException] = [error]
    while pending:
        found = pending.pop()
        if isinstance(found, BaseExceptionGroup):
            group = cast("BaseExceptionGroup[BaseException]", found)
            pending.extend(reversed(group.exceptions))
        else:
            leaves.append(describe_error(found))
    return "; ".join(dict.fromkeys(leaves))


def _text(blocks: Sequence[mcp_types.ContentBlock]) -> str:
    return "\n".join(block.text for block in blocks if isinstance(block, mcp_types.TextContent))


def _content(result: mcp_types.CallToolResult) -> MultimodalContent:
    """A result as content: text as text, images as `ImageContent`, resources
    by their text or link, structured content as one artifact (shown as the
    result's text, which MCP has the server give as the JSON)."""
    parts: list[ContentPart] = []
    structured = result.structured_content
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            if structured is None:
                parts.append(TextContent(block.text))
        elif isinstance(block, mcp_types.ImageContent):
            try:
                data = base64.b64decode(block.data, validate=True)
            except (binascii.Error, ValueError):
                parts.append(
                    TextContent(f"(an image the server sent in bad base64, {block.mime_type})")
                )
            else:
                parts.append(ImageContent.of_bytes(data, mime_type=block.mime_type))
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(TextContent(resource.text))
            else:
                parts.append(ResourceContent(str(resource.uri), resource.mime_type))
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(ResourceContent(str(block.uri), block.mime_type))
        else:  # audio: not content stagefx carries
            parts.append(TextContent(f"(audio, {block.mime_type}, not shown)"))
    if structured is not None:
        text = _text(result.content) or json.dumps(structured, ensure_ascii=False)
        parts.insert(0, ArtifactContent(structured, text))
    return MultimodalContent(tuple(parts))

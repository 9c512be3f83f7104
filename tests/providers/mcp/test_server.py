"""MCP servers' tools in stages, against real servers written with the `mcp` SDK
(tests/mcp_servers/tools_server.py) over stdio and over streamable HTTP."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from returns.pipeline import is_successful

from stagefx import (
    ArtifactContent,
    Env,
    ImageContent,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    Stage,
    StageState,
    ToolAnswered,
    ToolCalled,
    ToolError,
    ctx,
    tool,
)
from stagefx._core.errors import MissingEnvironmentError, StageTimeoutError
from stagefx._model.boundary import CallLayer, ToolPath
from stagefx._model.tools import Tool, ToolContext
from stagefx.mcp import MCPServer, MCPToolError, MCPTools
from stagefx.testing import ScriptedModel
from tests.helpers import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

SERVER = str(ROOT / "tests" / "mcp_servers" / "tools_server.py")
TOKEN = "sk-mcp-test-token-0123456789"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stdio(marker: str, *, timeout: float | None = None) -> MCPServer:
    """The test server over stdio; `marker` finds its process in /proc."""
    return MCPServer.stdio(
        "tools", command=sys.executable, args=[SERVER, "stdio", marker], timeout=timeout
    )


def running(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if marker.encode() in command and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A mark for the servers a test starts; after the test, none may be left."""
    mark = f"mcp-test-{uuid.uuid4().hex}"
    yield mark
    assert running(mark) == [], "an MCP server process outlived its scope"


@pytest.fixture(params=["stdio", "http"])
def server(request: pytest.FixtureRequest, marker: str) -> MCPServer:
    """The test server over stdio, or over streamable HTTP with an auth header."""
    if request.param == "http":
        return http(request.getfixturevalue("http_url"))
    return stdio(marker)


def asks(name: str, arguments: Mapping[str, object] | None = None) -> ModelOutput:
    return ModelOutput(tool_requests=(ModelToolRequest("call_1", name, arguments or {}),))


def answered(model: ScriptedModel, request: int = 1) -> ModelToolResponse:
    last = model.requests[request].context[-1]
    assert isinstance(last, ModelInput)
    (response,) = last.tool_responses
    return response


async def run_with(
    server: MCPServer, model: ScriptedModel, stage: Stage, *providers: object
) -> StageState | Exception:
    async with ctx.scope("test", model, *providers, disposables=(server,)):
        outcome = await stage.attempt()
    return outcome.unwrap() if is_successful(outcome) else outcome.failure()


async def listed_by_the_sdk(marker: str) -> dict[str, tuple[str, dict[str, object]]]:
    parameters = StdioServerParameters(command=sys.executable, args=[SERVER, "stdio", marker])
    async with Client(parameters, mode="legacy", cache=None) as client:
        listing = await client.list_tools()
    return {
        spec.name: (
            spec.description or "",
            {k: v for k, v in spec.input_schema.items() if k != "title"},
        )
        for spec in listing.tools
    }


# stdio --------------------------------------------------------------------------


async def test_the_model_is_offered_exactly_the_servers_tools(
    server: MCPServer, marker: str
) -> None:
    model = ScriptedModel("done")
    state = await run_with(server, model, Stage.completion("hi", tools=[server]))
    assert isinstance(state, StageState)
    offered = {
        spec.name: (spec.description, dict(spec.parameters)) for spec in model.requests[0].tools
    }
    assert offered == await listed_by_the_sdk(marker)  # over stdio: the same server
    assert "add" in offered
    assert offered["add"][1]["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }


class Counting(CallLayer):
    """A user's layer: every tool call passes it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def tool_call(
        self,
        tool: Tool[..., object],
        request: ModelToolRequest,
        context: ToolContext,
        inner: ToolPath,
    ) -> object:
        self.seen.append(tool.name)
        return await inner(tool, request, context)


async def test_a_call_round_trip_passes_the_boundary_and_streams_its_events(marker: str) -> None:
    server = stdio(marker)
    model = ScriptedModel(asks("add", {"a": 2, "b": 3}), "five")
    layer = Counting()
    stage = Stage.completion("add", tools=[server])
    events: list[object] = []
    async with (
        ctx.scope("test", model, layer, disposables=(server,)) as env,
        contextlib.aclosing(stage.stream(env=env)) as stream,
    ):
        async for event in stream:
            events.append(event)
    response = answered(model)
    assert not response.error
    assert response.content.as_string() == "5"
    (artifact,) = response.content.parts
    assert isinstance(artifact, ArtifactContent)
    assert artifact.value == {"result": 5}
    assert layer.seen == ["add"]
    assert [type(e) for e in events if isinstance(e, ToolCalled | ToolAnswered)] == [
        ToolCalled,
        ToolAnswered,
    ]


async def test_an_is_error_result_is_the_error_answer_the_model_reads(server: MCPServer) -> None:
    model = ScriptedModel(asks("fail", {"reason": "the disk is on fire"}), "sorry")
    state = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(state, StageState)
    response = answered(model)
    assert response.error
    assert "the disk is on fire" in response.content.as_string()
    assert "MCPToolError" in response.content.as_string()


async def test_bad_arguments_are_the_servers_error_answer(marker: str) -> None:
    server = stdio(marker)
    model = ScriptedModel(asks("add", {"a": "two"}), "sorry")
    state = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(state, StageState)
    assert answered(model).error


async def test_an_image_result_is_image_content(server: MCPServer) -> None:
    model = ScriptedModel(asks("picture"), "a pixel")
    await run_with(server, model, Stage.completion("draw", tools=[server]))
    (image,) = answered(model).content.parts
    assert isinstance(image, ImageContent)
    assert image.mime_type == "image/png"
    assert image.data is not None
    assert image.data.startswith(PNG_SIGNATURE)


async def test_a_server_killed_mid_call_fails_the_stage_naming_it(marker: str) -> None:
    server = stdio(marker)
    model = ScriptedModel(asks("die"), "never")
    with anyio.fail_after(10):
        failed = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(failed, ToolError)
    assert "MCP server 'tools'" in str(failed)
    assert len(model.requests) == 1


async def test_a_call_that_outlives_with_timeout_fails_in_time(server: MCPServer) -> None:
    model = ScriptedModel(asks("sleep", {"seconds": 30}), "never")
    stage = Stage.completion("go", tools=[server]).with_timeout(0.5)
    started = time.monotonic()
    failed = await run_with(server, model, stage)
    assert isinstance(failed, StageTimeoutError)
    assert time.monotonic() - started < 8  # the timeout, and stopping the server or session


async def test_a_server_that_hangs_past_its_timeout_fails_the_stage_naming_it(
    marker: str,
) -> None:
    server = stdio(marker, timeout=0.5)
    model = ScriptedModel(asks("sleep", {"seconds": 30}), "never")
    with anyio.fail_after(10):
        failed = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(failed, ToolError)
    assert "MCP server 'tools'" in str(failed)


@tool
def echo(text: str) -> str:
    """A local echo, clashing with the server's."""
    return text


async def test_two_tools_of_one_name_fail_the_stage_naming_the_tool(server: MCPServer) -> None:
    model = ScriptedModel("never")
    failed = await run_with(server, model, Stage.completion("go", tools=[echo, server]))
    assert isinstance(failed, ToolError)
    assert "'echo'" in str(failed)
    assert model.requests == []


async def test_some_tools_by_name_beside_a_local_tool(marker: str) -> None:
    server = stdio(marker)
    model = ScriptedModel(asks("add", {"a": 1, "b": 1}), "two")
    subset = server.tools("add", "picture")
    assert isinstance(subset, MCPTools)
    stage = Stage.completion("go", tools=[subset, echo])
    state = await run_with(server, model, stage)
    assert isinstance(state, StageState)
    assert [spec.name for spec in model.requests[0].tools] == ["echo", "add", "picture"]
    assert answered(model).content.as_string() == "2"


async def test_a_tool_name_the_server_does_not_list_fails_naming_it(marker: str) -> None:
    server = stdio(marker)
    failed = await run_with(
        server, ScriptedModel("never"), Stage.completion("go", tools=[server.tools("nope")])
    )
    assert isinstance(failed, ToolError)
    assert "'nope'" in str(failed)
    assert "'tools'" in str(failed)


async def test_the_list_is_listed_again_when_the_server_says_it_changed(marker: str) -> None:
    server = stdio(marker)
    model = ScriptedModel(asks("grow"), "grown")
    await run_with(server, model, Stage.completion("go", tools=[server]))
    before = {spec.name for spec in model.requests[0].tools}
    after = {spec.name for spec in model.requests[1].tools}
    assert after - before == {"extra"}


async def test_a_server_outside_the_scope_is_a_missing_provider_naming_it() -> None:
    server = MCPServer.stdio("absent", command=sys.executable, args=[SERVER, "stdio"])
    outcome = await Stage.completion("go", tools=[server]).attempt(env=Env.of(ScriptedModel()))
    failed = outcome.failure()
    assert isinstance(failed, MissingEnvironmentError)
    assert "'absent'" in str(failed)


async def test_no_process_is_left_after_a_failing_or_cancelled_scope(marker: str) -> None:
    server = stdio(marker)
    seen: list[int] = []

    async def fail_inside() -> None:
        async with ctx.scope("test", disposables=(server,)):
            seen.extend(running(marker))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert len(seen) == 1
    assert running(marker) == []
    with anyio.move_on_after(0.5) as cancelled:
        async with ctx.scope("test", disposables=(server,)):
            await anyio.sleep(30)
    assert cancelled.cancelled_caught
    assert running(marker) == []


async def test_a_command_that_cannot_start_fails_at_scope_entry_naming_it() -> None:
    server = MCPServer.stdio("broken", command=sys.executable, args=["-c", "raise SystemExit(3)"])
    with anyio.fail_after(10), pytest.raises(ToolError, match="MCP server 'broken'"):
        async with ctx.scope("test", disposables=(server,)):
            pass  # pragma: no cover


# streamable HTTP ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def http_url() -> Iterator[str]:
    """The test server over streamable HTTP, wanting `Bearer TOKEN`."""
    port = free_port()
    process = subprocess.Popen([sys.executable, SERVER, "http", str(port), TOKEN])
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert process.poll() is None, "the HTTP server exited"
            assert time.monotonic() < deadline, "the HTTP server did not listen"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()


def http(url: str, token: str = TOKEN) -> MCPServer:
    return MCPServer.http("remote", url=url, headers={"Authorization": f"Bearer {token}"})


async def test_over_http_with_an_auth_header(http_url: str) -> None:
    server = http(http_url)
    model = ScriptedModel(asks("echo", {"text": "hi"}), asks("fail", {"reason": "no"}), "ok")
    state = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(state, StageState)
    names = {spec.name for spec in model.requests[0].tools}
    assert {"add", "echo", "fail", "picture", "die", "sleep"} <= names
    assert answered(model, 1).content.as_string() == "echo: hi"
    assert answered(model, 2).error


async def test_over_http_a_wrong_token_fails_at_scope_entry_naming_the_server(
    http_url: str,
) -> None:
    server = http(http_url, token="wrong")
    with anyio.fail_after(20), pytest.raises(ToolError, match="MCP server 'remote'") as raised:
        async with ctx.scope("test", disposables=(server,)):
            pass  # pragma: no cover
    assert TOKEN not in str(raised.value)


async def test_over_http_a_refused_connection_fails_naming_the_server() -> None:
    server = http(f"http://127.0.0.1:{free_port()}/mcp")
    with anyio.fail_after(20), pytest.raises(ToolError, match="MCP server 'remote'"):
        async with ctx.scope("test", disposables=(server,)):
            pass  # pragma: no cover


async def test_over_http_a_server_killed_mid_call_fails_the_stage_naming_it(
    http_url: str,
) -> None:
    server = http(http_url)
    model = ScriptedModel(asks("die"), "never")
    with anyio.fail_after(20):
        failed = await run_with(server, model, Stage.completion("go", tools=[server]))
    assert isinstance(failed, ToolError)
    assert "MCP server 'remote'" in str(failed)
    assert TOKEN not in str(failed)


# the package ----------------------------------------------------------------------


def test_public_names_report_their_public_module() -> None:
    assert MCPServer.__module__ == MCPTools.__module__ == MCPToolError.__module__ == "stagefx.mcp"


def test_a_missing_sdk_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "try:\n    import stagefx.mcp\nexcept ImportError as error:\n    print(error)\n"
    )
    told = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert 'pip install "stagefx[mcp]"' in told

"""One MCP tool call through stagefx against the same call through the `mcp`
SDK's own client, on the same stdio server (tests/mcp_servers/tools_server.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from benchmarks.harness import Plan, Row, best_of
from stagefx import Stage, StageState, ctx
from stagefx.mcp import MCPServer

SERVER = str(Path(__file__).parent.parent / "tests" / "mcp_servers" / "tools_server.py")


async def run(plan: Plan) -> list[Row]:
    calls = plan.size(300)
    arguments = {"a": 2, "b": 3}
    parameters = StdioServerParameters(command=sys.executable, args=[SERVER, "stdio"])
    server = MCPServer.stdio("tools", command=sys.executable, args=[SERVER, "stdio"])
    async with (
        Client(parameters, mode="legacy", cache=None) as client,
        ctx.scope("benchmark", disposables=(server,)) as env,
    ):
        (add,) = [found for found in await server.resolve(env) if found.name == "add"]
        one = Stage.tool_call(add, **arguments)  # through the boundary's call_tool

        async def raw_run() -> None:
            for _ in range(calls):
                await client.call_tool("add", arguments)

        async def ours_run() -> None:
            for _ in range(calls):
                await one.execute(StageState.empty, env=env)

        await raw_run()  # warm both paths
        await ours_run()
        ours = await best_of(plan, calls, ours_run)
        floor = await best_of(plan, calls, raw_run)
    return [
        Row(
            f"MCP tool call vs mcp SDK client, stdio ({calls} sequential)", "call", ours, floor, 1.1
        )
    ]

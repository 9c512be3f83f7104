"""An MCP server's tools in a stage, offline: `python examples/mcp_tools.py`.

The example starts its own MCP server (examples/mcp_files_server.py) over
stdio; a ScriptedModel plays the model (asks for a file, then answers), so no
API key is needed. With a real model, replace it with `OpenAI()` and a config.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from stagefx import ModelInput, ModelOutput, ModelToolRequest, Stage, ctx
from stagefx.mcp import MCPServer
from stagefx.testing import ScriptedModel

SERVER = str(Path(__file__).with_name("mcp_files_server.py"))


async def main() -> None:
    files = MCPServer.stdio("files", command=sys.executable, args=[SERVER])
    model = ScriptedModel(
        ModelOutput(tool_requests=(ModelToolRequest("c1", "read_file", {"name": "contract.txt"}),)),
        "The contract's amounts sum to 1625.",
    )
    async with ctx.scope("example", model, disposables=(files,)):
        state = await Stage.completion(
            "Find the contract and sum its amounts.", tools=[files]
        ).execute()
    print("tools offered:", ", ".join(spec.name for spec in model.requests[0].tools))
    answered = model.requests[1].context[-1]
    assert isinstance(answered, ModelInput)
    print("the tool answered:", answered.tool_responses[0].content.as_string().strip())
    print("answer:", state.result.as_string())


if __name__ == "__main__":
    anyio.run(main)

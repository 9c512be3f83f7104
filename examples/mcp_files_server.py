"""A small MCP server (stdio) that examples/mcp_tools.py starts: two read-only
tools over an in-memory set of files."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FILES = {
    "contract.txt": "Contract 17\namount: 1200\namount: 350\namount: 75\n",
    "notes.txt": "Remember to sum the contract's amounts.\n",
}

server = MCPServer("files", log_level="ERROR")


@server.tool()
def list_files() -> list[str]:
    """The names of the files there are."""
    return sorted(FILES)


@server.tool()
def read_file(name: str) -> str:
    """The text of one file."""
    if name not in FILES:
        raise ToolError(f"no file named {name!r}")
    return FILES[name]


if __name__ == "__main__":
    server.run("stdio")

"""MCP tools: any Model Context Protocol server's tools in a stage (install the `mcp` extra).

```python
files = MCPServer.stdio("files", command="python", args=["files_server.py"])
async with ctx.scope("app", config, disposables=(OpenAI(), files)):
    await Stage.completion("Sum the contract's amounts.", tools=[files]).execute()
```
"""

try:  # the official SDK: fail here, saying what to install
    import httpx2
    import mcp
except ImportError as _import_error:
    raise ImportError(
        'stagefx.mcp needs the MCP SDK: install the `mcp` extra with pip install "stagefx[mcp]"'
    ) from _import_error

from stagefx._public import publish as _publish
from stagefx.mcp._server import MCPServer, MCPToolError, MCPTools

del httpx2, mcp  # imported above only to check they are installed

__all__ = ["MCPServer", "MCPToolError", "MCPTools"]

_publish(__name__, globals(), __all__)

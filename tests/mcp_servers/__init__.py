"""MCP servers, written with the `mcp` SDK, that tests/providers/mcp/test_server.py starts."""

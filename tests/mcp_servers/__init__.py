"""MCP servers, written with the `mcp` SDK, that tests/test_mcp.py starts."""

"""`python -m benchmarks [--quick]`: print every benchmark as a markdown table."""

from __future__ import annotations

import platform
import sys

import anyio

from benchmarks import batch, core, durable, mcp, pacing, provider, recording, replay, streaming
from benchmarks.harness import Plan, render


async def main(quick: bool) -> None:
    plan = Plan(quick=quick)
    rows = [
        *await core.run(plan),
        *await provider.run(plan),
        *await streaming.run(plan),
        *await mcp.run(plan),
        *await replay.run(plan),
        *await recording.run(plan),
        *await batch.run(plan),
        *await pacing.run(plan),
        *await durable.run(plan),
    ]
    print(f"Python {platform.python_version()} on {platform.machine()}, anyio asyncio backend\n")
    print(render(rows))


if __name__ == "__main__":
    anyio.run(main, "--quick" in sys.argv)

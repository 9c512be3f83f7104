"""`python -m benchmarks [--quick]`: print every benchmark as a markdown table."""

from __future__ import annotations

import platform
import sys

import anyio

from benchmarks import core
from benchmarks.harness import render


async def main(quick: bool) -> None:
    rows = await core.run(quick=quick)
    print(f"Python {platform.python_version()} on {platform.machine()}, anyio asyncio backend\n")
    print(render(rows))


if __name__ == "__main__":
    anyio.run(main, "--quick" in sys.argv)

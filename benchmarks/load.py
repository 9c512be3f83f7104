"""Load: the end-to-end example pipeline, run many times against the loopback server.

Bounded concurrency, a few injected 5xx faults (which `with_retry` absorbs), and
the process's resident memory measured after a warm-up and at the end.
`python -m benchmarks.load [runs]` prints the figures recorded in RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

import anyio
import attrs
from examples.document_pipeline import DOCUMENT, pipeline
from returns.result import Success

from stagefx import ctx
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, demo_answer

CONCURRENCY = 50
FAULT_EVERY = 100
"""One run in this many meets a 503 (retried by the pipeline's with_retry)."""


@attrs.frozen
class LoadReport:
    runs: int
    failures: int
    faults_injected: int
    seconds: float
    rss_start_mib: float
    rss_end_mib: float
    tasks_left: int
    connections_left: int

    def render(self) -> str:
        return (
            f"{self.runs:,} runs in {self.seconds:.1f} s ({self.runs / self.seconds:,.0f} runs/s), "
            f"concurrency {CONCURRENCY}; faults injected {self.faults_injected}, failures "
            f"{self.failures}; RSS {self.rss_start_mib:.1f} MiB after warm-up, "
            f"{self.rss_end_mib:.1f} MiB at the end; tasks left {self.tasks_left}, "
            f"connections left {self.connections_left}"
        )


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(runs: int, warmup: int) -> LoadReport:
    with FakeOpenAIServer(demo_answer, record=False) as server:
        async with ctx.scope(
            "load",
            OpenAIResponsesConfig(model="gpt-4o"),
            disposables=(OpenAI(api_key="sk-load", base_url=server.base_url),),
        ):
            work = pipeline(DOCUMENT)
            failures = faults = 0

            async def batch(count: int) -> None:
                """`count` runs by a fixed pool of workers: bounded concurrency
                without `count` tasks waiting at once."""
                pending = iter(range(count))

                async def worker() -> None:
                    nonlocal failures, faults
                    for index in pending:
                        if index % FAULT_EVERY == FAULT_EVERY - 1:
                            server.inject(Fault.status(503))
                            faults += 1
                        if not isinstance(await work.attempt(), Success):
                            failures += 1

                async with anyio.create_task_group() as group:
                    for _ in range(CONCURRENCY):
                        group.start_soon(worker)

            await batch(warmup)
            gc.collect()
            rss_start = rss_mib()
            tasks_before = len(asyncio.all_tasks())
            started = time.perf_counter()
            await batch(runs)
            seconds = time.perf_counter() - started
            gc.collect()
            rss_end = rss_mib()
            tasks_left = len(asyncio.all_tasks()) - tasks_before
        connections = server.open_connections if server.wait_for_connections(0) else -1
    return LoadReport(runs, failures, faults, seconds, rss_start, rss_end, tasks_left, connections)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(anyio.run(load, count, 500).render())

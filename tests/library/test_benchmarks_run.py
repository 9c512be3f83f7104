"""The benchmark suite still runs and reports every row (timings are not asserted)."""

from __future__ import annotations

import sqlite3
import sys

import pytest
from benchmarks import (
    batch,
    core,
    durable,
    load,
    mcp,
    pacing,
    provider,
    recording,
    replay,
    streaming,
)
from benchmarks.harness import Plan, render

pytestmark = pytest.mark.anyio


async def test_the_core_benchmarks_run_and_report_each_comparison() -> None:
    rows = await core.run(Plan(quick=True))
    assert [row.name.split(" ")[0] for row in rows] == [
        "sequence",
        "loop",
        "concurrent,",
        "concurrent,",
        "concurrent",
        "traced",
        "traced",
        "chain",
    ]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)
    assert render(rows).count("\n") == len(rows) + 1


async def test_the_provider_benchmarks_run_against_the_loopback_server() -> None:
    rows = await provider.run(Plan(quick=True))
    assert [row.unit for row in rows] == ["call", "call"]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)


async def test_the_streaming_benchmarks_run_against_the_loopback_server() -> None:
    rows = await streaming.run(Plan(quick=True))
    assert [row.name.split(" ")[0] for row in rows] == ["time", "whole"]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)


async def test_the_mcp_benchmark_runs_against_a_stdio_server() -> None:
    rows = await mcp.run(Plan(quick=True))
    assert [row.unit for row in rows] == ["call"]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)


async def test_the_recording_and_pacing_benchmarks_run() -> None:
    rows = [*await recording.run(Plan(quick=True)), *await pacing.run(Plan(quick=True))]
    assert [row.name.split(" ")[0] for row in rows] == ["recording", "busiest", "budget", "busiest"]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)


async def test_the_load_run_completes_without_failures_tasks_or_connections_left() -> None:
    result = await load.load(runs=200, warmup=50)
    assert result.runs == 200
    assert result.faults_injected == 2
    assert result.failures == 0
    assert (result.tasks_left, result.connections_left) == (0, 0)


async def test_the_replay_benchmark_runs_a_recorded_cassette() -> None:
    (row,) = await replay.run(Plan(quick=True))
    assert row.unit == "call"
    assert row.ours > 0
    assert row.floor > 0


async def test_the_batch_benchmarks_run_against_their_floors() -> None:
    rows = await batch.run(Plan(quick=True))
    assert [row.unit for row in rows] == ["item", "call", "MiB"]
    assert all(row.floor > 0 for row in rows)
    assert rows[2].ours < 50  # MiB of peak RSS growth for the streamed inputs


async def test_the_durable_benchmark_runs_on_sqlite_in_a_process_of_its_own() -> None:
    pytest.importorskip("dbos", reason='DBOS is not installed (pip install "stagefx[dbos]")')
    if sys.version_info >= (3, 12) and sqlite3.sqlite_version_info < (3, 42):
        pytest.skip(
            f"DBOS on SQLite needs SQLite >= 3.42 on Python 3.12+ (this one has "
            f"{sqlite3.sqlite_version}); the benchmark runs on Python 3.11"
        )
    rows = await durable.run(Plan(quick=True))
    assert [row.unit for row in rows] == ["run", "step"]
    assert all(row.ours > row.floor > 0 for row in rows)

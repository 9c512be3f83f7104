"""The benchmark suite still runs and reports every row (timings are not asserted)."""

from __future__ import annotations

import pytest
from benchmarks import core
from benchmarks.harness import render

pytestmark = pytest.mark.anyio


async def test_the_core_benchmarks_run_and_report_each_comparison() -> None:
    rows = await core.run(quick=True)
    assert [row.name.split(" ")[0] for row in rows] == [
        "sequence",
        "loop",
        "concurrent,",
        "concurrent,",
        "concurrent",
    ]
    assert all(row.ours > 0 and row.floor > 0 for row in rows)
    assert render(rows).count("\n") == len(rows) + 1

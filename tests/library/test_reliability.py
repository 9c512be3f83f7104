"""Every injected fault ends recovered or as its documented, typed failure."""

from __future__ import annotations

import pytest
from benchmarks.reliability import SCENARIOS, report, run_all

pytestmark = pytest.mark.anyio


async def test_every_fault_is_recovered_or_surfaced_typed_with_the_last_good_state() -> None:
    verdicts = await run_all()
    assert len(verdicts) == len(SCENARIOS)
    unexpected = [f"{v.scenario.name}: {v.detail}" for v in verdicts if v.outcome == "other"]
    assert unexpected == []
    for verdict in verdicts:
        wanted = "recovered" if verdict.scenario.expected == "recovered" else "surfaced"
        assert verdict.outcome == wanted, verdict.scenario.name
    assert report(verdicts).endswith("anything else: 0.")

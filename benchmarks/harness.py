"""Timing helpers: best-of-N wall time of an async callable, and a report table."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable

import attrs


@attrs.frozen
class Row:
    """One comparison: stagefx's per-unit cost against its floor's."""

    name: str
    unit: str
    ours: float
    floor: float
    target: float | None

    @property
    def ratio(self) -> float:
        return self.ours / self.floor

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.ratio <= self.target else "OVER"


@attrs.frozen
class Plan:
    """How thoroughly to measure: `quick` is for smoke tests (tiny sizes, no GC
    settling), the default for the figures in README.md."""

    quick: bool = False

    @property
    def repeats(self) -> int:
        return 2 if self.quick else 7

    def size(self, full: int) -> int:
        return max(full // 100, 10) if self.quick else full


async def best_of(plan: Plan, units: int, run: Callable[[], Awaitable[object]]) -> float:
    """Best per-unit seconds over the plan's repeats (GC paused while timing)."""
    best = float("inf")
    for _ in range(plan.repeats):
        if not plan.quick:
            gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            await run()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best / units


def render(rows: list[Row]) -> str:
    lines = [
        "| benchmark | stagefx | floor | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        target = "" if row.target is None else f"≤ {row.target:g}× {row.verdict}"
        lines.append(
            f"| {row.name} | {_show(row.ours, row.unit)} | "
            f"{_show(row.floor, row.unit)} | {row.ratio:.2f}× | {target} |"
        )
    return "\n".join(lines)


def _show(value: float, unit: str) -> str:
    """Times per unit in µs; "×" marks a dimensionless factor, "MiB" a size,
    "calls" and "tokens" counts."""
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit in ("calls", "tokens"):
        return f"{value:,.0f} {unit}"
    return f"{value * 1e6:.2f} µs/{unit}"

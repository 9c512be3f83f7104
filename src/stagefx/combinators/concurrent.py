"""Fan-out: run branches on the same state concurrently, then merge (a traversal)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import anyio

from stagefx.combinators._step import Outcome, Step, failure, require_count, resolve
from stagefx.combinators.meta import in_span
from stagefx.env import Env
from stagefx.state import StageState
from stagefx.tracing import is_tracing
from stagefx.usage import UsageTotals

__all__ = ["Merge", "concurrent"]

Merge: TypeAlias = Callable[
    [Sequence[Outcome]],
    StageState | Awaitable[StageState],
]
"""Receives each branch's `StageState | StageException`, in branch order."""


def concurrent(branches: tuple[Step, ...], merge: Merge, limit: int | None) -> Step:
    """All branches run in one task group (at most `limit` at a time); the merge
    sees every outcome in branch order. Nothing outlives the stage, and a
    cancellation from outside cancels every branch."""
    if not branches:
        raise ValueError("Stage.concurrent needs at least one stage")
    if not callable(merge):
        raise TypeError(f"concurrent merge must be callable, got {type(merge).__name__}")
    if limit is not None:
        require_count(limit, "Stage.concurrent(concurrent_tasks=...)", 1)
    count = len(branches)
    workers = count if limit is None else min(limit, count)
    traced_branches = tuple(in_span(step, f"branch {index}") for index, step in enumerate(branches))

    async def merged(state: StageState, outcomes: list[Outcome]) -> Outcome:
        try:
            value: object = await resolve(merge(outcomes))
        except Exception as error:
            return failure(error, state)
        if not isinstance(value, StageState):
            wrong = TypeError(f"merge must return StageState, got {type(value).__name__}")
            return failure(wrong, state)
        return _with_all_usage(state, outcomes, value)

    if workers == count:

        async def run_all(state: StageState, env: Env) -> Outcome:
            outcomes: list[Outcome] = [state] * count

            async def branch(index: int, step: Step) -> None:
                outcomes[index] = await step(state, env)

            steps = traced_branches if is_tracing(env.tracer) else branches
            async with anyio.create_task_group() as group:
                for index, step in enumerate(steps):
                    group.start_soon(branch, index, step)
            return await merged(state, outcomes)

        return run_all

    async def run_bounded(state: StageState, env: Env) -> Outcome:
        outcomes: list[Outcome] = [state] * count
        pending = iter(enumerate(traced_branches if is_tracing(env.tracer) else branches))

        async def worker() -> None:
            for index, step in pending:
                outcomes[index] = await step(state, env)

        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(worker)
        return await merged(state, outcomes)

    return run_bounded


def _with_all_usage(state: StageState, outcomes: list[Outcome], merged: StageState) -> StageState:
    """`merged` with the token usage of every successful branch, not only the
    one(s) the merge kept: base usage plus each branch's own addition."""
    changed = [
        outcome
        for outcome in outcomes
        if isinstance(outcome, StageState) and outcome.values is not state.values
    ]
    if not changed:
        return merged
    base = state.get(UsageTotals, UsageTotals())
    total = base
    for outcome in changed:
        total = total.combined(outcome.get(UsageTotals, UsageTotals())).combined(base, sign=-1)
    if total == merged.get(UsageTotals, UsageTotals()):
        return merged
    return merged.updated(total)

"""Per-stage overhead of sequence, loop and concurrent against raw awaits and task groups."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import attrs

from benchmarks.harness import Plan, Row, best_of
from stagefx import (
    Env,
    MultimodalContent,
    RecordingTracer,
    Stage,
    StageException,
    StageState,
    stage,
)

RESULT = MultimodalContent.of("x")
ENV = Env.of()


async def raw(state: StageState) -> StageState:
    """The floor's unit of work, and the work every benchmarked stage does."""
    return attrs.evolve(state, result=RESULT)


@stage
async def leaf(*, state: StageState) -> StageState:
    return attrs.evolve(state, result=RESULT)


def first(branches: Sequence[StageState | StageException]) -> StageState:
    branch = branches[0]
    assert isinstance(branch, StageState)
    return branch


async def sequence_row(plan: Plan) -> Row:
    size = plan.size(10_000)
    pipeline = Stage.sequence(*([leaf] * size))

    async def floor() -> None:
        state = StageState.empty
        for _ in range(size):
            state = await raw(state)

    async def ours() -> None:
        await pipeline.execute(env=ENV)

    return Row(
        f"sequence of {size:,} stages",
        "stage",
        await best_of(plan, size, ours),
        await best_of(plan, size, floor),
        3.0,
    )


async def loop_row(plan: Plan) -> Row:
    size = plan.size(100_000)
    looped = Stage.loop(leaf, condition=lambda *, state, iteration: iteration < size)

    async def floor() -> None:
        state = StageState.empty
        for _ in range(size):
            state = await raw(state)

    async def ours() -> None:
        await looped.execute(env=ENV)

    return Row(
        f"loop of {size:,} iterations",
        "iteration",
        await best_of(plan, size, ours),
        await best_of(plan, size, floor),
        4.0,
    )


async def concurrent_rows(plan: Plan) -> list[Row]:
    sizes = (plan.size(1_000), plan.size(10_000))
    measured: list[tuple[int, float, float]] = []
    for size in sizes:
        fan = Stage.concurrent(*([leaf] * size), merge=first, concurrent_tasks=None)

        async def floor(size: int = size) -> None:
            async with anyio.create_task_group() as group:
                for _ in range(size):
                    group.start_soon(raw, StageState.empty)

        async def ours(fan: Stage = fan) -> None:
            await fan.execute(env=ENV)

        measured.append((size, await best_of(plan, size, ours), await best_of(plan, size, floor)))
    rows = [
        Row(f"concurrent, {size:,} branches", "branch", ours, floor, 1.2)
        for size, ours, floor in measured
    ]
    (small, small_ours, small_floor), (large, large_ours, large_floor) = measured
    rows.append(
        Row(
            f"concurrent growth {small:,} → {large:,} (per-branch cost ratio)",
            "×",
            large_ours / small_ours,
            large_floor / small_floor,
            1.3,
        )
    )
    return rows


async def tracing_rows(plan: Plan) -> list[Row]:
    """`.traced()` on every stage: with the default tracer (spans skipped) and
    with `RecordingTracer` (every span kept), against the untraced sequence."""
    size = plan.size(10_000)
    untraced = Stage.sequence(*([leaf] * size))
    traced = Stage.sequence(*([leaf.traced(label="leaf")] * size))

    async def floor() -> None:
        await untraced.execute(env=ENV)

    async def default_tracer() -> None:
        await traced.execute(env=ENV)

    async def recording() -> None:
        await traced.execute(env=Env.of(RecordingTracer()))

    untraced_cost = await best_of(plan, size, floor)
    return [
        Row(
            f"traced sequence of {size:,}, default tracer",
            "stage",
            await best_of(plan, size, default_tracer),
            untraced_cost,
            1.5,
        ),
        Row(
            f"traced sequence of {size:,}, RecordingTracer",
            "stage",
            await best_of(plan, size, recording),
            untraced_cost,
            3.0,  # a test's tracer, keeping every span: microseconds no test notices
        ),
    ]


def always(*, state: StageState) -> bool:
    return True


MODIFIERS = (
    lambda inner: inner.with_retry(limit=1),
    lambda inner: inner.when(always),
    lambda inner: inner.with_meta(name="layer"),
    lambda inner: inner.ignore_result(),
    lambda inner: inner.with_fallback(Stage.noop),
)
"""One layer each, in turn: the modifiers whose frames the interpreter keeps."""


async def deep_chain_row(plan: Plan) -> Row:
    """A chain of modifiers 10,000 deep around one leaf: the interpreter's cost
    per layer (a frame pushed and resumed), against one raw await per layer."""
    size = plan.size(10_000)
    chain = leaf
    for index in range(size):
        chain = MODIFIERS[index % len(MODIFIERS)](chain)

    async def floor() -> None:
        state = StageState.empty
        for _ in range(size):
            state = await raw(state)

    async def ours() -> None:
        await chain.execute(env=ENV)

    return Row(
        f"chain of {size:,} modifiers around one stage",
        "layer",
        await best_of(plan, size, ours),
        await best_of(plan, size, floor),
        3.0,
    )


async def run(plan: Plan) -> list[Row]:
    return [
        await sequence_row(plan),
        await loop_row(plan),
        *await concurrent_rows(plan),
        *await tracing_rows(plan),
        await deep_chain_row(plan),
    ]

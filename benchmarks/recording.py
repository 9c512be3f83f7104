"""Recording model calls to a cassette: the cost per call must not grow with
the cassette (10,000 calls against 1,000, each call distinct)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import Plan, Row, best_of
from stagefx import Env, ModelInput, ModelRequest, Stage, StageState
from stagefx.testing import FunctionModel, Recorder


def _pipeline(calls: int) -> Stage:
    """`calls` completions, each asking something new (so each is recorded)."""

    def more(*, state: StageState, iteration: int) -> bool:
        return iteration < calls

    ask = Stage.prompting_completion(_questions().__next__).with_volatile_context()
    return Stage.loop(ask, condition=more)


def _questions() -> Iterator[str]:
    number = 0
    while True:
        number += 1
        yield f"What is {number} squared?"


def _answer(request: ModelRequest) -> str:
    last = request.context[-1]
    return last.content.as_string() if isinstance(last, ModelInput) else ""


async def _per_call(plan: Plan, calls: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        runs = iter(range(1_000))

        async def record() -> None:
            cassette = Path(folder) / f"run-{next(runs)}.json"
            recorder = Recorder(cassette, mode="record")
            await _pipeline(calls).execute(env=Env.of(FunctionModel(_answer), recorder))

        return await best_of(plan, calls, record)


async def run(plan: Plan) -> list[Row]:
    small, large = (100, 1_000) if plan.quick else (1_000, 10_000)
    return [
        Row(
            f"recording {large:,} calls vs {small:,}, per call",
            "call",
            await _per_call(plan, large),
            await _per_call(plan, small),
            1.5,
        )
    ]

"""Replaying recorded model calls against the same pipeline on `ScriptedModel`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.harness import Plan, Row, best_of
from stagefx import Env, Stage, StageState
from stagefx.testing import Recorder, ScriptedModel


def _pipeline(calls: int) -> Stage:
    """`calls` identical completions, one after another (each in a volatile context)."""
    ask = Stage.completion("What is the capital of France?").with_volatile_context()

    def more(*, state: StageState, iteration: int) -> bool:
        return iteration < calls

    return Stage.loop(ask, condition=more)


async def row(plan: Plan) -> Row:
    calls = plan.size(10_000)
    pipeline = _pipeline(calls)
    with tempfile.TemporaryDirectory() as folder:
        one = Path(folder) / "one.json"
        await _pipeline(1).execute(env=Env.of(ScriptedModel("Paris"), Recorder(one)))
        data = json.loads(one.read_text())
        data["calls"] = data["calls"] * calls
        cassette = Path(folder) / "many.json"
        cassette.write_text(json.dumps(data, indent=2, sort_keys=True))

        async def floor() -> None:
            await pipeline.execute(env=Env.of(ScriptedModel(*(["Paris"] * calls))))

        async def ours() -> None:
            await pipeline.execute(env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay")))

        return Row(
            f"replay of {calls:,} recorded calls vs ScriptedModel",
            "call",
            await best_of(plan, calls, ours),
            await best_of(plan, calls, floor),
            3.0,
        )


async def run(plan: Plan) -> list[Row]:
    return [await row(plan)]

"""A durable run (DBOS on a SQLite file) against the same pipeline run in memory.

DBOS's state is global to a process (one instance, launched once), so the
measurement runs in a fresh process: DBOS is launched there before timing and
destroyed after, and nothing of it reaches the process that asked.
"""

from __future__ import annotations

import json
import sys

import anyio

from benchmarks.harness import Plan, Row

STAGES = 10

_MEASURE = """
import json, sys, tempfile
from pathlib import Path

import anyio
from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer

from benchmarks.harness import Plan, best_of
from stagefx import Env, Stage, StageState, ctx
from stagefx.dbos import durable
from stagefx.testing import FunctionModel

stages, runs, quick = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "quick"
pipeline = Stage.sequence(*(Stage.completion(f"Step {n}.") for n in range(stages)))
model = FunctionModel(lambda request: "ok")
steps = durable(pipeline, name="bench", env=lambda: ctx.scope("bench", model))
env = Env.of(model)
counter = iter(range(10**9))

async def in_memory():
    for _ in range(runs):
        await pipeline.execute(StageState(result="go"), env=env)

async def on_dbos():
    for _ in range(runs):
        await steps.execute(StageState(result="go"), workflow_id=f"run-{next(counter)}")

async def main():
    plan = Plan(quick=quick)
    await in_memory()  # warm both
    await on_dbos()
    return await best_of(plan, runs, on_dbos), await best_of(plan, runs, in_memory)

with tempfile.TemporaryDirectory() as folder:
    config: DBOSConfig = {
        "name": "stagefx-benchmark",
        "system_database_url": f"sqlite:///{Path(folder) / 'dbos.sqlite'}",
        "serializer": DBOSPortableJSONSerializer(),
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        ours, floor = anyio.run(main)
    finally:
        DBOS.destroy()
print(json.dumps({"ours": ours, "floor": floor}))
"""


async def rows(plan: Plan) -> list[Row]:
    """Per run: a durable run of ten completions (each a DBOS step in SQLite)
    against the same pipeline's `execute` in memory; per step: the difference
    divided by the ten steps."""
    runs = plan.size(20)
    command = [sys.executable, "-c", _MEASURE, str(STAGES), str(runs)]
    measured = await anyio.run_process([*command, "quick" if plan.quick else "full"])
    figures = json.loads(measured.stdout.decode().strip().splitlines()[-1])
    ours, floor = float(figures["ours"]), float(figures["floor"])
    step = (ours - floor) / STAGES
    return [
        Row(
            f"durable run of {STAGES} completions on SQLite vs in memory", "run", ours, floor, None
        ),
        Row(
            f"durable run, cost per step ({step * 1e6:,.0f} µs)",
            "step",
            ours / STAGES,
            floor / STAGES,
            None,
        ),
    ]


async def run(plan: Plan) -> list[Row]:
    return await rows(plan)

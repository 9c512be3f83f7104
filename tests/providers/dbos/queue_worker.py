"""Processes sharing one DBOS queue on PostgreSQL, run by tests/providers/dbos/test_durable.py.

`python -m tests.providers.dbos.queue_worker produce DB_URL EXECUTOR_ID WORKDIR RUNS`:
registers the queue, enqueues RUNS one-stage runs (workflow ids `run-0`...),
waits for every result and writes them (codec JSON, by workflow id) to
WORKDIR/results.json; it consumes nothing itself.

`python -m tests.providers.dbos.queue_worker work DB_URL EXECUTOR_ID WORKDIR`: consumes
the queue until killed. Every model call appends `start` and `end` lines (wall
clock, workflow input) to WORKDIR/calls-EXECUTOR_ID-PID. With
STAGEFX_CRASH_AT=N the worker dies (`os._exit(17)`) at its Nth call, once every
executor named in STAGEFX_CRASH_AFTER (comma-separated) has started a call, so
the kill always lands while the queue is shared, however slowly each process
starts. It first stops starting calls and gives the calls already in flight
half a second to finish and be recorded, so every call logged `end` is a
completed step (a call that ended but was not yet recorded when its process
died is made again on resume: DBOS's steps are at-least-once up to their
record).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer

from stagefx import Env, ModelInput, ModelOutput, ModelRequest, Stage, StageState, ctx
from stagefx._codec import encode_state
from stagefx._core.conversation import TokenUsage
from stagefx.dbos import durable
from stagefx.testing import FunctionModel

QUEUE = "stagefx-queue"
WORKER_CONCURRENCY = 4
GLOBAL_CONCURRENCY = 6
LATENCY = 0.05

ROLE = sys.argv[1] if len(sys.argv) > 1 else "work"
EXECUTOR = sys.argv[3] if len(sys.argv) > 3 else "local"
WORKDIR = Path(sys.argv[4]) if len(sys.argv) > 4 else Path(".")
LOG = WORKDIR / f"calls-{EXECUTOR}-{os.getpid()}"
_started = 0
_dying = False


def _log(event: str, said: str) -> None:
    line = json.dumps({"event": event, "t": time.time(), "input": said, "pid": os.getpid()})
    with LOG.open("a") as file:
        file.write(line + "\n")
        file.flush()


async def answer(request: ModelRequest) -> ModelOutput:
    global _started, _dying
    if _dying:
        await anyio.sleep_forever()  # the process is about to die: start nothing
    crash_at = os.environ.get("STAGEFX_CRASH_AT")
    _started += 1
    last = request.context[-1]
    assert isinstance(last, ModelInput)
    said = last.content.as_string()
    if crash_at is not None and _started >= int(crash_at):
        _dying = True
        _log("start", said)
        others = [name for name in os.environ.get("STAGEFX_CRASH_AFTER", "").split(",") if name]
        for _ in range(1200):  # another process's file: polled, up to a minute
            if all(list(WORKDIR.glob(f"calls-{name}-*")) for name in others):
                break
            await anyio.sleep(0.05)
        await anyio.sleep(0.5)  # the calls in flight finish and are recorded
        _log("killed", said)
        os._exit(17)
    _log("start", said)
    await anyio.sleep(LATENCY)
    _log("end", said)
    usage = TokenUsage("counting", input_tokens=10, output_tokens=5)
    return ModelOutput(ModelOutput.of(f"done: {said}").content, usage=usage)


def scope() -> AbstractAsyncContextManager[Env]:
    return ctx.scope("queue-test", FunctionModel(answer))


queued = durable(Stage.result_completion(), name="queued", env=scope)


async def produce(runs: int) -> None:
    await DBOS.register_queue_async(
        QUEUE,
        worker_concurrency=WORKER_CONCURRENCY,
        global_concurrency=GLOBAL_CONCURRENCY,
        polling_interval_sec=0.05,
    )
    handles = [
        await queued.enqueue(StageState(result=f"item {n}"), queue=QUEUE, workflow_id=f"run-{n}")
        for n in range(runs)
    ]
    (WORKDIR / "enqueued").touch()
    results = {}
    for handle in handles:
        state = await queued.result(handle)
        results[handle.get_workflow_id()] = encode_state(state)
    (WORKDIR / "results.json").write_text(json.dumps(results, sort_keys=True))


async def work() -> None:
    await anyio.sleep_forever()


if __name__ == "__main__":
    config: DBOSConfig = {
        "name": "stagefx-queue-test",
        "system_database_url": sys.argv[2],
        "executor_id": EXECUTOR,
        "serializer": DBOSPortableJSONSerializer(),
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.05,
    }
    DBOS(config=config)
    DBOS.listen_queues([] if ROLE == "produce" else [QUEUE])
    DBOS.launch()
    try:
        if ROLE == "produce":
            anyio.run(produce, int(sys.argv[5]))
        else:
            anyio.run(work)
    finally:
        DBOS.destroy()

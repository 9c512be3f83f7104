"""Durable runs keep what `execute` promises, run in its own process by
tests/providers/dbos/test_durable.py.

`python -m tests.providers.dbos.promises DB_URL OUT`: a run with structured output gives
back its typed artifact, first run and looked-up alike; a run whose Env
factory fails raises `DurableRunError` the first time as every later time.
Writes what it saw to OUT as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pydantic
from dbos import DBOS

from stagefx import Env, GenerativeModel, ModelFailure, ModelOutput, ModelRequest, Stage, ctx
from stagefx.dbos import DurableRunError, durable
from stagefx.testing import ScriptedModel
from tests.providers.dbos.launch import launched


class Person(pydantic.BaseModel):
    name: str
    age: int


typed = durable(
    Stage.completion("who?", output=Person),
    name="typed",
    env=lambda: ctx.scope("typed", ScriptedModel('{"name": "Ada", "age": 36}')),
    types=[Person],
)


class BrokenEnv:
    """An Env factory's scope that fails as it opens (a secret store that is down)."""

    async def __aenter__(self) -> Env:
        raise ConnectionError("the vault is down")

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def broken_env() -> BrokenEnv:
    return BrokenEnv()


broken = durable(Stage.completion("hi"), name="broken", env=broken_env)


class Stuck(GenerativeModel):
    """Never answers: its run is cancelled in DBOS while it waits."""

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


stuck = durable(Stage.completion("hi"), name="stuck", env=lambda: ctx.scope("stuck", Stuck()))


async def main() -> str:
    seen: dict[str, object] = {}
    for attempt in ("first", "again"):
        state = await typed.execute(workflow_id="typed-1")
        artifact = state.result.artifact(Person)
        seen[f"typed {attempt}"] = None if artifact is None else artifact.model_dump()
        try:
            await broken.execute(workflow_id="broken-1")
        except DurableRunError as error:
            seen[f"broken {attempt}"] = [type(error).__name__, error.kind, error.message]
        except Exception as error:  # what the promise rules out
            seen[f"broken {attempt}"] = [type(error).__name__, None, str(error)]
    handle = await stuck.start(workflow_id="stuck-1")
    await DBOS.cancel_workflow_async("stuck-1")
    try:
        await stuck.result(handle)
    except DurableRunError as error:
        seen["cancelled"] = [type(error).__name__, error.kind]
    except BaseException as error:  # what the promise rules out
        seen["cancelled"] = [type(error).__name__, None]
    return json.dumps(seen)


if __name__ == "__main__":
    with launched("stagefx-durable-promises-test", sys.argv[1], "promises"):
        Path(sys.argv[2]).write_text(anyio.run(main))

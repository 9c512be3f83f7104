"""A durable pipeline streamed in its own process, for tests/providers/dbos/test_durable.py.

`python -m tests.providers.dbos.streaming DB_URL WORKFLOW_ID OUT`: streams the workflow
twice (the second time it has finished: only `Finished` comes) and writes to
OUT, as JSON, each run's text deltas with their stage paths and its final
state, and the final state of the same pipeline run live (not durable).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

import anyio

from stagefx import Env, Finished, ModelOutput, ModelToolRequest, Stage, TextDelta, ctx, tool
from stagefx._codec import JSON, encode_state
from stagefx.dbos import durable
from stagefx.testing import ScriptedModel
from tests.providers.dbos.launch import launched


@tool
async def scale(x: float) -> float:
    """Scale a number."""
    return x * 2


@tool
async def sign_in() -> str:
    """Sign in (fails, echoing the credential it was given, as careless code does)."""
    raise PermissionError(f"refused credential {os.environ['STAGEFX_TEST_API_KEY']}")


def model() -> ScriptedModel:
    nan = ModelOutput.of(  # arguments JSON cannot hold: NaN, infinity, a 4,001-digit integer
        tool_requests=(
            ModelToolRequest("c1", "scale", {"x": math.nan}),
            ModelToolRequest("c1b", "scale", {"x": -math.inf}),
            ModelToolRequest("c1c", "scale", {"x": 10**4000}),
        )
    )
    leak = ModelOutput.of(tool_requests=(ModelToolRequest("c2", "sign_in", {}),))
    return ScriptedModel("a first answer", nan, "scaled", leak, "signed", chunk_size=4)


def pipeline() -> Stage:
    return Stage.sequence(
        Stage.completion("first").with_meta(name="one"),
        Stage.completion("scale nan", tools=[scale]).with_meta(name="two"),
        Stage.completion("sign in", tools=[sign_in]),
    )


streamed = durable(pipeline(), name="streamed", env=lambda: ctx.scope("streaming", model()))


async def events(workflow_id: str) -> dict[str, JSON]:
    deltas: list[JSON] = []
    state: JSON = None
    async with contextlib.aclosing(streamed.stream(workflow_id=workflow_id)) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                deltas.append([event.text, list(event.stage_path)])
            elif isinstance(event, Finished):
                state = encode_state(event.outcome.unwrap())
    return {"deltas": deltas, "state": state}


async def main(workflow_id: str) -> str:
    first = await events(workflow_id)
    again = await events(workflow_id)
    live = encode_state(await pipeline().execute(env=Env.of(model())))
    return json.dumps({"first": first, "again": again, "live": live})


if __name__ == "__main__":
    url, workflow_id = sys.argv[1], sys.argv[2]
    with launched("stagefx-durable-streaming-test", url, "streamer"):
        Path(sys.argv[3]).write_text(anyio.run(main, workflow_id))

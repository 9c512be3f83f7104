"""A durable pipeline run in its own process by tests/providers/dbos/test_durable.py.

`python -m tests.providers.dbos.pipeline DB_URL EXECUTOR_ID WORKFLOW_ID WORKDIR OUT`: runs
(or resumes) the workflow and writes its final state (codec JSON) to OUT, or
`{"failure": kind, "message": ...}`. Every model call appends a line to
WORKDIR/calls, every run of the tool one to WORKDIR/effects. With
STAGEFX_CRASH_AT=N the process dies (`os._exit(17)`) when the Nth model call
starts, so N - 1 calls completed; with STAGEFX_SHAPE=alt the pipeline has one
more stage.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio

from stagefx import Env, ModelInput, ModelOutput, ModelRequest, Stage, StageState, ctx, tool
from stagefx._codec import encode_state
from stagefx._core.conversation import ModelToolRequest, TokenUsage
from stagefx.dbos import DurableRunError, durable
from stagefx.testing import FunctionModel
from tests.providers.dbos.launch import launched

WORKDIR = Path(sys.argv[4]) if len(sys.argv) > 4 else Path(".")


def _lines(name: str) -> list[str]:
    path = WORKDIR / name
    return path.read_text().splitlines() if path.exists() else []


def _append(name: str, line: str) -> None:
    with (WORKDIR / name).open("a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


@tool
def file_ticket(title: str) -> str:
    """File a ticket (a side effect: one line in the effects file)."""
    _append("effects", title)
    return f"ticket #{len(_lines('effects'))} filed: {title}"


def answer(request: ModelRequest) -> ModelOutput:
    done = len(_lines("calls"))
    crash_at = os.environ.get("STAGEFX_CRASH_AT")
    if crash_at is not None and done + 1 >= int(crash_at):
        os._exit(17)  # dies as a killed process would: no cleanup, nothing flushed
    last = request.context[-1]
    assert isinstance(last, ModelInput)
    said = last.content.as_string()
    _append("calls", json.dumps({"n": done + 1, "input": said, "tools": bool(last.tool_responses)}))
    usage = TokenUsage("counting", input_tokens=10 + done, output_tokens=5)
    if request.tools and not last.tool_responses:
        call = ModelToolRequest("call_1", "file_ticket", {"title": "printer on fire"})
        return ModelOutput(tool_requests=(call,), usage=usage)
    if last.tool_responses:
        said = last.tool_responses[0].content.as_string()
    return ModelOutput(ModelOutput.of(f"answer {done + 1} to: {said}").content, usage=usage)


def pipeline() -> Stage:
    stages = [
        Stage.completion("Read the ticket."),
        Stage.completion("File it.", tools=[file_ticket]),
        Stage.completion("Draft a reply."),
        Stage.completion("Polish the reply."),
    ]
    if os.environ.get("STAGEFX_SHAPE") == "alt":
        stages.append(Stage.completion("Translate the reply."))
    return Stage.sequence(*stages)


def scope() -> AbstractAsyncContextManager[Env]:
    return ctx.scope("durable-test", FunctionModel(answer))


triage = durable(pipeline(), name="triage", env=scope)


async def main(workflow_id: str) -> str:
    try:
        state = await triage.execute(StageState(result="printer on fire"), workflow_id=workflow_id)
    except DurableRunError as failure:
        text = json.dumps({"failure": failure.kind, "message": failure.message})
    else:
        text = json.dumps(encode_state(state), sort_keys=True)
    return text


if __name__ == "__main__":
    url, executor, workflow_id = sys.argv[1], sys.argv[2], sys.argv[3]
    with launched("stagefx-durable-test", url, executor):
        Path(sys.argv[5]).write_text(anyio.run(main, workflow_id))

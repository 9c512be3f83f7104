"""`durable(pipeline, ...)`: a pipeline run as a DBOS workflow, its calls as DBOS steps.

The workflow's input and output are the codec's JSON of the state (DBOS's
portable JSON serialization). Its first step records a hash of the pipeline's
shape; a resumed run whose pipeline changed shape is refused. Then the
pipeline runs in the Env the user's factory builds, with two layers added: a
`CallLayer` outermost of all (a replayed call is never recorded, paced or
sent) and a `ToolLayer`; each turns one call into one DBOS step whose output
is plain JSON (`{"codec": 1, "request": <hash>, "answer": <encode_answer>}`).
A replayed step gives back the recorded answer; DBOS assigns step ids in the
order calls start, and a step whose request hash differs from the recorded
one fails the run (`StepMismatchError`) instead of replaying a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import ClassVar, TypeAlias, cast, final

from dbos import (
    DBOS,
    PortableWorkflowError,
    SetWorkflowID,
    WorkflowHandleAsync,
    WorkflowSerializationFormat,
)

from stagefx._codec import (
    CODEC_VERSION,
    JSON,
    decode_answer,
    decode_content,
    decode_state,
    encode_answer,
    encode_content,
    encode_request,
    encode_state,
)
from stagefx._content import MultimodalContent
from stagefx._conversation import ModelOutput, ModelToolRequest
from stagefx._env import Env
from stagefx._errors import MissingEnvironmentError, StageException
from stagefx._interpreter import interpret
from stagefx._model import GenerativeModel, ModelFailure, ModelRequest
from stagefx._model_call import CallLayer
from stagefx._schema import ValidationFailure
from stagefx._stage import Stage
from stagefx._state import StageState
from stagefx._tools import Tool, ToolLayer, as_content

__all__ = [
    "DurablePipeline",
    "DurableRunError",
    "EnvFactory",
    "PipelineShapeError",
    "ReplayedError",
    "StepMismatchError",
    "durable",
]

EnvFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[Env]]
"""Builds a run's Env in the process that runs it: `lambda: ctx.scope("app", ...)`."""

RunHandle: TypeAlias = WorkflowHandleAsync[dict[str, JSON]]

_FAILURE_MARK = "stagefx.failure"
_SHAPE_STEP = "stagefx.shape"
_MODEL_STEP = "stagefx.model"
_TOOL_STEP = "stagefx.tool"


class DurableRunError(StageException):
    """A durable run failed. `kind` names the failure's type in the process that
    ran it (`ModelError`, `ToolError`...), `state` is its last good state and
    `stage_path` where it happened; `workflow_id` is the DBOS workflow."""

    def __init__(
        self,
        message: str,
        *,
        state: StageState,
        stage_path: tuple[str, ...] = (),
        kind: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        super().__init__(message, state=state, stage_path=stage_path)
        self.kind = type(self).__name__ if kind is None else kind
        self.workflow_id = workflow_id


class PipelineShapeError(DurableRunError):
    """The run was started with a pipeline of another shape than the one
    resuming it: its recorded steps cannot be replayed, and were not."""


class StepMismatchError(StageException):
    """A replayed step was recorded for another request: the pipeline does not
    make the same calls in the same order as the run that recorded it."""


class ReplayedError(Exception):
    """A model or tool call raised when the run was recorded; this replays it.
    Its type's name is that of the recorded exception."""


@final
class DurablePipeline:
    """A pipeline registered as a DBOS workflow. Made by `durable(...)`."""

    def __init__(
        self,
        pipeline: Stage,
        *,
        name: str,
        env: EnvFactory,
        types: Sequence[type[object]] = (),
    ) -> None:
        if not name:
            raise ValueError("durable() needs a non-empty name: it names the DBOS workflow")
        if not callable(env):
            raise TypeError(
                "durable(env=...) takes a factory of an Env scope, such as "
                "`lambda: ctx.scope('app', ...)`, not an Env"
            )
        self.pipeline = pipeline
        self.name = name
        self.shape = hashlib.sha256(pipeline.to_mermaid().encode("utf-8")).hexdigest()
        self._env = env
        self._types = tuple(types)
        run = self._run

        async def workflow(state: dict[str, JSON]) -> dict[str, JSON]:
            return await run(state)

        self._workflow: Callable[[dict[str, JSON]], Coroutine[object, object, dict[str, JSON]]] = (
            DBOS.workflow(
                name=f"stagefx:{name}",
                serialization_type=WorkflowSerializationFormat.PORTABLE,
            )(workflow)
        )

    def __repr__(self) -> str:
        return f"DurablePipeline({self.name!r})"

    async def execute(self, state: StageState | None = None, *, workflow_id: str) -> StageState:
        """Run (or resume, or look up) the workflow `workflow_id` on `state` and
        give its final state; a failure raises `DurableRunError`. A workflow
        id that already finished gives its recorded state without any call."""
        handle = await self.start(state, workflow_id=workflow_id)
        return await self.result(handle)

    async def start(
        self, state: StageState | None = None, *, workflow_id: str | None = None
    ) -> RunHandle:
        """Start the run in this process and give DBOS's handle to it
        (`await durable.result(handle)` decodes its outcome)."""
        encoded = self._encode(state)
        with SetWorkflowID(workflow_id) if workflow_id is not None else nullcontext():
            return await DBOS.start_workflow_async(self._workflow, encoded)

    async def enqueue(
        self, state: StageState | None = None, *, queue: str, workflow_id: str | None = None
    ) -> RunHandle:
        """Put the run on the DBOS queue `queue` (registered with
        `DBOS.register_queue_async`); any process consuming it runs it."""
        encoded = self._encode(state)
        with SetWorkflowID(workflow_id) if workflow_id is not None else nullcontext():
            return await DBOS.enqueue_workflow_async(queue, self._workflow, encoded)

    async def result(self, handle: RunHandle) -> StageState:
        """The final state of the run behind `handle` (waiting for it), or its
        failure raised as `DurableRunError`."""
        try:
            data = await handle.get_result()
        except PortableWorkflowError as error:
            raise self._failure(error, handle.get_workflow_id()) from None
        return decode_state(data, types=self._types)

    # The workflow ---------------------------------------------------------------

    async def _run(self, state: dict[str, JSON]) -> dict[str, JSON]:
        # What a past run recorded: any JSON, if the step was another.
        recorded = cast(JSON, await DBOS.run_step_async({"name": _SHAPE_STEP}, self._shape_record))
        initial = decode_state(state, types=self._types)
        if not isinstance(recorded, dict) or recorded.get("shape") != self.shape:
            shown = recorded.get("shape") if isinstance(recorded, dict) else recorded
            raise _portable(
                PipelineShapeError(
                    f"durable pipeline {self.name!r} changed shape since this run started "
                    f"(recorded {str(shown)[:12]}, now {self.shape[:12]}): its recorded steps "
                    "would replay against other stages, so it is not resumed; run it under "
                    "a new workflow id, or resume it with the pipeline it started with",
                    state=initial,
                ),
                self._types,
            )
        async with self._env() as env:
            outcome = await interpret(
                self.pipeline.node, initial, env.updated(_StepCalls(), _StepTools())
            )
        if isinstance(outcome, StageException):
            raise _portable(outcome, self._types)
        return encode_state(outcome, types=self._types)

    async def _shape_record(self) -> dict[str, JSON]:
        return {"codec": CODEC_VERSION, "shape": self.shape, "pipeline": self.name}

    def _encode(self, state: StageState | None) -> dict[str, JSON]:
        return encode_state(StageState.empty if state is None else state, types=self._types)

    def _failure(self, error: PortableWorkflowError, workflow_id: str) -> DurableRunError:
        data = error.data
        if isinstance(data, dict) and data.get(_FAILURE_MARK) == CODEC_VERSION:
            state_data = data.get("state")
            path = data.get("stage_path")
            kind = str(data.get("kind", error.name))
            cls = PipelineShapeError if kind == PipelineShapeError.__name__ else DurableRunError
            return cls(
                error.message,
                state=decode_state(state_data, types=self._types),
                stage_path=tuple(str(part) for part in path) if isinstance(path, list) else (),
                kind=kind,
                workflow_id=workflow_id,
            )
        return DurableRunError(
            f"{error.name}: {error.message}",
            state=StageState.empty,
            kind=error.name,
            workflow_id=workflow_id,
        )


def durable(
    pipeline: Stage,
    *,
    name: str,
    env: EnvFactory,
    types: Sequence[type[object]] = (),
) -> DurablePipeline:
    """Register `pipeline` as the DBOS workflow `stagefx:{name}` (call it before
    `DBOS.launch()`, in every process that may run or resume it).

    `env` builds each run's Env where the run executes (clients do not
    travel): `lambda: ctx.scope("triage", config, disposables=(OpenAI(),))`.
    `types`: the types of user values the states hold (as `encode_state`).
    """
    return DurablePipeline(pipeline, name=name, env=env, types=types)


# Steps ------------------------------------------------------------------------


def _digest(data: JSON) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _checked(record: object, key: str, what: str) -> Mapping[str, JSON]:
    # A stagefx step records a JSON object; its entries are checked as they are decoded.
    fields = cast("dict[str, JSON]", record) if isinstance(record, dict) else None
    if fields is None or fields.get("codec") != CODEC_VERSION:
        raise StepMismatchError(
            f"the recorded {what} step is not a stagefx step of codec version {CODEC_VERSION}",
            state=StageState.empty,
        )
    if fields.get("request") != key:
        raise StepMismatchError(
            f"the recorded {what} step answered another request than this one: the "
            "pipeline does not make the same calls in the same order as the run that "
            "recorded it (a concurrent stage whose calls start in another order, or "
            "a pipeline that reads the clock or randomness)",
            state=StageState.empty,
        )
    return fields


def _raised(record: Mapping[str, JSON]) -> Exception | None:
    raised = record.get("raised")
    if not isinstance(raised, dict):
        return None
    name = str(raised.get("type", "Exception"))
    kind: type[ReplayedError] = type(
        name if name.isidentifier() else "Exception", (ReplayedError,), {}
    )
    return kind(str(raised.get("message", "")))


def _raised_record(key: str, error: Exception) -> dict[str, JSON]:
    try:
        message = str(error)
    except Exception:
        message = "<unprintable message>"
    return {
        "codec": CODEC_VERSION,
        "request": key,
        "raised": {"type": type(error).__name__, "message": message},
    }


@final
class _StepCalls(CallLayer):
    """Each model call as one DBOS step, outermost of all layers."""

    depth: ClassVar[int] = -1_000

    async def call(
        self, request: ModelRequest, env: Env, model: GenerativeModel | None
    ) -> ModelOutput | ModelFailure:
        key = _digest(encode_request(request))
        live: list[Exception] = []

        async def step() -> dict[str, JSON]:
            if model is None:
                raise MissingEnvironmentError(
                    "a durable run needs a GenerativeModel in its Env for the calls it has "
                    "not recorded",
                    state=StageState.empty,
                )
            try:
                answer = cast(object, await model.generate(request, env))  # the user's: anything
                if not isinstance(answer, ModelOutput | ModelFailure):
                    raise TypeError(
                        f"a model's generate() must return ModelOutput or ModelFailure, "
                        f"got {type(answer).__name__}"
                    )
            except Exception as error:
                live.append(error)
                return _raised_record(key, error)
            return {"codec": CODEC_VERSION, "request": key, "answer": encode_answer(answer)}

        record = _checked(await DBOS.run_step_async({"name": _MODEL_STEP}, step), key, "model")
        error = live[0] if live else _raised(record)
        if error is not None:
            raise error
        return decode_answer(record.get("answer"))


@final
class _StepTools(ToolLayer):
    """Each tool call as one DBOS step: its result is stored as content."""

    async def call(self, tool: Tool[..., object], request: ModelToolRequest, env: Env) -> object:
        key = _digest({"tool": tool.name, "arguments": _plain(request.arguments)})
        live: list[Exception] = []

        async def step() -> dict[str, JSON]:
            try:
                content = as_content(await tool.call(request.arguments))
            except ValidationFailure:
                # Arguments are checked before the tool runs: checking again replays it.
                return {"codec": CODEC_VERSION, "request": key, "invalid": True}
            except Exception as error:
                live.append(error)
                return _raised_record(key, error)
            return {"codec": CODEC_VERSION, "request": key, "content": encode_content(content)}

        record = _checked(
            await DBOS.run_step_async({"name": f"{_TOOL_STEP}:{tool.name}"}, step), key, "tool"
        )
        if record.get("invalid") is True:
            return await tool.call(request.arguments)  # raises the same ValidationFailure
        error = live[0] if live else _raised(record)
        if error is not None:
            raise error
        content: MultimodalContent = decode_content(record.get("content"))
        return content


def _plain(arguments: Mapping[str, object]) -> JSON:
    return json.loads(json.dumps(arguments, sort_keys=True, default=repr))  # type: ignore[no-any-return]  # json.loads gives Any; it is JSON data


def _portable(failure: StageException, types: Sequence[type[object]]) -> PortableWorkflowError:
    try:
        state: JSON = encode_state(failure.state, types=types)
    except Exception:  # a value the codec cannot hold: the failure still travels
        state = encode_state(StageState.empty)
    kind = failure.kind if isinstance(failure, DurableRunError) else type(failure).__name__
    return PortableWorkflowError(
        failure.message,
        kind,
        None,
        {
            _FAILURE_MARK: CODEC_VERSION,
            "kind": kind,
            "state": state,
            "stage_path": list(failure.stage_path),
        },
    )

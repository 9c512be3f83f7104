"""`durable(pipeline, ...)`: a pipeline run as a DBOS workflow, its calls as DBOS steps.

The workflow's input and output are the codec's JSON of the state (DBOS's
portable JSON serialization). Its first step records a hash of the pipeline's
shape; a resumed run whose pipeline changed shape is refused. Then the
pipeline runs in the Env the user's factory builds, with one `CallLayer`
added, outermost of all (a replayed call is never recorded, paced or sent):
it turns each model call and tool call into one DBOS step whose output is
plain JSON (`{"codec": 1, "request": <hash>, "answer": <encode_answer>}`).
A replayed step gives back the recorded answer; DBOS assigns step ids in the
order calls start, and a step whose request hash differs from the recorded
one fails the run (`StepMismatchError`) instead of replaying a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from contextvars import ContextVar
from typing import ClassVar, TypeAlias, cast, final

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from dbos import (
    DBOS,
    PortableWorkflowError,
    SetWorkflowID,
    WorkflowHandleAsync,
    WorkflowSerializationFormat,
)
from dbos._error import (  # not re-exported by dbos: the types its cancelled results raise
    DBOSAwaitedWorkflowCancelledError,
    DBOSWorkflowCancelledError,
)
from returns.result import Failure, Result, Success

from stagefx._codec import (
    CODEC_VERSION,
    JSON,
    CodecError,
    canonical,
    decode_answer,
    decode_content,
    decode_state,
    encode_answer,
    encode_content,
    encode_request,
    encode_state,
)
from stagefx._core.content import MultimodalContent
from stagefx._core.conversation import ModelOutput, ModelToolRequest
from stagefx._core.errors import MissingEnvironmentError, StageException, describe_error
from stagefx._core.iteration import close_iterator
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.schema import ValidationFailure
from stagefx._core.secrets import scrub
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.events import EventSink, StageEvent
from stagefx._model.boundary import CallLayer, LayerPlace, ModelPath, ToolPath
from stagefx._model.generative import ModelStream
from stagefx._model.tools import Tool, ToolContext, as_content
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.stage import Stage
from stagefx._runtime.streaming import stream_events

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

_reader: ContextVar[EventSink | None] = ContextVar("stagefx_durable_events", default=None)
"""The events sink of a streamed run, for the workflow DBOS starts (in a task
that copies this context) to emit to."""

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

    def stream(
        self, state: StageState | None = None, *, workflow_id: str | None = None
    ) -> AsyncGenerator[StageEvent]:
        """Run (or resume, or look up) the workflow in this process, yielding
        its events as `Stage.stream` does: the calls it makes live stream as
        they come, a recorded call replays its text as one delta, and
        `Finished` comes last with the final state or the `DurableRunError`.
        A workflow that already finished gives `Finished` alone. Iterate inside
        `contextlib.aclosing(...)`."""

        async def run(events: EventSink) -> Result[StageState, StageException]:
            token = _reader.set(events)
            try:
                handle = await self.start(state, workflow_id=workflow_id)
            except Exception as error:
                return Failure(_as_failure(error, workflow_id))
            finally:
                _reader.reset(token)
            try:
                return Success(await self.result(handle))
            except Exception as error:
                return Failure(_as_failure(error, workflow_id))

        return stream_events(run)

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
        workflow_id = handle.get_workflow_id()
        try:
            data = await handle.get_result()
        except PortableWorkflowError as error:
            raise self._failure(error, workflow_id) from None
        except (DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError):
            raise DurableRunError(
                f"durable run {workflow_id!r} was cancelled in DBOS before it finished",
                state=StageState.empty,
                kind="WorkflowCancelled",
                workflow_id=workflow_id,
            ) from None
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
        try:
            async with self._env() as env:
                steps = env.updated(_Steps()).streaming_to(_reader.get())
                outcome = await interpret(self.pipeline.node, initial, steps)
        except Exception as error:  # the user's factory (or its disposables) failed
            raise self._failed(
                f"its Env could not be built or closed: {describe_error(error)}", error, initial
            ) from None
        if isinstance(outcome, StageException):
            raise _portable(outcome, self._types)
        try:
            return encode_state(outcome, types=self._types)
        except CodecError as error:
            raise self._failed(
                f"its final state cannot be stored (pass its types in types=): {error}",
                error,
                outcome,
            ) from None

    def _failed(self, why: str, error: Exception, state: StageState) -> PortableWorkflowError:
        """A failure of the run itself, as every `execute` of its id raises it."""
        failed = DurableRunError(
            f"durable pipeline {self.name!r} failed: {why}", state=state, kind=type(error).__name__
        )
        return _portable(failed, self._types)

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
    """The key a step is recorded under: a hash of the codec's canonical bytes,
    the encoding every layer of the model boundary keys by."""
    return hashlib.sha256(canonical(data)).hexdigest()[:32]


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


def _raised_record(key: str, error: Exception, secrets: tuple[str, ...]) -> dict[str, JSON]:
    """A call that raised, as its step's row: its message scrubbed, since the
    row lives in a database a team shares."""
    try:
        message = scrub(str(error), secrets)
    except Exception:
        message = "<unprintable message>"
    return {
        "codec": CODEC_VERSION,
        "request": key,
        "raised": {"type": type(error).__name__, "message": message},
    }


@final
class _Steps(CallLayer):
    """Each model call and each tool call as one DBOS step, outermost of all
    layers: a completed step replays its recorded answer, whole, without
    reaching anything else; a live step streams as it runs."""

    place: ClassVar[LayerPlace] = "durable"

    async def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        key = _digest(encode_request(request))
        live: list[Exception] = []
        deltas: MemoryObjectSendStream[str] | None = None

        async def step() -> dict[str, JSON]:
            if inner.model is None:
                raise MissingEnvironmentError(
                    "a durable run needs a GenerativeModel in its Env for the calls it has "
                    "not recorded",
                    state=StageState.empty,
                )
            answer: object = None
            stream = inner.stream(request, env)
            try:
                async for item in stream:
                    if not isinstance(item, str):
                        answer = item
                        break
                    if deltas is not None:
                        deltas.send_nowait(item)
                if not isinstance(answer, ModelOutput | ModelFailure):
                    raise TypeError(
                        "a model must answer with ModelOutput or ModelFailure, "
                        f"got {type(answer).__name__}"
                    )
            except Exception as error:
                live.append(error)
                return _raised_record(key, error, env.secrets())
            finally:
                await close_iterator(stream)
            return {"codec": CODEC_VERSION, "request": key, "answer": encode_answer(answer)}

        if env.events is None:  # nobody reads the stream: the step, whole
            recorded: object = await DBOS.run_step_async({"name": _MODEL_STEP}, step)
        else:  # the step runs in a task of its own, its deltas handed over as they come
            send, receive = anyio.create_memory_object_stream[str](math.inf)
            deltas = send
            reservation = DBOS.reserve_step()
            outcome: list[object] = []

            async def run() -> None:
                with send:
                    outcome.append(await reservation.run_async({"name": _MODEL_STEP}, step))

            async with anyio.create_task_group() as group:
                group.start_soon(run)
                with receive:
                    async for delta in receive:
                        yield delta
            recorded = outcome[0]
        record = _checked(recorded, key, "model")
        error = live[0] if live else _raised(record)
        if error is not None:
            raise error
        yield decode_answer(record.get("answer"))

    async def tool_call(
        self,
        tool: Tool[..., object],
        request: ModelToolRequest,
        context: ToolContext,
        inner: ToolPath,
    ) -> object:
        key = _digest({"tool": tool.name, "arguments": _plain(request.arguments)})
        live: list[Exception] = []

        async def step() -> dict[str, JSON]:
            try:
                content = as_content(await inner(tool, request, context))
            except ValidationFailure:
                # Arguments are checked before the tool runs: checking again replays it.
                return {"codec": CODEC_VERSION, "request": key, "invalid": True}
            except Exception as error:
                live.append(error)
                return _raised_record(key, error, context.env.secrets())
            return {"codec": CODEC_VERSION, "request": key, "content": encode_content(content)}

        record = _checked(
            await DBOS.run_step_async({"name": f"{_TOOL_STEP}:{tool.name}"}, step), key, "tool"
        )
        if record.get("invalid") is True:
            return await tool.call(request.arguments, context)  # raises the same ValidationFailure
        error = live[0] if live else _raised(record)
        if error is not None:
            raise error
        content: MultimodalContent = decode_content(record.get("content"))
        return content


def _as_failure(error: Exception, workflow_id: str | None) -> StageException:
    if isinstance(error, StageException):
        return error
    failed = DurableRunError(
        f"the durable run could not start or finish: {describe_error(error)}",
        state=StageState.empty,
        kind=type(error).__name__,
        workflow_id=workflow_id,
    )
    failed.__cause__ = error
    return failed


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

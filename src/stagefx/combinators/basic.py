"""Leaf stages: fixed turns, result and context transforms, and custom functions."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, cast

from returns.future import FutureResult
from returns.io import IOResult
from returns.pipeline import is_successful
from returns.result import Failure, Result, Success
from returns.unsafe import unsafe_perform_io

from stagefx.combinators._step import Outcome, Step, failure, resolve
from stagefx.content import ContentElement, ContentPart, MultimodalContent
from stagefx.conversation import ModelContext, ModelInput, ModelOutput
from stagefx.env import Env
from stagefx.errors import StageException, StageExecutionError
from stagefx.state import StageState

__all__ = [
    "ContextTransform",
    "PredefinedElement",
    "ResultTransform",
    "StageFunction",
    "StageFunctionWithEnv",
    "StageReturn",
    "custom",
    "predefined",
    "transform_context",
    "transform_result",
]

PredefinedElement: TypeAlias = ContentElement | ModelInput | ModelOutput
ResultTransform: TypeAlias = Callable[
    [MultimodalContent], MultimodalContent | Awaitable[MultimodalContent]
]
ContextTransform: TypeAlias = Callable[[ModelContext], ModelContext | Awaitable[ModelContext]]
StageReturn: TypeAlias = (
    StageState
    | Result[StageState, StageException]
    | IOResult[StageState, StageException]
    | FutureResult[StageState, StageException]
)


class StageFunction(Protocol):
    """`async def f(*, state: StageState) -> StageState` (or a Result of one)."""

    def __call__(self, *, state: StageState) -> Awaitable[StageReturn]: ...


class StageFunctionWithEnv(Protocol):
    """`async def f(*, state: StageState, env: Env) -> StageState` (or a Result of one)."""

    def __call__(self, *, state: StageState, env: Env) -> Awaitable[StageReturn]: ...


def predefined(elements: tuple[PredefinedElement, ...], result: ContentElement | None) -> Step:
    """Append fixed turns. Plain content alternates input, output, input, ...;
    the result becomes `result`, else the last output's content, else stays."""
    if not elements:
        raise ValueError("Stage.predefined needs at least one element")
    turns: list[ModelInput | ModelOutput] = []
    for index, element in enumerate(elements):
        if isinstance(element, ModelInput | ModelOutput):
            turns.append(element)
        elif isinstance(element, str | MultimodalContent | ContentPart):
            content = MultimodalContent.of(element)
            turns.append(ModelInput(content) if index % 2 == 0 else ModelOutput(content))
        else:
            raise TypeError(
                "Stage.predefined takes content, ModelInput or ModelOutput, "
                f"not {type(element).__name__}"
            )
    added = tuple(turns)
    outputs = [turn.content for turn in added if isinstance(turn, ModelOutput)]
    fixed = MultimodalContent.of(result) if result is not None else None
    if fixed is None and outputs:
        fixed = outputs[-1]

    async def run(state: StageState, env: Env) -> Outcome:
        return state.updated(context=(*state.context, *added), result=fixed)

    return run


def transform_result(transformation: ResultTransform) -> Step:
    """Replace the result with `transformation(result)`; the context is untouched."""
    _require_callable(transformation, "transform_result")

    async def run(state: StageState, env: Env) -> Outcome:
        try:
            value: object = transformation(state.result)
            if not isinstance(value, MultimodalContent):
                value = await resolve(value)
        except Exception as error:
            return failure(error, state)
        if not isinstance(value, MultimodalContent):
            return _wrong_type("transform_result", "MultimodalContent", value, state)
        return state.updated(result=value)

    return run


def transform_context(transformation: ContextTransform) -> Step:
    """Replace the context with `transformation(context)`; the result is untouched."""
    _require_callable(transformation, "transform_context")

    async def run(state: StageState, env: Env) -> Outcome:
        try:
            value = await resolve(transformation(state.context))
            context = StageState(context=value).context
        except Exception as error:
            return failure(error, state)
        return state.updated(context=context)

    return run


def custom(function: StageFunction | StageFunctionWithEnv) -> Step:
    """A step from a user's `async def f(*, state[, env])`; anything it raises
    becomes a failure value, and `Result` / `FutureResult` returns are unwrapped."""
    _require_callable(function, "@stage")
    if inspect.isfunction(function) and not inspect.iscoroutinefunction(function):
        raise TypeError(f"@stage needs an async function, got sync {function.__qualname__!r}")
    wants_env = "env" in inspect.signature(function).parameters

    async def run(state: StageState, env: Env) -> Outcome:
        try:
            # `object`: a mistyped user function may return anything, checked just below.
            if wants_env:
                called = cast(object, function(state=state, env=env))  # type: ignore[call-arg]  # signature checked
            else:
                called = cast(object, function(state=state))  # type: ignore[call-arg]  # signature checked
            if not inspect.isawaitable(called):
                return _wrong_type("@stage function", "an awaitable", called, state)
            return await _outcome(await called, state)
        except Exception as error:
            return failure(error, state)

    return run


async def _outcome(produced: object, state: StageState) -> Outcome:
    if isinstance(produced, StageState):
        return produced
    if isinstance(produced, FutureResult):
        produced = await produced
    if isinstance(produced, IOResult):
        if is_successful(produced):
            return await _outcome(unsafe_perform_io(produced.unwrap()), state)
        produced = Failure(unsafe_perform_io(produced.failure()))
    if isinstance(produced, Success):
        return await _outcome(produced.unwrap(), state)
    if isinstance(produced, Failure):
        error = produced.failure()
        if isinstance(error, Exception):
            return failure(error, state)
        return StageExecutionError(f"custom stage failed with {error!r}", state=state)
    return _wrong_type("@stage function", "StageState", produced, state)


def _wrong_type(what: str, expected: str, value: object, state: StageState) -> StageException:
    return StageExecutionError(
        f"{what} must return {expected}, got {type(value).__name__}", state=state
    )


def _require_callable(value: object, what: str) -> None:
    if not callable(value):
        raise TypeError(f"{what} needs a callable, got {type(value).__name__}")

"""Leaf nodes that need no provider: fixed turns, transforms, and `@stage` functions."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import ClassVar, Protocol, TypeAlias, cast, final

import attrs
from returns.future import FutureResult
from returns.io import IOResult
from returns.pipeline import is_successful
from returns.result import Failure, Result, Success
from returns.unsafe import unsafe_perform_io

from stagefx._core.content import ContentElement, ContentPart, MultimodalContent
from stagefx._core.conversation import ModelContext, ModelInput, ModelOutput
from stagefx._core.errors import StageException, StageExecutionError
from stagefx._core.state import StageState, checked_context
from stagefx._env.env import Env
from stagefx._runtime.equivalence import Attempt, assert_equivalent, attempted
from stagefx._runtime.node import Law, Node, Outcome
from stagefx._runtime.user_code import failure, require_callable, resolve

__all__ = [
    "AnyStageFunction",
    "ContextTransform",
    "Custom",
    "Predefined",
    "PredefinedElement",
    "ResultTransform",
    "StageFunction",
    "StageFunctionWithEnv",
    "StageReturn",
    "TransformContext",
    "TransformResult",
    "check_context_functor",
    "check_result_functor",
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


AnyStageFunction: TypeAlias = StageFunction | StageFunctionWithEnv


def _turns(elements: tuple[object, ...]) -> tuple[ModelInput | ModelOutput, ...]:
    """draive's rule: plain content is an input first, then the opposite of the
    turn before it (so it alternates, and follows explicit turns). Typed `object`:
    the `PredefinedElement`s a caller gave, unchecked until here."""
    if not elements:
        raise ValueError("Stage.predefined needs at least one element")
    turns: list[ModelInput | ModelOutput] = []
    for element in elements:
        if isinstance(element, ModelInput | ModelOutput):
            turns.append(element)
        elif isinstance(element, str | MultimodalContent | ContentPart):
            content = MultimodalContent.of(element)
            after_input = bool(turns) and isinstance(turns[-1], ModelInput)
            turns.append(ModelOutput(content) if after_input else ModelInput(content))
        else:
            raise TypeError(
                "Stage.predefined takes content, ModelInput or ModelOutput, "
                f"not {type(element).__name__}"
            )
    return tuple(turns)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Predefined(Node):
    """Append fixed turns. Plain content alternates input, output, input, ...
    (after an explicit turn, the opposite of it); the result becomes `result`
    if given, else stays as it was (as in draive)."""

    kind: ClassVar[str] = "predefined"
    leaf: ClassVar[bool] = True

    turns: tuple[ModelInput | ModelOutput, ...]
    result: MultimodalContent | None

    @classmethod
    def of(cls, elements: tuple[PredefinedElement, ...], result: ContentElement | None) -> Node:
        return cls(_turns(elements), None if result is None else MultimodalContent.of(result))

    async def run(self, state: StageState, env: Env) -> Outcome:
        return state.updated(context=(*state.context, *self.turns), result=self.result)


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_result_transform(_: object, __: object, value: ResultTransform) -> None:
    require_callable(value, "transform_result")


def _check_context_transform(_: object, __: object, value: ContextTransform) -> None:
    require_callable(value, "transform_context")


# The functor laws of the transforms. A node module imports no other node
# module, so `sequence(f, g)` is spelled out as what it does.


async def _in_turn(first: Node, second: Node, state: StageState, env: Env) -> Attempt:
    """What `sequence(first, second)` gives: `second` on what `first` gave, unless it failed."""
    done = await attempted(first, state, env)
    return await attempted(second, done.unwrap(), env) if isinstance(done, Success) else done


async def check_result_functor(
    first: Callable[[MultimodalContent], MultimodalContent],
    second: Callable[[MultimodalContent], MultimodalContent],
    state: StageState,
    env: Env,
) -> None:
    """`transform_result(id) == noop`; `transform_result(g . f) ==
    sequence(transform_result(f), transform_result(g))`."""
    assert_equivalent(
        "result functor identity",
        await attempted(TransformResult(lambda content: content), state, env),
        Success(state),
    )
    assert_equivalent(
        "result functor composition",
        await attempted(TransformResult(lambda content: second(first(content))), state, env),
        await _in_turn(TransformResult(first), TransformResult(second), state, env),
    )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class TransformResult(Node):
    """Replace the result with `transformation(result)`; the context is untouched."""

    kind: ClassVar[str] = "transform_result"
    leaf: ClassVar[bool] = True
    laws: ClassVar[tuple[Law[...], ...]] = (Law("result functor", check_result_functor),)

    transformation: ResultTransform = attrs.field(validator=_check_result_transform)

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            value = self.transformation(state.result)
            if not isinstance(value, MultimodalContent):
                value = await resolve(value)
        except Exception as error:
            return failure(error, state)
        if not isinstance(value, MultimodalContent):  # pyright: ignore[reportUnnecessaryIsInstance]  # a mistyped transformation may return anything; no cast: this runs every time
            return _wrong_type("transform_result", "MultimodalContent", value, state)
        return state.updated(result=value)


async def check_context_functor(
    first: Callable[[ModelContext], ModelContext],
    second: Callable[[ModelContext], ModelContext],
    state: StageState,
    env: Env,
) -> None:
    """The functor laws for `transform_context`, as for `check_result_functor`."""
    assert_equivalent(
        "context functor identity",
        await attempted(TransformContext(lambda context: context), state, env),
        Success(state),
    )
    assert_equivalent(
        "context functor composition",
        await attempted(TransformContext(lambda context: second(first(context))), state, env),
        await _in_turn(TransformContext(first), TransformContext(second), state, env),
    )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class TransformContext(Node):
    """Replace the context with `transformation(context)`; the result is untouched."""

    kind: ClassVar[str] = "transform_context"
    leaf: ClassVar[bool] = True
    laws: ClassVar[tuple[Law[...], ...]] = (Law("context functor", check_context_functor),)

    transformation: ContextTransform = attrs.field(validator=_check_context_transform)

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            value = await resolve(self.transformation(state.context))
            context = checked_context(value)  # a tuple of bad turns is refused too
        except Exception as error:
            return failure(error, state)
        return state.updated(context=context)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Custom(Node):
    """A user's `async def f(*, state[, env])`: what it raises becomes a failure
    value, and `Result` / `FutureResult` returns are unwrapped."""

    kind: ClassVar[str] = "stage"
    leaf: ClassVar[bool] = True

    function: StageFunction | StageFunctionWithEnv
    wants_env: bool
    label: str | None

    @classmethod
    def of(cls, function: StageFunction | StageFunctionWithEnv) -> Node:
        require_callable(function, "@stage")
        if inspect.isfunction(function) and not inspect.iscoroutinefunction(function):
            raise TypeError(f"@stage needs an async function, got sync {function.__qualname__!r}")
        name = getattr(function, "__name__", None)
        wants_env = "env" in inspect.signature(function).parameters
        return cls(function, wants_env, name if isinstance(name, str) else None)

    @property
    def name(self) -> str | None:
        return self.label

    async def run(self, state: StageState, env: Env) -> Outcome:
        function = self.function
        try:
            # `object`: a mistyped user function may return anything, checked just below.
            if self.wants_env:
                called = cast(object, function(state=state, env=env))  # type: ignore[call-arg]  # signature checked in of()
            else:
                called = cast(object, function(state=state))  # type: ignore[call-arg]  # signature checked in of()
            if not inspect.isawaitable(called):
                return _wrong_type("@stage function", "an awaitable", called, state)
            produced = await called
            if type(produced) is StageState:
                return produced
            return await _outcome(produced, state)
        except Exception as error:
            return failure(error, state)


async def _outcome(produced: object, state: StageState) -> Outcome:
    # The containers' contents are the user's: held as `object`, checked as unwrapped.
    while True:
        if isinstance(produced, StageState):
            return produced
        if isinstance(produced, FutureResult):
            produced = await cast("FutureResult[object, object]", produced)
        if isinstance(produced, IOResult):
            io_result = cast("IOResult[object, object]", produced)
            if is_successful(io_result):
                produced = unsafe_perform_io(io_result.unwrap())
                continue
            produced = Failure(unsafe_perform_io(io_result.failure()))
        if isinstance(produced, Success):
            produced = cast("Success[object]", produced).unwrap()
            continue
        if isinstance(produced, Failure):
            error = cast("Failure[object]", produced).failure()
            if isinstance(error, Exception):
                return failure(error, state)
            return StageExecutionError(f"custom stage failed with {error!r}", state=state)
        return _wrong_type("@stage function", "StageState", produced, state)


def _wrong_type(what: str, expected: str, value: object, state: StageState) -> StageException:
    return StageExecutionError(
        f"{what} must return {expected}, got {type(value).__name__}", state=state
    )

"""Control nodes: conditional run, retry and fallback (`lash`), and timeouts."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextvars import Token
from types import TracebackType
from typing import ClassVar, Protocol, TypeAlias, cast, final

import anyio
import attrs
from anyio.abc import TaskGroup

from stagefx._core.errors import (
    ModelRateLimitError,
    StageException,
    StageExecutionError,
    StageTimeoutError,
)
from stagefx._core.meta import AttributeValue
from stagefx._core.spending import plus_spent_by
from stagefx._core.state import StageState
from stagefx._core.usage import (
    Ledger,
    UsageTotals,
    close_ledger,
    open_ledger,
    with_usage,
)
from stagefx._env.clock import SystemClock
from stagefx._env.env import Env
from stagefx._env.events import Retrying
from stagefx._env.tracing import annotate
from stagefx._runtime.calls import failure, require_count, resolve_bool
from stagefx._runtime.node import Frame, Next, Node, Outcome, SpanSpec

__all__ = [
    "Catching",
    "Delay",
    "Fallback",
    "Retry",
    "StateCondition",
    "Timeout",
    "When",
    "matcher",
    "original",
]


class StateCondition(Protocol):
    """`(*, state) -> bool`, sync or async."""

    def __call__(self, *, state: StageState) -> bool | Awaitable[bool]: ...


Catching: TypeAlias = (
    type[Exception]
    | tuple[type[Exception], ...]
    | set[type[Exception]]
    | frozenset[type[Exception]]
    | Callable[[Exception], bool]
)
"""Which failures to handle: exception types (a type, a tuple or a set, matched
against the failure and the exception it wraps), or a predicate. The predicate
sees what draive's would: the original exception when user code (a callback, a
custom stage, a model that raised) failed, else the `StageException`."""

Delay: TypeAlias = float | Callable[[int, StageException], float] | None
"""Seconds before a retry, or `(attempt, failure) -> seconds` (attempt from 0)."""


def _exception_types(catching: object) -> tuple[type[BaseException], ...] | None:
    """The exception types `catching` names (a type, a tuple or a set), if it does."""
    if isinstance(catching, type) and issubclass(catching, BaseException):
        return (catching,)
    if isinstance(catching, tuple | set | frozenset) and all(
        isinstance(kind, type) and issubclass(kind, BaseException)
        for kind in cast("Collection[object]", catching)  # items of any type
    ):
        return tuple(cast("Collection[type[BaseException]]", catching))  # checked just above
    return None


def matcher(catching: object) -> Callable[[StageException], bool]:
    """`catching` as a predicate on failures; refuses anything else at construction.
    Typed `object`: the `Catching` a caller gave, unchecked until here."""
    types = _exception_types(catching)
    if types is None:
        if not callable(catching) or isinstance(catching, type):
            raise TypeError(
                f"catching must be exception types (a type, tuple or set) or a predicate, "
                f"got {catching!r}"
            )
        predicate = catching

        def asks(error: StageException) -> bool:
            return bool(predicate(original(error)))

        return asks

    def matches(error: StageException) -> bool:
        return isinstance(error, types) or isinstance(error.__cause__, types)

    return matches


def original(error: StageException) -> Exception:
    """What a predicate is shown: the exception user code raised, when the
    failure only wraps it (`StageExecutionError`), else the failure itself."""
    cause = error.__cause__
    if type(error) is StageExecutionError and isinstance(cause, Exception):
        return cause
    return error


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_condition(_: object, __: object, value: bool | StateCondition) -> None:
    if not isinstance(value, bool) and not callable(value):
        raise TypeError(
            f"when(condition=...) needs a bool or a callable, got {type(value).__name__}"
        )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class When(Node):
    """Run `child` if `condition` holds, else `alternative` (or pass the state on)."""

    kind: ClassVar[str] = "when"
    laws: ClassVar[tuple[str, ...]] = ("check_when",)

    child: Node
    condition: bool | StateCondition = attrs.field(validator=_check_condition)
    alternative: Node | None

    def children(self) -> tuple[Node, ...]:
        return (self.child,) if self.alternative is None else (self.child, self.alternative)

    def details(self) -> Mapping[str, AttributeValue]:
        shown = self.condition if isinstance(self.condition, bool) else "callable"
        return {"condition": shown}

    def start(self, state: StageState, env: Env) -> Next:
        condition = self.condition
        if condition is True or condition is False:
            return self._chosen(condition, state)
        try:
            answer = condition(state=state)
        except Exception as error:
            return failure(error, state)
        if answer is True or answer is False:
            return self._chosen(answer, state)
        return self._awaited(answer, state)

    async def _awaited(self, answer: Awaitable[bool], state: StageState) -> Next:
        try:
            proceed = await resolve_bool(answer, "when condition")
        except Exception as error:
            return failure(error, state)
        return self._chosen(proceed, state)

    def _chosen(self, proceed: bool, state: StageState) -> Next:
        if proceed:
            return (self.child, state)
        if self.alternative is None:
            return state
        return (self.alternative, state)


def _check_limit(_: object, __: object, value: int) -> None:
    require_count(value, "with_retry(limit=...)", 0)


def _check_delay(_: object, __: object, value: Delay) -> None:
    if value is not None and not callable(value) and not _is_seconds(value):
        raise ValueError(f"with_retry(delay=...) needs seconds >= 0 or a callable, got {value!r}")


def _matches(node: Retry | Fallback) -> Callable[[StageException], bool]:
    return matcher(node.catching)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Retry(Node):
    """Run `child`; on a matching failure wait and run it again, at most
    `limit` more times, on the input state plus the usage spent so far. A
    rate-limit failure's `retry_after` is a floor on the wait."""

    kind: ClassVar[str] = "retry"
    laws: ClassVar[tuple[str, ...]] = ("check_retry",)

    child: Node
    limit: int = attrs.field(validator=_check_limit)
    delay: Delay = attrs.field(validator=_check_delay)
    catching: Catching
    matches: Callable[[StageException], bool] = attrs.field(
        init=False, default=attrs.Factory(_matches, takes_self=True)
    )

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"limit": self.limit}

    def span(self) -> SpanSpec:
        return ("retry", {"limit": self.limit})

    def start(self, state: StageState, env: Env) -> Next:
        return (self.child, state, _RetryFrame(self, state, env))

    def wait_for(self, attempt: int, error: StageException) -> float:
        delay = self.delay
        seconds = delay(attempt, error) if callable(delay) else (delay or 0.0)
        if not _is_seconds(seconds):
            raise ValueError(f"retry delay must be seconds >= 0, got {seconds!r}")
        if isinstance(error, ModelRateLimitError) and error.retry_after is not None:
            seconds = max(seconds, error.retry_after)
        return float(seconds)


@final
class _RetryFrame(Frame):
    __slots__ = ("attempt", "env", "node", "state")

    def __init__(self, node: Retry, state: StageState, env: Env) -> None:
        self.node = node
        self.state = state
        self.env = env
        self.attempt = 0

    def resume(self, outcome: Outcome) -> Next:
        node = self.node
        if not isinstance(outcome, StageException) or self.attempt >= node.limit:
            annotate("attempts", self.attempt + 1)
            return outcome
        try:
            if not bool(node.matches(outcome)):
                annotate("attempts", self.attempt + 1)
                return outcome
            seconds = node.wait_for(self.attempt, outcome)
        except Exception as error:
            return failure(error, plus_spent_by(self.state, outcome))
        self.attempt += 1
        self.state = plus_spent_by(self.state, outcome)
        events = self.env.events
        if events is not None:
            events.emit(Retrying(outcome, events.path))
        if seconds > 0:
            return self._after(seconds)
        return (node.child, self.state, self)

    async def _after(self, seconds: float) -> Next:
        await self.env.clock.sleep(seconds)
        return (self.node.child, self.state, self)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Fallback(Node):
    """Run `child`; on a matching failure run `fallback` on the same input
    state, plus the usage the failed run spent."""

    kind: ClassVar[str] = "fallback"
    laws: ClassVar[tuple[str, ...]] = ("check_fallback",)

    child: Node
    fallback: Node
    catching: Catching
    matches: Callable[[StageException], bool] = attrs.field(
        init=False, default=attrs.Factory(_matches, takes_self=True)
    )

    def children(self) -> tuple[Node, ...]:
        return (self.child, self.fallback)

    def span(self) -> SpanSpec:
        return ("fallback", None)

    def start(self, state: StageState, env: Env) -> Next:
        return (self.child, state, _FallbackFrame(self, state))


@final
class _FallbackFrame(Frame):
    __slots__ = ("node", "state")

    def __init__(self, node: Fallback, state: StageState) -> None:
        self.node = node
        self.state = state

    def resume(self, outcome: Outcome) -> Next:
        if not isinstance(outcome, StageException):
            return outcome
        spent = plus_spent_by(self.state, outcome)
        try:
            handled = bool(self.node.matches(outcome))
        except Exception as error:
            return failure(error, spent)
        annotate("fell_back", handled)
        return (self.node.fallback, spent) if handled else outcome


def _check_seconds(_: object, __: object, value: float) -> None:
    if not _is_seconds(value) or value == 0:
        raise ValueError(f"with_timeout needs seconds > 0, got {value!r}")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Timeout(Node):
    """Run `child` for at most `seconds` on the Env's clock; past that it is
    cancelled and the stage fails with `StageTimeoutError`.

    On the system clock the interpreter holds an anyio cancel scope; on an
    injected clock, a task group whose watchdog sleeps on that clock. Either
    is entered here and exited by the frame, in LIFO order with every other.
    """

    kind: ClassVar[str] = "timeout"

    child: Node
    seconds: float = attrs.field(validator=_check_seconds)

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"seconds": self.seconds}

    def span(self) -> SpanSpec:
        return ("timeout", {"seconds": self.seconds})

    def start(self, state: StageState, env: Env) -> Next:
        if isinstance(env.clock, SystemClock):
            scope = anyio.move_on_after(self.seconds)
            scope.__enter__()
            return (self.child, state, _ScopeFrame(self, state, scope, *open_ledger()))
        return self._watched(state, env)

    async def _watched(self, state: StageState, env: Env) -> Next:
        group = anyio.create_task_group()
        await group.__aenter__()
        frame = _WatchdogFrame(self, state, group, *open_ledger())
        group.start_soon(frame.watchdog, env)
        return (self.child, state, frame)

    def timed_out(self, state: StageState, ledger: Ledger) -> StageException:
        """The failure, carrying what the cut-off work spent."""
        spent = state.get(UsageTotals, UsageTotals()).combined(ledger.spent)
        return StageTimeoutError(
            f"stage timed out after {self.seconds}s", state=with_usage(state, spent)
        )


@final
class _ScopeFrame(Frame):
    __slots__ = ("ledger", "node", "scope", "state", "token")

    def __init__(
        self,
        node: Timeout,
        state: StageState,
        scope: anyio.CancelScope,
        ledger: Ledger,
        token: Token[Ledger | None],
    ) -> None:
        self.node = node
        self.state = state
        self.scope = scope
        self.ledger = ledger
        self.token = token

    def resume(self, outcome: Outcome) -> Next:
        close_ledger(self.token)
        self.scope.__exit__(None, None, None)
        return outcome

    async def abort(self, error: BaseException) -> Outcome | None:
        close_ledger(self.token)
        if self.scope.__exit__(type(error), error, error.__traceback__):
            return self.node.timed_out(self.state, self.ledger)  # our deadline: absorbed
        return None


@final
class _WatchdogFrame(Frame):
    __slots__ = ("expired", "group", "ledger", "node", "state", "token")

    def __init__(
        self,
        node: Timeout,
        state: StageState,
        group: TaskGroup,
        ledger: Ledger,
        token: Token[Ledger | None],
    ) -> None:
        self.node = node
        self.state = state
        self.expired = False
        self.group = group
        self.ledger = ledger
        self.token = token

    async def watchdog(self, env: Env) -> None:
        await env.clock.sleep(self.node.seconds)
        self.expired = True
        self.group.cancel_scope.cancel()

    def resume(self, outcome: Outcome) -> Next:
        return self._closed(outcome)

    async def _closed(self, outcome: Outcome) -> Next:
        close_ledger(self.token)
        self.group.cancel_scope.cancel()
        await self.group.__aexit__(None, None, None)
        return self.node.timed_out(self.state, self.ledger) if self.expired else outcome

    async def abort(self, error: BaseException) -> Outcome | None:
        close_ledger(self.token)
        traceback: TracebackType | None = error.__traceback__
        if await self.group.__aexit__(type(error), error, traceback) and self.expired:
            return self.node.timed_out(self.state, self.ledger)
        return None

"""Control nodes: conditional run, retry and fallback (`lash`), and timeouts."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextvars import Token
from types import TracebackType
from typing import ClassVar, Protocol, TypeAlias, cast, final

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup
from returns.result import Success

from stagefx._core.content import MultimodalContent
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
from stagefx._runtime.equivalence import (
    LawViolation,
    Probe,
    Staged,
    assert_equivalent,
    assert_equivalent_up_to_usage,
    assert_usage,
    attempted,
    spent,
    usage_of,
)
from stagefx._runtime.node import Frame, Law, Next, Node, Outcome, Run, SpanSpec, Wait
from stagefx._runtime.user_code import failure, require_count, resolve_bool

__all__ = [
    "Catching",
    "Delay",
    "Fallback",
    "Retry",
    "StateCondition",
    "Timeout",
    "When",
    "check_fallback",
    "check_retry",
    "check_when",
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


# The law of `When`.


def _conditions(answer: bool, asked: list[StageState]) -> list[tuple[str, bool | StateCondition]]:
    """`answer` as a bool, a sync callable and an async one (recording what they are asked)."""

    def sync(*, state: StageState) -> bool:
        asked.append(state)
        return answer

    async def suspending(*, state: StageState) -> bool:
        asked.append(state)
        await anyio.lowlevel.checkpoint()
        return answer

    return [(str(answer), answer), (f"sync {answer}", sync), (f"async {answer}", suspending)]


def _unchanged(state: StageState) -> StageState:
    """A `Probe` step making the probe a noop."""
    return state


def _tagged(state: StageState) -> StageState:
    """A `Probe` step tagging the result: `check_when`'s default alternative."""
    return state.updated(result=MultimodalContent.of(state.result, "<alternative>"))


async def check_when(
    stage: Staged, state: StageState, env: Env, *, alternative: Staged | None = None
) -> None:
    """`when` runs `stage` or the alternative, as its condition answers:

    - `stage.when(True) == stage`, also with an `alternative`;
    - `stage.when(False) == noop`;
    - `stage.when(False, alternative=other) == other`;
    - a condition `(*, state) -> bool`, sync or async, behaves as its answer,
      and is asked once, on the input state;
    - `noop.when(False, alternative=stage) == stage`: `stage` as the alternative.

    `other` is `alternative`, by default a stage that tags the result.
    """
    node = stage.node
    other = Probe(_tagged) if alternative is None else alternative.node
    alone = await attempted(node, state, env)
    instead = await attempted(other, state, env)
    asked: list[StageState] = []
    for answer in (True, False):
        for label, condition in _conditions(answer, asked):
            for given in (None, other):
                law = f"when({label}{'' if given is None else ', alternative'})"
                asked.clear()
                outcome = await attempted(When(node, condition, given), state, env)
                if callable(condition) and asked != [state]:
                    raise LawViolation(
                        f"{law}: the condition was asked {len(asked)} times, "
                        "expected once, on the input state"
                    )
                expected = alone if answer else Success(state) if given is None else instead
                assert_equivalent(law, outcome, expected)
    assert_equivalent(
        "noop.when(False, alternative=stage)",
        await attempted(When(Probe(_unchanged), False, node), state, env),
        alone,
    )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class When(Node):
    """Run `child` if `condition` holds, else `alternative` (or pass the state on)."""

    kind: ClassVar[str] = "when"
    laws: ClassVar[tuple[Law[...], ...]] = (Law("when", check_when),)

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
        return Wait(self._awaited(answer, state))

    async def _awaited(self, answer: Awaitable[bool], state: StageState) -> Next:
        try:
            proceed = await resolve_bool(answer, "when condition")
        except Exception as error:
            return failure(error, state)
        return self._chosen(proceed, state)

    def _chosen(self, proceed: bool, state: StageState) -> Next:
        if proceed:
            return Run(self.child, state)
        if self.alternative is None:
            return state
        return Run(self.alternative, state)


def _check_limit(_: object, __: object, value: int) -> None:
    require_count(value, "with_retry(limit=...)", 0)


def _check_delay(_: object, __: object, value: Delay) -> None:
    if value is not None and not callable(value) and not _is_seconds(value):
        raise ValueError(f"with_retry(delay=...) needs seconds >= 0 or a callable, got {value!r}")


def _matches(node: Retry | Fallback) -> Callable[[StageException], bool]:
    return matcher(node.catching)


# The law of `Retry`.


class _Refused(Exception):
    """What the checks' own failing stage raises."""


class _Unmatched(Exception):
    """Raised by no stage: a `catching` that matches nothing."""


def _never_matching(error: Exception) -> bool:
    return False


def _counted(node: Node, runs: list[int]) -> Node:
    """`node` behind a condition that always holds (`when(True) == node`) and
    appends to `runs` each time it is asked."""

    def count(*, state: StageState) -> bool:
        runs.append(len(runs))
        return True

    return When(node, count, None)


def _assert_runs(law: str, runs: list[int], expected: int) -> None:
    if len(runs) != expected:
        raise LawViolation(f"{law}: the stage ran {len(runs)} times, expected {expected}")


async def check_retry(stage: Staged, state: StageState, env: Env, *, limit: int = 2) -> None:
    """`with_retry` reruns failures only, and only those it catches; for every
    `k` from 1 to `limit`:

    - `stage.with_retry(limit=0) == stage`;
    - `stage.with_retry(limit=k, catching=<matches nothing>) == stage`, after one run;
    - if `stage` succeeds, `stage.with_retry(limit=k) == stage`, after one run;
    - if `stage` fails, `stage.with_retry(limit=k)` runs it `k + 1` times and
      fails as `stage` does, up to usage: each run starts from the input plus
      the usage spent so far, so the failure holds the usage of all `k + 1`.

    No delay is given, but a rate limit's `retry_after` still waits on the
    Env's clock (give the Env a `VirtualClock` to keep checks instant).
    """
    if limit < 0:
        raise ValueError(f"check_retry needs limit >= 0, got {limit!r}")
    node = stage.node
    alone = await attempted(node, state, env)
    assert_equivalent(
        "retry(limit=0)", await attempted(Retry(node, 0, None, Exception), state, env), alone
    )
    base = state.get(UsageTotals, UsageTotals())
    each = spent(alone, state)
    for k in range(1, limit + 1):
        runs: list[int] = []
        uncaught = Retry(_counted(node, runs), k, None, _never_matching)
        assert_equivalent(
            f"retry(limit={k}) catching nothing", await attempted(uncaught, state, env), alone
        )
        _assert_runs(f"retry(limit={k}) catching nothing", runs, 1)
        runs.clear()
        retried = await attempted(Retry(_counted(node, runs), k, None, Exception), state, env)
        if isinstance(alone, Success):
            assert_equivalent(f"retry(limit={k}) of a success", retried, alone)
            _assert_runs(f"retry(limit={k}) of a success", runs, 1)
            continue
        _assert_runs(f"retry(limit={k}) of a failure", runs, k + 1)
        assert_equivalent_up_to_usage(f"retry(limit={k}) of a failure", retried, alone)
        expected = base
        for _ in range(k + 1):
            expected = expected.combined(each)
        assert_usage(f"retry(limit={k}) of a failure keeps every run's usage", retried, expected)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Retry(Node):
    """Run `child`; on a matching failure wait and run it again, at most
    `limit` more times, on the input state plus the usage spent so far. A
    rate-limit failure's `retry_after` is a floor on the wait."""

    kind: ClassVar[str] = "retry"
    laws: ClassVar[tuple[Law[...], ...]] = (Law("retry", check_retry),)

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
        return Run(self.child, state, _RetryFrame(self, state, env))

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
            return Wait(self._after(seconds))
        return Run(node.child, self.state, self)

    async def _after(self, seconds: float) -> Next:
        await self.env.clock.sleep(seconds)
        return Run(self.node.child, self.state, self)


# The law of `Fallback`.


def _refuse(state: StageState) -> StageState:
    """A `Probe` step that always fails, wrapping a `_Refused`, and spends nothing."""
    raise _Refused("refused on purpose by a law checker")


async def check_fallback(stage: Staged, other: Staged, state: StageState, env: Env) -> None:
    """`with_fallback` runs `other` exactly when `stage` fails, on the same input:

    - if `stage` succeeds, `stage.with_fallback(other) == stage`;
    - if `stage` fails, `stage.with_fallback(other)` is `other` run on the
      input plus the usage `stage` spent;
    - `failing.with_fallback(other) == other`, for a stage failing on an `E`
      (spending nothing), also with `catching=E` (matched through the cause);
    - a `catching` that matches nothing (a type or a predicate) leaves the
      outcome of `stage`, and of `failing`, as it is;
    - `stage.with_fallback(other).with_fallback(stage) ==
      stage.with_fallback(other.with_fallback(stage))` (associativity).
    """
    node, fallback = stage.node, other.node
    alone = await attempted(node, state, env)
    fallen = await attempted(Fallback(node, fallback, Exception), state, env)
    if isinstance(alone, Success):
        assert_equivalent("fallback of a success", fallen, alone)
    else:
        after = with_usage(state, usage_of(alone))
        assert_equivalent("fallback of a failure", fallen, await attempted(fallback, after, env))
    failing = Probe(_refuse)
    instead = await attempted(fallback, state, env)
    refused = await attempted(failing, state, env)
    assert_equivalent(
        "failing.with_fallback(other)",
        await attempted(Fallback(failing, fallback, Exception), state, env),
        instead,
    )
    assert_equivalent(
        "failing.with_fallback(other, catching=its error)",
        await attempted(Fallback(failing, fallback, _Refused), state, env),
        instead,
    )
    for label, catching in (("a type", _Unmatched), ("a predicate", _never_matching)):
        assert_equivalent(
            f"fallback catching nothing ({label})",
            await attempted(Fallback(node, fallback, catching), state, env),
            alone,
        )
        assert_equivalent(
            f"failing.with_fallback catching nothing ({label})",
            await attempted(Fallback(failing, fallback, catching), state, env),
            refused,
        )
    assert_equivalent(
        "fallback associativity",
        await attempted(Fallback(Fallback(node, fallback, Exception), node, Exception), state, env),
        await attempted(Fallback(node, Fallback(fallback, node, Exception), Exception), state, env),
    )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Fallback(Node):
    """Run `child`; on a matching failure run `fallback` on the same input
    state, plus the usage the failed run spent."""

    kind: ClassVar[str] = "fallback"
    laws: ClassVar[tuple[Law[...], ...]] = (Law("fallback", check_fallback),)

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
        return Run(self.child, state, _FallbackFrame(self, state))


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
        return Run(self.node.fallback, spent) if handled else outcome


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
            return Run(self.child, state, _ScopeFrame(self, state, scope, *open_ledger()))
        return Wait(self._watched(state, env))

    async def _watched(self, state: StageState, env: Env) -> Next:
        group = anyio.create_task_group()
        await group.__aenter__()
        frame = _WatchdogFrame(self, state, group, *open_ledger())
        group.start_soon(frame.watchdog, env)
        return Run(self.child, state, frame)

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
        return Wait(self._closed(outcome))

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

"""Control modifiers: conditional run, retry and fallback (`lash`), and timeouts."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

import anyio

from stagefx.clock import SystemClock
from stagefx.combinators._step import Outcome, Step, failure, require_count, resolve_bool
from stagefx.env import Env
from stagefx.errors import ModelRateLimitError, StageException, StageTimeoutError
from stagefx.state import StageState
from stagefx.tracing import annotate

__all__ = [
    "Catching",
    "Delay",
    "StateCondition",
    "when",
    "with_fallback",
    "with_retry",
    "with_timeout",
]


class StateCondition(Protocol):
    """`(*, state) -> bool`, sync or async."""

    def __call__(self, *, state: StageState) -> bool | Awaitable[bool]: ...


Catching: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[StageException], bool]
)
"""Which failures to handle: exception types (matched against the failure and
the user exception it wraps), or a predicate on the failure."""

Delay: TypeAlias = float | Callable[[int, StageException], float] | None
"""Seconds before a retry, or `(attempt, failure) -> seconds` (attempt from 0)."""


def _matcher(catching: Catching) -> Callable[[StageException], bool]:
    if isinstance(catching, type) and issubclass(catching, BaseException):
        types: tuple[type[BaseException], ...] = (catching,)
    elif isinstance(catching, tuple) and all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in catching
    ):
        types = catching
    elif callable(catching) and not isinstance(catching, type):
        return catching
    else:
        raise TypeError(f"catching must be exception types or a predicate, got {catching!r}")

    def matches(error: StageException) -> bool:
        return isinstance(error, types) or isinstance(error.__cause__, types)

    return matches


def when(step: Step, condition: bool | StateCondition, alternative: Step | None) -> Step:
    """Run `step` if `condition` holds, else `alternative` (or pass the state on)."""
    otherwise = alternative
    if condition is True:
        return step
    if condition is False:
        if otherwise is None:

            async def skip(state: StageState, env: Env) -> Outcome:
                return state

            return skip
        return otherwise
    if not callable(condition):
        raise TypeError(
            f"when(condition=...) needs a bool or a callable, got {type(condition).__name__}"
        )

    async def run(state: StageState, env: Env) -> Outcome:
        try:
            proceed = await resolve_bool(condition(state=state), "when condition")
        except Exception as error:
            return failure(error, state)
        if proceed:
            return await step(state, env)
        if otherwise is None:
            return state
        return await otherwise(state, env)

    return run


def with_retry(step: Step, limit: int, delay: Delay, catching: Catching) -> Step:
    """Run `step`; on a matching failure, wait and run it again, at most `limit`
    more times. A rate-limit failure's `retry_after` is a floor on the wait."""
    require_count(limit, "with_retry(limit=...)", 0)
    if delay is not None and not callable(delay) and not _is_seconds(delay):
        raise ValueError(f"with_retry(delay=...) needs seconds >= 0 or a callable, got {delay!r}")
    matches = _matcher(catching)

    def wait_for(attempt: int, error: StageException) -> float:
        seconds = delay(attempt, error) if callable(delay) else (delay or 0.0)
        if not _is_seconds(seconds):
            raise ValueError(f"retry delay must be seconds >= 0, got {seconds!r}")
        if isinstance(error, ModelRateLimitError) and error.retry_after is not None:
            seconds = max(seconds, error.retry_after)
        return float(seconds)

    async def run(state: StageState, env: Env) -> Outcome:
        attempt = 0
        while True:
            outcome = await step(state, env)
            if not isinstance(outcome, StageException) or attempt >= limit:
                annotate("attempts", attempt + 1)
                return outcome
            try:
                if not matches(outcome):
                    annotate("attempts", attempt + 1)
                    return outcome
                seconds = wait_for(attempt, outcome)
            except Exception as error:
                return failure(error, state)
            if seconds > 0:
                await env.clock.sleep(seconds)
            attempt += 1

    return run


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def with_fallback(step: Step, fallback: Step, catching: Catching) -> Step:
    """Run `step`; on a matching failure run `fallback` on the same input state."""
    matches = _matcher(catching)

    async def run(state: StageState, env: Env) -> Outcome:
        outcome = await step(state, env)
        if not isinstance(outcome, StageException):
            return outcome
        try:
            handled = matches(outcome)
        except Exception as error:
            return failure(error, state)
        annotate("fell_back", handled)
        return await fallback(state, env) if handled else outcome

    return run


def with_timeout(step: Step, seconds: float) -> Step:
    """Run `step` for at most `seconds` on the Env's clock; past that it is
    cancelled and the stage fails with `StageTimeoutError`."""
    if not _is_seconds(seconds) or seconds == 0:
        raise ValueError(f"with_timeout needs seconds > 0, got {seconds!r}")

    def timed_out(state: StageState) -> StageException:
        return StageTimeoutError(f"stage timed out after {seconds}s", state=state)

    async def run(state: StageState, env: Env) -> Outcome:
        if isinstance(env.clock, SystemClock):
            with anyio.move_on_after(seconds) as scope:
                return await step(state, env)
            assert scope.cancelled_caught  # the block only ends here by its own deadline
            return timed_out(state)
        return await _race_on_clock(step, state, env, seconds, timed_out)

    return run


async def _race_on_clock(
    step: Step,
    state: StageState,
    env: Env,
    seconds: float,
    timed_out: Callable[[StageState], StageException],
) -> Outcome:
    """A timeout on an injected clock: a watchdog task sleeps on it and cancels the step."""
    expired = False
    outcome: Outcome = state
    async with anyio.create_task_group() as group:

        async def watchdog() -> None:
            nonlocal expired
            await env.clock.sleep(seconds)
            expired = True
            group.cancel_scope.cancel()

        group.start_soon(watchdog)
        outcome = await step(state, env)
        group.cancel_scope.cancel()
    return timed_out(state) if expired else outcome

"""The one runtime shape every stage compiles to, and helpers to call user code.

A step is `async (state, env) -> StageState | StageException`: a failure is a
returned value, never a raised one, so combinators branch on a type check and
nothing is allocated on the success path. `Stage.run` lifts a step into the
`returns` reader effect; this shape is what makes sequences and loops run as
flat, stack-safe loops.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from stagefx.env import Env
from stagefx.errors import StageException, StageExecutionError
from stagefx.state import StageState

__all__ = [
    "Outcome",
    "Step",
    "failure",
    "identity",
    "require_count",
    "resolve",
    "resolve_bool",
]

T = TypeVar("T")

Outcome: TypeAlias = StageState | StageException
Step: TypeAlias = Callable[[StageState, Env], Awaitable[Outcome]]


async def identity(state: StageState, env: Env) -> Outcome:
    return state


async def resolve(value: T | Awaitable[T]) -> T:
    """The value of a sync-or-async callback's return."""
    if inspect.isawaitable(value):
        return await value
    return value


async def resolve_bool(value: bool | Awaitable[bool], what: str) -> bool:
    """A condition's answer, refusing anything but a bool with a clear message."""
    if value is True or value is False:
        return value
    if inspect.isawaitable(value):
        value = await value
        if value is True or value is False:
            return value
    raise TypeError(f"{what} must return a bool, got {type(value).__name__}")


def require_count(value: object, what: str, minimum: int) -> None:
    """Refuse at construction anything but an int >= `minimum` (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} needs an int >= {minimum}, got {value!r}")


def failure(error: Exception, state: StageState) -> StageException:
    """User code's exception as a failure value carrying the last good state."""
    return StageExecutionError.wrap(error, state)

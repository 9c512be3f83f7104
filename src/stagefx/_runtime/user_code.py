"""Calling user code from nodes: sync-or-async answers, checked counts, failures as values."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

from stagefx._core.errors import StageException, StageExecutionError
from stagefx._core.state import StageState

__all__ = ["failure", "require_callable", "require_count", "resolve", "resolve_bool"]

T = TypeVar("T")


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


def require_callable(value: object, what: str) -> None:
    """Refuse at construction a callback that cannot be called."""
    if not callable(value):
        raise TypeError(f"{what} needs a callable, got {type(value).__name__}")


def failure(error: Exception, state: StageState) -> StageException:
    """User code's exception as a failure value carrying the last good state."""
    return StageExecutionError.wrap(error, state)

"""Memory: where `memory_recall` finds a state and `memory_remember` keeps one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar, cast, final

from stagefx._core.state import StageState

__all__ = ["Memory", "MemoryRemembering", "StageMemory"]

Recalled = TypeVar("Recalled")
Remembered = TypeVar("Remembered")
Remembered_contra = TypeVar("Remembered_contra", contravariant=True)
T = TypeVar("T")


class StageMemory(Protocol):
    """What the memory stages need: `recall()` a `StageState`, `remember(*states)`.

    `Memory[StageState, StageState]` is one; so is any object with these two
    async methods (a database table, a session store).
    """

    async def recall(self) -> StageState:
        """The state the memory holds."""
        ...

    async def remember(self, *states: StageState) -> None:
        """Keep `states` (the memory stages pass one)."""
        ...


class MemoryRemembering(Protocol[Remembered_contra]):
    """`remembering(*items)`, sync or async."""

    def __call__(self, *items: Remembered_contra) -> Awaitable[None] | None: ...


async def _resolved(value: T | Awaitable[T]) -> T:
    if isinstance(value, Awaitable):
        return await cast("Awaitable[T]", value)  # isinstance leaves it Awaitable[Unknown]
    return value


@final
class Memory(Generic[Recalled, Remembered]):
    """A memory made of two functions, as draive's: `recalling()` gives what
    was kept, `remembering(*items)` keeps items (each sync or async).

    Example:
        ```python
        memory = Memory.volatile(StageState.empty)  # keeps the last state in memory
        pipeline = Stage.sequence(Stage.memory_recall(memory), step, Stage.memory_remember(memory))
        ```
    """

    __slots__ = ("_recalling", "_remembering")

    def __init__(
        self,
        *,
        recalling: Callable[[], Recalled | Awaitable[Recalled]],
        remembering: MemoryRemembering[Remembered],
    ) -> None:
        if not callable(recalling) or not callable(remembering):
            raise TypeError("Memory needs callable recalling= and remembering=")
        self._recalling = recalling
        self._remembering = remembering

    @classmethod
    def constant(cls, recalled: T) -> Memory[T, object]:
        """A memory that always recalls `recalled` and keeps nothing."""

        def recalling() -> T:
            return recalled

        def remembering(*items: object) -> None:
            return None

        return Memory(recalling=recalling, remembering=remembering)

    @classmethod
    def volatile(cls, initial: T) -> Memory[T, T]:
        """An in-memory memory: recalls the last item remembered (`initial`
        until something is). Lives as long as the object; not shared between
        processes."""
        kept = [initial]

        def recalling() -> T:
            return kept[0]

        def remembering(*items: T) -> None:
            if items:
                kept[0] = items[-1]

        return Memory(recalling=recalling, remembering=remembering)

    async def recall(self) -> Recalled:
        """What the memory holds."""
        return await _resolved(self._recalling())

    async def remember(self, *items: Remembered) -> None:
        """Keep `items`."""
        await _resolved(self._remembering(*items))

    def __repr__(self) -> str:
        return "Memory(...)"

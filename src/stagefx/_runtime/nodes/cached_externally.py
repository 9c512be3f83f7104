"""`cached_externally`: memoise a node in a store the user reads and writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, Protocol, TypeVar, cast, final

import attrs

from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage
from stagefx._env.env import Env
from stagefx._env.events import emit_result
from stagefx._env.tracing import annotate
from stagefx._runtime.node import Frame, Next, Node, Outcome, Run, SpanSpec, Wait
from stagefx._runtime.user_code import failure, require_callable, resolve

__all__ = ["CacheKeyMaking", "CacheReading", "CacheWriting", "CachedExternally"]

Key = TypeVar("Key")
Key_co = TypeVar("Key_co", covariant=True)


class CacheKeyMaking(Protocol[Key_co]):
    """`make_key(*, state) -> key`, sync or async (draive's `StageCacheKeyMaking`)."""

    def __call__(self, *, state: StageState) -> Key_co | Awaitable[Key_co]: ...


CacheReading = Callable[[Key], Awaitable[StageState | None] | StageState | None]
"""`read(key) -> StageState | None`, sync or async: a kept state, or None."""

CacheWriting = Callable[[Key, StageState], Awaitable[None] | None]
"""`write(key, state)`, sync or async: keep a state."""


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_make_key(_: object, __: object, value: CacheKeyMaking[Key]) -> None:
    require_callable(value, "cached_externally(make_key=...)")


def _check_read(_: object, __: object, value: CacheReading[Key]) -> None:
    require_callable(value, "cached_externally(read=...)")


def _check_write(_: object, __: object, value: CacheWriting[Key]) -> None:
    require_callable(value, "cached_externally(write=...)")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class CachedExternally(Node, Generic[Key]):
    """Before running `child`, `read(make_key(state=...))`: a state found is
    the outcome (the run spends nothing); else run `child` and `write` its
    successful state under the key before going on. Failures are not written;
    a failing `make_key` or `read` fails the stage, a failing `write` is noted
    on the span and the result kept."""

    kind: ClassVar[str] = "cached_externally"

    child: Node
    make_key: CacheKeyMaking[Key] = attrs.field(validator=_check_make_key)
    read: CacheReading[Key] = attrs.field(validator=_check_read)
    write: CacheWriting[Key] = attrs.field(validator=_check_write)

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def span(self) -> SpanSpec:
        return ("cached_externally", None)

    def start(self, state: StageState, env: Env) -> Next:
        return Wait(self._looked_up(state, env))

    async def _looked_up(self, state: StageState, env: Env) -> Next:
        try:
            key = await resolve(self.make_key(state=state))
            kept = cast(object, await resolve(self.read(key)))  # the user's: anything
        except Exception as error:
            return failure(error, state)
        if kept is not None:
            if not isinstance(kept, StageState):
                wrong = TypeError(
                    f"cached_externally read must give a StageState or None, "
                    f"got {type(kept).__name__}"
                )
                return failure(wrong, state)
            annotate("cache", "hit")
            emit_result(env.events, kept)
            return with_usage(kept, state.get(UsageTotals, UsageTotals()))  # a hit spends nothing
        annotate("cache", "miss")
        return Run(self.child, state, _WriteFrame(self.write, key))


@final
class _WriteFrame(Frame, Generic[Key]):
    __slots__ = ("key", "write")

    def __init__(self, write: CacheWriting[Key], key: Key) -> None:
        self.write = write
        self.key = key

    def resume(self, outcome: Outcome) -> Next:
        if isinstance(outcome, StageException):
            return outcome
        return Wait(self._written(outcome))

    async def _written(self, outcome: StageState) -> Next:
        try:
            await resolve(self.write(self.key, outcome))
        except Exception as error:  # the result is good; only keeping it failed
            annotate("cache_write_error", type(error).__name__)
        return outcome

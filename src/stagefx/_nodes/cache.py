"""`cached`: memoise a node by its input state, with single flight."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import ClassVar, final

import anyio
import attrs

from stagefx._cache_store import CacheStore, MemoryCacheStore
from stagefx._env import Env
from stagefx._errors import StageException
from stagefx._nodes._base import Detail, Frame, Next, Node, Outcome, SpanSpec
from stagefx._nodes._calls import failure, require_count
from stagefx._state import StageState
from stagefx._tracing import annotate
from stagefx._usage import UsageTotals, with_usage, without_usage

__all__ = ["Cached"]


@attrs.frozen(slots=True, eq=False)
class _ByEquality:
    """A key for a state holding unhashable values: all share a bucket, equality decides."""

    state: StageState

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByEquality) and other.state == self.state


def _key(state: StageState) -> Hashable:
    try:
        hash(state)
    except TypeError:
        return _ByEquality(state)
    return state


@attrs.define(slots=True)
class _Flight:
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: Outcome | None = None


def _check_expiration(_: object, __: object, value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"cached(expiration=...) needs None or seconds > 0, got {value!r}")


def _check_limit(_: object, __: object, value: int | None) -> None:
    if value is not None:
        require_count(value, "cached(limit=...)", 1)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Cached(Node):
    """Remember `child`'s successful outputs by input state, each for
    `expiration` seconds on the Env's clock, in the Env's `CacheStore` if it has
    one, else in this node's own memory (at most `limit` entries, least
    recently used go first). `key` names the entries in a shared store
    (default: this node). Concurrent runs with an equal input share one run;
    failures are not kept."""

    kind: ClassVar[str] = "cached"
    laws: ClassVar[tuple[str, ...]] = ("check_cached_determinism",)

    child: Node
    limit: int | None = attrs.field(validator=_check_limit)
    expiration: float | None = attrs.field(validator=_check_expiration)
    key: str | None
    own: MemoryCacheStore = attrs.field(init=False)
    flights: dict[Hashable, _Flight] = attrs.field(init=False, factory=dict)

    @own.default
    def _own(self) -> MemoryCacheStore:
        return MemoryCacheStore(self.limit)

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, Detail]:
        details: dict[str, Detail] = {}
        if self.limit is not None:
            details["limit"] = self.limit
        if self.expiration is not None:
            details["expiration"] = self.expiration
        if self.key is not None:
            details["key"] = self.key
        return details

    def span(self) -> SpanSpec:
        return ("cached", None)

    def start(self, state: StageState, env: Env) -> Next:
        return self._looked_up(state, env)

    async def _looked_up(self, state: StageState, env: Env) -> Next:
        provided = env.get(CacheStore)
        store = self.own if provided is None else provided  # not `or`: an empty store is falsy
        # Usage is no input: a run after a retry must still find its entry.
        key = (self if self.key is None else self.key, _key(without_usage(state)))
        usage = state.get(UsageTotals, UsageTotals())
        while True:
            try:
                kept = await store.load(key, env.clock.now())
            except Exception as error:
                return failure(error, state)
            if kept is not None:
                annotate("cache", "hit")
                return with_usage(kept, usage)  # a hit spends nothing
            flight = self.flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.outcome is not None:
                annotate("cache", "shared")
                shared = flight.outcome  # the leader's run: its spend is the leader's to count
                if isinstance(shared, StageException):
                    return shared
                return with_usage(shared, usage)
            # The leading run was cancelled: try again, perhaps as the leader.
        flight = self.flights[key] = _Flight()
        annotate("cache", "miss")
        return (self.child, state, _CachedFrame(self, key, flight, store, env))


@final
class _CachedFrame(Frame):
    __slots__ = ("env", "flight", "key", "node", "store")

    def __init__(
        self, node: Cached, key: Hashable, flight: _Flight, store: CacheStore, env: Env
    ) -> None:
        self.node = node
        self.key = key
        self.flight = flight
        self.store = store
        self.env = env

    def resume(self, outcome: Outcome) -> Next:
        return self._kept(outcome)

    async def _kept(self, outcome: Outcome) -> Next:
        try:
            self.flight.outcome = outcome
            if not isinstance(outcome, StageException):
                expiration = self.node.expiration
                now = self.env.clock.now()
                expires = math.inf if expiration is None else now + expiration
                try:
                    await self.store.store(self.key, outcome, expires)
                except Exception as error:  # the result is good; only keeping it failed
                    annotate("cache_store_error", type(error).__name__)
            return outcome
        finally:
            self._land()

    async def abort(self, error: BaseException) -> Outcome | None:
        self._land()
        return None

    def _land(self) -> None:
        if self.node.flights.get(self.key) is self.flight:
            del self.node.flights[self.key]
        self.flight.done.set()

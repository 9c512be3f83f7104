"""`cached`: memoise a stage by its input state, with single flight."""

from __future__ import annotations

import math
from collections.abc import Hashable

import anyio
import attrs

from stagefx.cache_store import CacheStore, MemoryCacheStore
from stagefx.combinators._step import Outcome, Step, require_count
from stagefx.env import Env
from stagefx.errors import StageException
from stagefx.state import StageState
from stagefx.tracing import annotate

__all__ = ["cached"]


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


def cached(
    step: Step, limit: int | None, expiration: float | None, name: Hashable | None = None
) -> Step:
    """Remember `step`'s successful outputs by input state, each for `expiration`
    seconds on the Env's clock, in the Env's `CacheStore` if it has one, else in
    the stage's own memory (at most `limit` entries, least recently used go
    first). `name` keys the entries in a shared store (default: this stage
    value). Concurrent calls with an equal input share one run; failures are
    not kept."""
    if limit is not None:
        require_count(limit, "cached(limit=...)", 1)
    if expiration is not None and (
        isinstance(expiration, bool)
        or not isinstance(expiration, int | float)
        or not math.isfinite(expiration)
        or expiration <= 0
    ):
        raise ValueError(f"cached(expiration=...) needs None or seconds > 0, got {expiration!r}")
    own = MemoryCacheStore(limit)
    stage_key: Hashable = object() if name is None else name
    flights: dict[Hashable, _Flight] = {}

    async def run(state: StageState, env: Env) -> Outcome:
        provided = _store_of(env)
        store = own if provided is None else provided  # not `or`: an empty store is falsy
        key = (stage_key, _key(state))
        while True:
            kept = await store.load(key, env.clock.now())
            if kept is not None:
                annotate("cache", "hit")
                return kept
            flight = flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.outcome is not None:
                annotate("cache", "shared")
                return flight.outcome
            # The leading call was cancelled: try again, perhaps as the leader.

        flight = flights[key] = _Flight()
        annotate("cache", "miss")
        try:
            outcome = await step(state, env)
            flight.outcome = outcome
            if not isinstance(outcome, StageException):
                expires = math.inf if expiration is None else env.clock.now() + expiration
                await store.store(key, outcome, expires)
            return outcome
        finally:
            del flights[key]
            flight.done.set()

    return run


def _store_of(env: Env) -> CacheStore | None:
    for provider in reversed(env.providers):
        if isinstance(provider, CacheStore):
            return provider
    return None

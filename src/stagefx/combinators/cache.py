"""`cached`: memoise a stage by its input state, with single flight."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

import anyio
import attrs

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


def cached(step: Step, limit: int | None, expiration: float | None) -> Step:
    """Remember `step`'s successful outputs by input state: at most `limit` entries
    (least recently used go first), each for `expiration` seconds on the Env's clock.
    Concurrent calls with an equal input share one run; failures are not kept."""
    if limit is not None:
        require_count(limit, "cached(limit=...)", 1)
    if expiration is not None and (
        isinstance(expiration, bool)
        or not isinstance(expiration, int | float)
        or not math.isfinite(expiration)
        or expiration <= 0
    ):
        raise ValueError(f"cached(expiration=...) needs None or seconds > 0, got {expiration!r}")
    entries: OrderedDict[Hashable, tuple[float, StageState]] = OrderedDict()
    flights: dict[Hashable, _Flight] = {}

    async def run(state: StageState, env: Env) -> Outcome:
        key = _key(state)
        while True:
            hit = entries.get(key)
            if hit is not None:
                if hit[0] > env.clock.now():
                    entries.move_to_end(key)
                    annotate("cache", "hit")
                    return hit[1]
                del entries[key]
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
                entries[key] = (expires, outcome)
                if limit is not None and len(entries) > limit:
                    entries.popitem(last=False)
            return outcome
        finally:
            del flights[key]
            flight.done.set()

    return run

"""A virtual clock: `sleep` returns at once and moves time forward, in deadline order."""

from __future__ import annotations

import heapq
import itertools
from typing import final

import anyio.lowlevel

from stagefx._env.clock import Clock

__all__ = ["VirtualClock"]

_SETTLE_ROUNDS = 8
"""Checkpoints a sleeper yields before it may jump: enough for tasks started
alongside it to reach their own sleep and register an earlier deadline."""


@final
class VirtualClock(Clock):
    """Time that only passes when a task sleeps on it.

    Put it in the Env (`Env.of(VirtualClock())` or `ctx.scope(..., VirtualClock())`)
    and retries, timeouts and cache expiry run instantly and deterministically.
    Concurrent sleepers wake in deadline order. `sleeps` records every request.

    Time jumps as soon as the sleepers are the only tasks ready to run: it
    cannot see I/O in flight. A `with_timeout` watchdog on this clock around a
    real network call fires before the call can answer; time such stages on
    the system clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._waiting: list[tuple[float, int]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (for cache expiry between runs)."""
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Return once this sleeper is next by deadline, moving time to its deadline."""
        self.sleeps.append(seconds)
        entry = (self._now + max(seconds, 0.0), next(self._order))
        heapq.heappush(self._waiting, entry)
        try:
            while True:
                await anyio.lowlevel.checkpoint()
                if self._waiting[0] is not entry:
                    continue
                for _ in range(_SETTLE_ROUNDS):
                    await anyio.lowlevel.checkpoint()
                if self._waiting[0] is entry:
                    break
        finally:
            self._waiting.remove(entry)
            heapq.heapify(self._waiting)
        self._now = max(self._now, entry[0])

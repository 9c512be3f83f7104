"""Where `cached` stages keep their outputs: a provider, or each stage's own memory."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import final

from stagefx._core.state import StageState

__all__ = ["CacheStore", "MemoryCacheStore"]


class CacheStore:
    """Keeps cached outputs. Put one in the Env to share entries between stage
    values and runs; name the entries with `cached(key=...)` to share them
    across processes. Keys are `(stage key, input digest)` pairs: the stage's
    `key` (or the stage itself) and 32 bytes digesting the input state (its
    usage left out). The digest is the same in every process for equal values
    of types importable by name; values compared by identity, and instances of
    classes no name finds, get digests that only their own process can match.

    A role: subclass it to give an Env your store. An object that merely has
    `load` and `store` is only a value to the Env.
    """

    async def load(self, key: Hashable, now: float) -> StageState | None:
        """The output kept under `key`, unless absent or expired at `now`."""
        raise NotImplementedError(f"{type(self).__name__} must define load()")

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        """Keep `value` under `key` until `expires_at` (Env clock seconds)."""
        raise NotImplementedError(f"{type(self).__name__} must define store()")


SWEEP_EVERY = 64
"""`MemoryCacheStore` looks for expired entries at most once per this many
stores (or per half its size, if more), and only once the earliest expiry
it holds has passed: a sweep costs O(1) per store, amortised."""


@final
class MemoryCacheStore(CacheStore):
    """An in-memory store: at most `limit` entries, least recently used go first.

    Expired entries are dropped when next looked up, and swept away as new
    ones are stored (so a store without `limit` keeps no more than about
    twice its live entries). Safe to share between threads.

    Each cached stage has one of its own unless the Env provides a store.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._entries: OrderedDict[Hashable, tuple[float, StageState]] = OrderedDict()
        self._lock = threading.Lock()
        self._now = -math.inf  # the latest time a load was asked at
        self._earliest = math.inf  # no entry expires before this
        self._stored = 0  # stores since the last sweep

    async def load(self, key: Hashable, now: float) -> StageState | None:
        """The output kept under `key`, unless absent or expired at `now`."""
        with self._lock:
            self._now = now
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[1]

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        """Keep `value` under `key` until `expires_at`, evicting the oldest past
        `limit`, and sweep expired entries from time to time."""
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            self._earliest = min(self._earliest, expires_at)
            self._stored += 1
            if self._earliest <= self._now and self._stored >= max(
                SWEEP_EVERY, len(self._entries) // 2
            ):
                self._sweep()
            if self._limit is not None:
                while len(self._entries) > self._limit:
                    self._entries.popitem(last=False)

    def _sweep(self) -> None:
        now = self._now
        self._entries = OrderedDict(
            (key, entry) for key, entry in self._entries.items() if entry[0] > now
        )
        self._earliest = min((entry[0] for entry in self._entries.values()), default=math.inf)
        self._stored = 0

    def __len__(self) -> int:
        return len(self._entries)

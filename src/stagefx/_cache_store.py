"""Where `cached` stages keep their outputs: a provider, or each stage's own memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import final

from stagefx._state import StageState

__all__ = ["CacheStore", "MemoryCacheStore"]


class CacheStore:
    """Keeps cached outputs. Put one in the Env to share entries between stage
    values and runs; name the entries with `cached(key=...)` to share them
    across processes. Keys are `(stage key, input state)` pairs.

    A role: subclass it to give an Env your store. An object that merely has
    `load` and `store` is only a value to the Env.
    """

    async def load(self, key: Hashable, now: float) -> StageState | None:
        """The output kept under `key`, unless absent or expired at `now`."""
        raise NotImplementedError(f"{type(self).__name__} must define load()")

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        """Keep `value` under `key` until `expires_at` (Env clock seconds)."""
        raise NotImplementedError(f"{type(self).__name__} must define store()")


@final
class MemoryCacheStore(CacheStore):
    """An in-memory store: at most `limit` entries, least recently used go first.

    Each cached stage has one of its own unless the Env provides a store.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._entries: OrderedDict[Hashable, tuple[float, StageState]] = OrderedDict()

    async def load(self, key: Hashable, now: float) -> StageState | None:
        """The output kept under `key`, unless absent or expired at `now`."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1]

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        """Keep `value` under `key` until `expires_at`, evicting the oldest past `limit`."""
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        if self._limit is not None and len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

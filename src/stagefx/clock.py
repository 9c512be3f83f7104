"""Time as a provider: stages read and wait on the `Env`'s clock, never the real one."""

from __future__ import annotations

import time
from typing import Protocol, final, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What retries, timeouts and cache expiry use to tell and pass time."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`; must be cancellable."""
        ...


@final
class SystemClock:
    """Real time: a monotonic clock, and the event loop's sleep."""

    now = staticmethod(time.monotonic)  # a builtin: no Python frame on the span path

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of real time (cancellable)."""
        await anyio.sleep(seconds)

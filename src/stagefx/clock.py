"""Time as a provider: stages read and wait on the `Env`'s clock, never the real one."""

from __future__ import annotations

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
    """The event loop's own clock."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

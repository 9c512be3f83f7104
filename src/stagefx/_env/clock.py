"""Time as a provider: stages read and wait on the `Env`'s clock, never the real one."""

from __future__ import annotations

import time
from typing import final

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock:
    """What retries, timeouts and cache expiry use to tell and pass time.

    A role: subclass it to give an Env your clock (`Env.of(MyClock())`). An
    object that merely has `now` and `sleep` is only a value to the Env.
    """

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        raise NotImplementedError(f"{type(self).__name__} must define now()")

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`; must be cancellable."""
        raise NotImplementedError(f"{type(self).__name__} must define sleep()")


@final
class SystemClock(Clock):
    """Real time: a monotonic clock, and the event loop's sleep."""

    # A builtin, so no Python frame on the span path; called as `self.now()`, like Clock.now.
    now = staticmethod(time.monotonic)  # pyright: ignore[reportAssignmentType]  # pyright compares it unbound, with Clock.now's `self`

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of real time (cancellable)."""
        await anyio.sleep(seconds)

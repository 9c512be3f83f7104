"""Async iteration that is safe to leave early: `produced` yields what a task
produces; `close_iterator` closes whatever an iterator left early holds.

An async generator that yields from inside a task group breaks when its
reader leaves early: `aclose` throws `GeneratorExit` at the yield, and the
task group wraps it in an exception group, which is neither a clean exit
nor the error that made the reader leave. Here the producer runs in a task
group the generator owns, items come over a memory channel, and leaving
early cancels the producer, waits for it, and ends quietly.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["close_iterator", "produced"]

T = TypeVar("T")


async def produced(
    produce: Callable[[MemoryObjectSendStream[T]], Awaitable[None]], buffer: float
) -> AsyncGenerator[T]:
    """What `produce` sends on the channel it is given (at most `buffer` items
    waiting), as it sends it; the generator ends when `produce` returns.
    `produce` must not raise (what it raises would end the reader's loop)."""
    send, receive = anyio.create_memory_object_stream[T](buffer)

    async def producing() -> None:
        with send:  # closing it ends the reader's loop
            await produce(send)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(producing)
            with receive:
                async for item in receive:
                    yield item
    except BaseExceptionGroup as group:
        left, rest = group.split(GeneratorExit)
        if (
            rest is not None
            and len(rest.exceptions) == 1
            and not isinstance(rest.exceptions[0], BaseExceptionGroup)
        ):
            raise rest.exceptions[0] from None  # KeyboardInterrupt as it is, not in a group
        if rest is not None:
            raise rest from None
        if left is not None:  # the reader left: the producer is cancelled and done
            raise GeneratorExit from None
        raise


async def close_iterator(stream: object) -> None:
    """Close what an iterator left early holds (a model stream's HTTP response,
    its layers' resources, a user's generator of inputs): an async generator's
    `aclose`, or a coroutine or generator's `close`."""
    if inspect.iscoroutine(stream) or inspect.isgenerator(stream):
        stream.close()
        return
    close: object = getattr(stream, "aclose", None)
    if callable(close):
        closed = close()
        if inspect.isawaitable(closed):
            await closed

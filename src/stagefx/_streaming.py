"""`Stage.stream`: a run as its events, while it runs, ending with `Finished`.

The run is the one `attempt` makes, in a task of a task group the generator
opens; nodes emit to an unbounded channel in the run's Env, which the
generator reads. Leaving early (`aclose`, or the reader cancelled) cancels
the run at once: the task group waits for it to unwind (its model streams
closed) before the generator is done, so no task outlives the stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
from returns.result import Failure, Result, Success

from stagefx._env import Env
from stagefx._errors import StageException
from stagefx._events import EventSink, Finished, StageEvent, event_channel
from stagefx._interpreter import interpret
from stagefx._nodes._base import Node
from stagefx._state import StageState

__all__ = ["stream_events", "stream_run"]

Outcome = Result[StageState, StageException]


def stream_run(node: Node, state: StageState, env: Env) -> AsyncGenerator[StageEvent]:
    """The events of running `node` on `state` in `env`; `Finished` last."""

    async def run(events: EventSink) -> Outcome:
        outcome = await interpret(node, state, env.streaming_to(events))
        return Failure(outcome) if isinstance(outcome, StageException) else Success(outcome)

    return stream_events(run)


async def stream_events(
    run: Callable[[EventSink], Awaitable[Outcome]],
) -> AsyncGenerator[StageEvent]:
    """What `run` emits to the sink it is given, as it emits it, then
    `Finished` with its outcome. `run` must return its failures, not raise them."""
    send, receive = event_channel()
    outcomes: list[Outcome] = []

    async def running() -> None:
        with send:  # closing it ends the reader's loop
            outcomes.append(await run(EventSink(send)))

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(running)
            with receive:
                async for event in receive:
                    yield event
    except BaseExceptionGroup as group:
        # The reader left (`aclose` throws GeneratorExit at the yield): the
        # task group has cancelled the run and waited for it; leave quietly.
        left, rest = group.split(GeneratorExit)
        if rest is not None:
            raise rest from None
        if left is not None:
            raise GeneratorExit from None
        raise
    yield Finished(outcomes[0])

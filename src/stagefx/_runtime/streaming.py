"""`Stage.stream`: a run as its events, while it runs, ending with `Finished`.

The run is the one `attempt` makes, in a task the generator owns
(`produced`); nodes emit to an unbounded channel in the run's Env, which the
generator reads. Leaving early (`aclose`, or the reader cancelled) cancels
the run at once and waits for it to unwind (its model streams closed), so no
task outlives the stream.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Awaitable, Callable

from anyio.streams.memory import MemoryObjectSendStream
from returns.result import Failure, Result, Success

from stagefx._core.errors import StageException
from stagefx._core.iteration import produced
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.events import EventSink, Finished, StageEvent
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Node

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
    outcomes: list[Outcome] = []

    async def running(send: MemoryObjectSendStream[StageEvent]) -> None:
        outcomes.append(await run(EventSink(send)))

    # Unbounded: nodes never wait to emit.
    async with contextlib.aclosing(produced(running, math.inf)) as events:
        async for event in events:
            yield event
    yield Finished(outcomes[0])

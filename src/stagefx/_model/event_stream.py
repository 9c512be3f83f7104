"""A provider's stream of events, read into a model stream: text deltas as
they arrive, then the whole answer.

The SDK reads the server-sent events (as JSON); a `StreamReader`, one per
wire format, reads each into the text it carries and, at the end, the whole
answer, decoded as a whole body is, so a streamed answer and a whole one can
never differ. `relay` is the loop between them: an error object the server
sends in place of an event is the failure it names, a stream cut short or
unreadable ends with a failure, and leaving early closes the HTTP response at
once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Final, Protocol

import anyio

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure
from stagefx._model.generative import ModelStreamItem

__all__ = ["CLOSE_SECONDS", "Events", "StreamReader", "relay", "rest_of"]


class StreamReader(Protocol):
    """Reads one stream's events, in order."""

    @property
    def done(self) -> bool:
        """Whether the answer is complete: whatever follows can be left unread."""
        ...

    def feed(self, event: object) -> str:
        """Take the stream's next event (JSON); the text delta it carries, or ""."""
        ...

    def fail(self, error: object) -> None:
        """The server sent an error object in place of an event: the answer
        is the failure it names (the stream is then done)."""
        ...

    def finish(self) -> tuple[str, ModelOutput | ModelFailure]:
        """A last text delta (usually ""), and the whole answer."""
        ...


class Events(Protocol):
    """An SDK's stream: the events, as JSON, over an open HTTP response."""

    async def __anext__(self) -> object: ...

    async def close(self) -> None: ...


CLOSE_SECONDS: Final = 1.0
"""How long closing a stream's HTTP response may take (shielded from cancellation)."""

_DRAIN_SECONDS: Final = 0.1
"""How long what follows a stream's last event is read, so that a
well-behaved server's connection goes back to the pool."""


async def relay(
    events: Events,
    reader: StreamReader,
    *,
    error_object: Callable[[Exception], object],
    broken: Callable[[Exception], ModelFailure],
    answered: Callable[[ModelOutput | ModelFailure], ModelOutput | ModelFailure],
    drain: bool = False,
) -> AsyncGenerator[ModelStreamItem]:
    """`events` read by `reader`: its text deltas as they arrive, then the
    whole answer as `answered` makes it, last. `events` is closed at the end,
    or at once when the stream is left early.

    An error the SDK raises in place of an event is read by `error_object`:
    the error object the server sent (which `reader.fail`s the stream), or
    None when the stream itself broke. A stream that broke (cut, timed out,
    not JSON, not the shape) ends with `broken`'s failure. With `drain`, what
    follows the answer's last event is read briefly before the response is
    closed, so that its connection can be used again.
    """
    final: ModelOutput | ModelFailure | None = None  # set early when the stream breaks
    try:
        while not reader.done:
            try:
                delta = reader.feed(await events.__anext__())
            except StopAsyncIteration:
                break
            except Exception as error:
                sent = error_object(error)
                if sent is None:  # cut, timed out, not JSON, not UTF-8, not the shape
                    final = broken(error)
                    break
                reader.fail(sent)
                continue
            if delta:
                yield delta
        if drain and reader.done:
            await _drain(events)
        if final is None:
            try:
                tail, answer = reader.finish()
            except Exception as error:  # what the events add up to is not the API's shape
                final = broken(error)
            else:
                if tail:
                    yield tail
                final = answered(answer)
    finally:
        with anyio.move_on_after(CLOSE_SECONDS, shield=True), contextlib.suppress(Exception):
            await events.close()  # closing a broken connection changes no answer
    yield final


async def _drain(events: Events) -> None:
    """Read the rest of a stream whose answer is complete, briefly."""
    with anyio.move_on_after(_DRAIN_SECONDS):
        try:
            while True:
                await events.__anext__()
        except Exception:  # StopAsyncIteration when the stream ends, as it should
            return


def rest_of(
    final: ModelOutput, streamed: Sequence[str], differs: str
) -> tuple[str, ModelOutput | ModelFailure]:
    """The text of the whole answer `final` past the deltas `streamed` (the
    last delta, usually ""), and `final`; text that contradicts the deltas is
    a broken stream: `unavailable`, saying `differs`."""
    whole, said = final.content.as_string(), "".join(streamed)
    if not whole.startswith(said):
        return "", ModelFailure("unavailable", differs)
    return whole[len(said) :], final

"""Server-sent events, the fake server's side: what a streamed answer is made of.

Each API's codec turns a whole answer into its `StreamEvent`s (`encode_stream`);
the server writes them one by one. `Split` cuts text into the pieces sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import final

import attrs

from stagefx.openai._wire import JSON

__all__ = ["Split", "StreamEvent", "splitter"]

Split = Callable[[str], Sequence[str]]
"""Cuts a text into the pieces streamed one by one; they join to the text."""


@final
@attrs.frozen(slots=True)
class StreamEvent:
    """One server-sent event of a streamed answer.

    `delta`: it carries a piece of text or of tool-call arguments (the chunks a
    streaming fault counts). `end`: it belongs to the end of the answer, which
    a streaming fault never lets through.
    """

    data: JSON | None  # None: the `[DONE]` sentinel that ends a chat stream
    name: str | None = None  # the SSE `event:` field (Responses API)
    delta: bool = False
    end: bool = False

    @property
    def text(self) -> str:
        """The event's data line as sent: JSON, or `[DONE]`."""
        return "[DONE]" if self.data is None else json.dumps(self.data)

    def encode(self) -> bytes:
        """The event on the wire, blank line included."""
        head = "" if self.name is None else f"event: {self.name}\n"
        return f"{head}data: {self.text}\n\n".encode()


def splitter(chunk_size: int | Split) -> Split:
    """`chunk_size` as a `Split`: an int cuts every that many characters; a
    function is used as it is."""
    if callable(chunk_size):
        return chunk_size
    size = chunk_size

    def split(text: str) -> Sequence[str]:
        return [text[start : start + size] for start in range(0, len(text), size)]

    return split

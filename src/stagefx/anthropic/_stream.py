"""Streamed answers, the provider's side: the Messages API's server-sent
events read into text deltas and, at the end, the whole message.

`MessageStream` is fed the stream's events (JSON) in order: `message_start`,
then per content block `content_block_start`, its `content_block_delta`s
(`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`) and
`content_block_stop`, then `message_delta` (stop reason, output tokens) and
`message_stop`. It rebuilds the message body they stand for and decodes it
with the same `decode_response` a whole body goes through, so a streamed
answer and a whole one can never differ. A stream without `message_stop`
was cut short. Shapes that are not the API's raise `MalformedBody`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure
from stagefx._model.body import MalformedBody, mapping, text
from stagefx._model.event_stream import rest_of
from stagefx.anthropic import _messages as messages
from stagefx.anthropic._errors import body_failure
from stagefx.anthropic._wire import JSON, OutputTool, arguments_of

__all__ = ["MessageStream"]


@attrs.define
class _Block:
    """One content block as its events build it."""

    start: JSON
    pieces: list[str] = attrs.field(factory=list[str])
    signature: list[str] = attrs.field(factory=list[str])


@final
class MessageStream:
    """Reads one stream's events; see the module's docstring.

    Text deltas are given as they arrive. With structured output, the output
    tool's input JSON is the answer's text, so its pieces are given as they
    arrive instead, and text said beside it is held back: it is given at the
    end (`finish`) only when the model answered in text after all.
    """

    def __init__(self, model: str, tool: OutputTool | None) -> None:
        self._model = model
        self._tool = tool
        self._message: JSON | None = None
        self._blocks: dict[int, _Block] = {}
        self._delta: JSON = {}
        self._usage: JSON = {}
        self._streamed: list[str] = []
        self._failure: ModelFailure | None = None
        self._stopped = False

    @property
    def done(self) -> bool:
        """Whether the answer is complete: whatever follows can be left unread."""
        return self._stopped or self._failure is not None

    def feed(self, event: object) -> str:
        """Take the stream's next event; the text delta it carries, or ""."""
        fields = mapping(event, "event")
        kind = fields.get("type")
        if kind == "message_start":
            message = mapping(fields.get("message"), "message_start.message")
            self._message = dict(message)
            self._usage.update(mapping(message.get("usage") or {}, "message.usage"))
        elif kind == "content_block_start":
            index = _index(fields)
            block = mapping(fields.get("content_block"), "content_block")
            self._blocks[index] = _Block(dict(block))
        elif kind == "content_block_delta":
            return self._grow(fields)
        elif kind == "message_delta":
            self._delta.update(mapping(fields.get("delta") or {}, "message_delta.delta"))
            self._usage.update(mapping(fields.get("usage") or {}, "message_delta.usage"))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            self.fail(fields)
        return ""  # ping, content_block_stop, and events added to the API later

    def _grow(self, event: Mapping[str, object]) -> str:
        block = self._blocks.get(_index(event))
        if block is None:
            raise MalformedBody("a content_block_delta for a block that did not start")
        delta = mapping(event.get("delta"), "content_block_delta.delta")
        kind = delta.get("type")
        if kind == "text_delta":
            piece = text(delta.get("text"), "text_delta.text")
            block.pieces.append(piece)
            return self._given(piece) if self._tool is None else ""
        if kind == "input_json_delta":
            piece = text(delta.get("partial_json"), "input_json_delta.partial_json")
            block.pieces.append(piece)
            return self._given(piece) if self._answers(block) else ""
        if kind == "thinking_delta":
            block.pieces.append(text(delta.get("thinking"), "thinking_delta.thinking"))
        elif kind == "signature_delta":
            block.signature.append(text(delta.get("signature"), "signature_delta.signature"))
        return ""

    def _answers(self, block: _Block) -> bool:
        """Whether `block` is the output tool's call, whose input is the answer."""
        tool = self._tool
        return (
            tool is not None
            and not tool.wrapped
            and block.start.get("type") == "tool_use"
            and block.start.get("name") == tool.name
        )

    def _given(self, piece: str) -> str:
        self._streamed.append(piece)
        return piece

    def fail(self, error: object) -> None:
        """The server sent an error in place of an event: the answer is the
        failure it names (the stream is then done)."""
        self._failure = body_failure(error, "the stream failed")

    def finish(self) -> tuple[str, ModelOutput | ModelFailure]:
        """A last text delta (what was held back, usually ""), and the whole answer."""
        if self._failure is not None:
            return "", self._failure
        if self._message is None or not self._stopped:
            return "", ModelFailure(
                "unavailable", "the stream from Anthropic ended before the message was complete"
            )
        content: list[JSON] = []
        answer: str | None = None
        for _, block in sorted(self._blocks.items()):
            content.append(_built(block))
            if self._answers(block):
                answer = "".join(block.pieces)
        body: JSON = {
            **self._message,
            **self._delta,
            "content": content,
            "usage": self._usage,
        }
        final = messages.decode_response(body, self._model, self._tool, answer)
        if isinstance(final, ModelFailure):
            return "", final
        return rest_of(
            final, self._streamed, "Anthropic's streamed text differs from the text of its message"
        )


def _index(event: Mapping[str, object]) -> int:
    index = event.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise MalformedBody("expected an integer at index")
    return index


def _built(block: _Block) -> JSON:
    """The whole content block its start and deltas add up to."""
    built = dict(block.start)
    kind = built.get("type")
    joined = "".join(block.pieces)
    if kind == "text":
        built["text"] = f"{built.get('text') or ''}{joined}"
    elif kind == "tool_use":
        built["input"] = arguments_of(joined) if joined else built.get("input") or {}
    elif kind == "thinking":
        built["thinking"] = f"{built.get('thinking') or ''}{joined}"
        built["signature"] = f"{built.get('signature') or ''}{''.join(block.signature)}"
    return built

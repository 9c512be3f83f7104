"""Streamed answers, the provider's side: the events of one stream read into
text deltas and, at the end, the whole answer.

Each API's reader (a `stagefx._model.event_stream.StreamReader`) is fed the
stream's JSON events in order. `feed` returns the text delta an event carries
(or ""); `finish` gives the whole answer, decoded by the same
`decode_response` a whole body goes through, so a streamed answer and a
whole one can never differ. Shapes that are not the API's raise
`MalformedBody`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure
from stagefx._model.body import MalformedBody, items, mapping, text
from stagefx._model.event_stream import rest_of
from stagefx.openai import _chat as chat
from stagefx.openai import _responses as responses
from stagefx.openai._errors import body_failure
from stagefx.openai._wire import JSON

__all__ = ["ChatStream", "ResponsesStream"]


def _cut_short(what: str) -> ModelFailure:
    return ModelFailure(
        "unavailable", f"the stream from OpenAI ended before the {what} was complete"
    )


@final
class ResponsesStream:
    """The Responses API's events: `response.output_text.delta` carries text;
    `response.completed` (or `.failed`, `.incomplete`) carries the whole
    response; an `error` event is the failure its code names."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._streamed: list[str] = []
        self._final: ModelOutput | ModelFailure | None = None

    @property
    def done(self) -> bool:
        return self._final is not None

    def feed(self, event: object) -> str:
        fields = mapping(event, "event")
        kind = fields.get("type")
        if kind == "response.output_text.delta":
            delta = text(fields.get("delta"), "response.output_text.delta.delta")
            self._streamed.append(delta)
            return delta
        if kind in ("response.completed", "response.failed", "response.incomplete"):
            self._final = responses.decode_response(fields.get("response"), self._model)
        elif kind == "error":
            error = {"code": fields.get("code"), "message": fields.get("message")}
            self._final = body_failure(error, "the response failed")
        return ""

    def fail(self, error: object) -> None:
        self._final = body_failure(error, "the response failed")

    def finish(self) -> tuple[str, ModelOutput | ModelFailure]:
        """The whole response; when its text goes on past what was streamed
        (deltas left out), the rest as a last delta. Text that contradicts the
        deltas is a broken stream: `unavailable`."""
        final = self._final
        if final is None:
            return "", _cut_short("response")
        if isinstance(final, ModelFailure):
            return "", final
        return rest_of(
            final, self._streamed, "OpenAI's streamed text differs from the text of its response"
        )


@attrs.define
class _Call:
    """One tool call as its deltas build it."""

    identifier: str = ""
    name: str = ""
    arguments: list[str] = attrs.field(factory=list[str])


def _grown(held: str, piece: object, where: str) -> str:
    """`held` with `piece` appended; a piece repeating all of `held` (as some
    compatible servers resend a call's id and name with each delta) adds nothing."""
    if piece is None:
        return held
    said = text(piece, where)
    return held if said == held else held + said


@final
class ChatStream:
    """Chat Completions chunks: the first choice's content, refusal and tool
    calls (by index: id, name and arguments concatenated) and its finish
    reason, and the usage of the last chunk, assembled into the completion
    body they stand for. A stream with no finish reason was cut short."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._answered_by: object = None
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage: object = None
        self._failure: ModelFailure | None = None

    @property
    def done(self) -> bool:
        return self._failure is not None

    def feed(self, event: object) -> str:
        chunk = mapping(event, "chunk")
        if "choices" not in chunk and isinstance(chunk.get("error"), Mapping):
            self.fail(chunk.get("error"))
            return ""
        if isinstance(chunk.get("model"), str) and chunk.get("model"):
            self._answered_by = chunk.get("model")
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = chunk.get("usage")
        said: list[str] = []
        for raw in items(chunk.get("choices") or [], "choices"):
            choice = mapping(raw, "choices[]")
            if choice.get("index", 0) != 0:
                continue  # n > 1: only the first choice is the answer, as in a whole body
            delta = mapping(choice.get("delta") or {}, "delta")
            content = delta.get("content")
            if content is not None:
                said.append(text(content, "delta.content"))
            refusal = delta.get("refusal")
            if refusal is not None:
                self._refusal.append(text(refusal, "delta.refusal"))
            for raw_call in items(delta.get("tool_calls") or [], "delta.tool_calls"):
                self._grow_call(mapping(raw_call, "delta.tool_calls[]"))
            finish = choice.get("finish_reason")
            if finish is not None:
                self._finish = text(finish, "finish_reason")
        joined = "".join(said)
        self._content.append(joined)
        return joined

    def fail(self, error: object) -> None:
        self._failure = body_failure(error, "the completion failed")

    def _grow_call(self, delta: Mapping[str, object]) -> None:
        index = delta.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise MalformedBody("expected an integer at delta.tool_calls[].index")
        call = self._calls.setdefault(index, _Call())
        call.identifier = _grown(call.identifier, delta.get("id"), "tool_calls[].id")
        function = mapping(delta.get("function") or {}, "tool_calls[].function")
        call.name = _grown(call.name, function.get("name"), "function.name")
        arguments = function.get("arguments")
        if arguments is not None:
            call.arguments.append(text(arguments, "function.arguments"))

    def finish(self) -> tuple[str, ModelOutput | ModelFailure]:
        if self._failure is not None:
            return "", self._failure
        if self._finish is None:
            return "", _cut_short("completion")
        message: JSON = {
            "role": "assistant",
            "content": "".join(self._content) or None,
            "refusal": "".join(self._refusal) or None,
        }
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.identifier,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self._calls.items())
            ]
        body: JSON = {
            "object": "chat.completion",
            "model": self._answered_by,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish}],
            "usage": self._usage,
        }
        return "", chat.decode_response(body, self._model)

"""The Messages API, the fake server's side.

`decode_request` turns a body back into the `ModelRequest` it was made from;
`encode_response` turns an answer into a message body; `encode_stream` cuts
a message body into the events Anthropic streams.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import cast

from stagefx._core.content import ContentPart, ImageContent, MultimodalContent, TextContent
from stagefx._core.conversation import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
)
from stagefx._core.request import ModelRequest, OutputSpec, ToolSpec
from stagefx._model.body import MalformedBody, items, mapping, text
from stagefx.anthropic._wire import (
    ANSWER_TOOL,
    ANSWER_TOOL_JSON,
    ANSWER_TOOL_WRAPPED,
    JSON,
    OutputTool,
    arguments_of,
    is_thinking,
    thinking_blocks,
    thinking_data,
)
from stagefx.testing._fake_http import Split, StreamEvent

__all__ = [
    "answer_tool",
    "decode_request",
    "encode_error",
    "encode_response",
    "encode_stream",
    "encode_stream_error",
]

_KNOWN = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "max_tokens", "stream", "metadata"}
)


def answer_tool(body: Mapping[str, object]) -> OutputTool | None:
    """The tool a request asks its structured output through, if any."""
    for raw in items(body.get("tools") or [], "tools"):
        spec = mapping(raw, "tools[]")
        description = spec.get("description")
        if description in (ANSWER_TOOL, ANSWER_TOOL_WRAPPED, ANSWER_TOOL_JSON):
            return OutputTool(
                text(spec.get("name"), "tools[].name"),
                str(description),
                dict(mapping(spec.get("input_schema"), "tools[].input_schema")),
                wrapped=description == ANSWER_TOOL_WRAPPED,
            )
    return None


def _output(tool: OutputTool | None) -> OutputSpec:
    if tool is None:
        return OutputSpec()
    if tool.description == ANSWER_TOOL_JSON:
        return OutputSpec(mode="json")
    schema = tool.input_schema
    if tool.wrapped:
        schema = dict(
            mapping(mapping(schema.get("properties"), "properties").get("value"), "value")
        )
    name = None if tool.name == "output" else tool.name
    return OutputSpec(mode="schema", schema=schema, name=name)


def _image(source: Mapping[str, object]) -> ImageContent:
    if source.get("type") == "url":
        return ImageContent.of_url(text(source.get("url"), "source.url"))
    return ImageContent.of_bytes(
        base64.b64decode(text(source.get("data"), "source.data")),
        mime_type=text(source.get("media_type"), "source.media_type"),
    )


def _content(blocks: Sequence[object], where: str) -> tuple[list[ContentPart], list[JSON]]:
    """Content parts of plain blocks, and the blocks that are not plain."""
    parts: list[ContentPart] = []
    rest: list[JSON] = []
    for raw in blocks:
        block = mapping(raw, where)
        kind = block.get("type")
        if kind == "text":
            parts.append(TextContent(text(block.get("text"), f"{where}.text")))
        elif kind == "image":
            parts.append(_image(mapping(block.get("source"), f"{where}.source")))
        else:  # tool calls and results, thinking blocks
            rest.append(dict(block))
    return parts, rest


def _tool_result_content(block: Mapping[str, object]) -> MultimodalContent:
    given = block.get("content")
    if given is None:
        return MultimodalContent.empty
    if isinstance(given, str):
        return MultimodalContent.of(given)
    parts, _ = _content(items(given, "tool_result.content"), "tool_result.content[]")
    return MultimodalContent(tuple(parts))


def decode_request(body: Mapping[str, object]) -> ModelRequest:
    """The `ModelRequest` a body was made from. Turns the provider merged
    (same role in a row) come back as one turn."""
    tool = answer_tool(body)
    names: dict[str, str] = {}
    context: list[ModelInput | ModelOutput] = []
    for index, raw in enumerate(items(body.get("messages"), "messages")):
        message = mapping(raw, f"messages[{index}]")
        role = message.get("role")
        content = message.get("content")
        blocks: list[object] = (
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else items(content, f"messages[{index}].content")
        )
        parts, rest = _content(blocks, f"messages[{index}].content[]")
        if role == "assistant":
            thinking = [block for block in rest if is_thinking(block)]
            calls: list[ModelToolRequest] = []
            for block in rest:
                if block.get("type") == "tool_use":
                    identifier = text(block.get("id"), "tool_use.id")
                    name = text(block.get("name"), "tool_use.name")
                    names[identifier] = name
                    calls.append(
                        ModelToolRequest(identifier, name, arguments_of(block.get("input")))
                    )
            context.append(
                ModelOutput(
                    MultimodalContent(tuple(parts)),
                    tuple(calls),
                    provider_data=thinking_data(thinking),
                )
            )
        elif role == "user":
            responses = tuple(
                ModelToolResponse(
                    text(block.get("tool_use_id"), "tool_result.tool_use_id"),
                    names.get(str(block.get("tool_use_id")), ""),
                    _tool_result_content(block),
                    block.get("is_error") is True,
                )
                for block in rest
                if block.get("type") == "tool_result"
            )
            context.append(ModelInput(MultimodalContent(tuple(parts)), responses))
        else:
            raise MalformedBody(f"unknown role at messages[{index}]: {role!r}")
    tools = tuple(
        ToolSpec(
            text(spec.get("name"), "tools[].name"),
            str(spec.get("description") or ""),
            dict(mapping(spec.get("input_schema"), "input_schema")),
        )
        for spec in (mapping(raw, "tools[]") for raw in items(body.get("tools") or [], "tools"))
        if tool is None or spec.get("name") != tool.name
    )
    system = body.get("system")
    extra = {key: value for key, value in body.items() if key not in _KNOWN}
    return ModelRequest(
        system if isinstance(system, str) else "",
        tuple(context),
        tools,
        _output(tool),
        extra,
    )


def encode_response(
    output: ModelOutput, *, model: str, response_id: str, tool: OutputTool | None
) -> JSON:
    """A message body for `output`. With an output `tool`, an answer whose
    text is JSON (an object, or any value when the tool wraps it) is that
    tool's call, as the model answers when made to call it. The thinking
    blocks its `provider_data` keeps come first, as they were given."""
    content: list[JSON] = thinking_blocks(output)
    whole = "".join(part.text for part in output.content.parts if isinstance(part, TextContent))
    answer = _answer(whole, tool) if not output.tool_requests else None
    if answer is not None and tool is not None:
        content.append(
            {"type": "tool_use", "id": f"toolu_{response_id}", "name": tool.name, "input": answer}
        )
    elif whole:
        content.append({"type": "text", "text": whole})
    content.extend(
        {
            "type": "tool_use",
            "id": call.identifier,
            "name": call.tool,
            "input": dict(call.arguments),
        }
        for call in output.tool_requests
    )
    finish = {"length": "max_tokens"}.get(output.finish_reason or "", "end_turn")
    if output.tool_requests or answer is not None:
        finish = "tool_use"
    usage = output.usage
    return {
        "id": f"msg_{response_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 0 if usage is None else usage.input_tokens,
            "output_tokens": 0 if usage is None else usage.output_tokens,
        },
    }


def _answer(whole: str, tool: OutputTool | None) -> object:
    if tool is None:
        return None
    try:
        value: object = json.loads(whole)
    except ValueError:
        return None
    if tool.wrapped:
        return {"value": value}
    return cast("dict[str, object]", value) if isinstance(value, dict) else None


def encode_refusal(*, model: str, response_id: str) -> JSON:
    """A message the model refused to give (`stop_reason: refusal`)."""
    return {
        "id": f"msg_{response_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": "refusal",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }


def encode_error(kind: str, message: str) -> JSON:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def encode_stream_error(kind: str, message: str) -> StreamEvent:
    """The `error` event Anthropic sends when a stream fails midway."""
    return StreamEvent(encode_error(kind, message), name="error", end=True)


def _event(data: JSON, *, delta: bool = False, end: bool = False) -> StreamEvent:
    return StreamEvent(data, name=str(data["type"]), delta=delta, end=end)


def encode_stream(message: Mapping[str, object], split: Split) -> list[StreamEvent]:
    """The events Anthropic streams for `message`: text, tool input JSON and
    thinking cut into pieces by `split` (the chunks a fault counts); the
    usage's output tokens and the stop reason in `message_delta`."""
    usage = mapping(message.get("usage") or {}, "usage")
    start: JSON = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 0},
    }
    events = [_event({"type": "message_start", "message": start})]
    for index, raw in enumerate(items(message.get("content"), "content")):
        events.extend(_block_events(index, mapping(raw, "content[]"), split))
    events.append(
        _event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message.get("stop_reason"),
                    "stop_sequence": message.get("stop_sequence"),
                },
                "usage": {"output_tokens": usage.get("output_tokens", 0)},
            },
            end=True,
        )
    )
    events.append(_event({"type": "message_stop"}, end=True))
    return events


def _block_events(index: int, block: Mapping[str, object], split: Split) -> list[StreamEvent]:
    kind = block.get("type")
    deltas: list[JSON] = []
    if kind == "text":
        start: JSON = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split(str(block.get("text")))]
    elif kind == "tool_use":
        start = {**block, "input": {}}
        arguments = json.dumps(block.get("input"), ensure_ascii=False)
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in split(arguments)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": piece}
            for piece in split(str(block.get("thinking")))
        ]
        deltas.append({"type": "signature_delta", "signature": str(block.get("signature"))})
    else:
        start = dict(block)
    events = [_event({"type": "content_block_start", "index": index, "content_block": start})]
    events.extend(
        _event({"type": "content_block_delta", "index": index, "delta": delta}, delta=True)
        for delta in deltas
    )
    events.append(_event({"type": "content_block_stop", "index": index}))
    return events

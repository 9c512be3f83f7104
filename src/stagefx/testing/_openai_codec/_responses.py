"""The Responses API (`POST /v1/responses`), the server's side.

The inverses of `stagefx.openai._responses`: `decode_request` reads what the
provider sends, `encode_response` / `encode_refusal` answer as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from stagefx._core.content import ImageContent, MultimodalContent, TextContent
from stagefx._core.conversation import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    TokenUsage,
)
from stagefx._core.request import ModelRequest, OutputSpec, ToolSpec
from stagefx._model.body import items, mapping, text
from stagefx._model.content_text import plain_text
from stagefx.openai._wire import JSON, arguments_of, arguments_text
from stagefx.testing._fake_http import Split, StreamEvent
from stagefx.testing._openai_codec._images import image_of

__all__ = [
    "decode_request",
    "encode_refusal",
    "encode_response",
    "encode_stream",
    "encode_stream_error",
]


def decode_request(body: Mapping[str, object]) -> ModelRequest:
    """The `ModelRequest` a provider encoded into `body`."""
    context: list[ModelInput | ModelOutput] = []
    responses: list[ModelToolResponse] = []
    names: dict[str, str] = {}
    given = body.get("input", [])
    if isinstance(given, str):  # the API takes a plain text as one user message
        given = [{"role": "user", "content": given}]
    for index, raw in enumerate(items(given, "input")):
        item = mapping(raw, f"input[{index}]")
        kind = item.get("type")
        if (kind == "function_call" or item.get("role") == "assistant") and responses:
            context.append(ModelInput(tool_responses=tuple(responses)))
            responses = []
        if kind == "function_call":
            call_id, name = text(item.get("call_id"), "call_id"), text(item.get("name"), "name")
            names[call_id] = name
            call = ModelToolRequest(call_id, name, arguments_of(item.get("arguments")))
            last = context[-1] if context else None
            if isinstance(last, ModelOutput):
                context[-1] = ModelOutput(last.content, (*last.tool_requests, call))
            else:
                context.append(ModelOutput(tool_requests=(call,)))
        elif kind == "function_call_output":
            call_id = text(item.get("call_id"), "call_id")
            output = text(item.get("output"), "output")
            responses.append(
                ModelToolResponse(call_id, names.get(call_id, ""), MultimodalContent.of(output))
            )
        elif item.get("role") == "assistant":
            context.append(ModelOutput(MultimodalContent.of(_message_text(item.get("content")))))
        else:
            context.append(ModelInput(_user_content(item.get("content")), tuple(responses)))
            responses = []
    if responses:
        context.append(ModelInput(tool_responses=tuple(responses)))
    return ModelRequest(
        instructions=str(body.get("instructions") or ""),
        context=tuple(context),
        tools=tuple(
            ToolSpec(
                text(tool.get("name"), "tool.name"),
                str(tool.get("description") or ""),
                mapping(tool.get("parameters", {}), "tool.parameters"),
            )
            for tool in (mapping(raw, "tool") for raw in items(body.get("tools", []), "tools"))
        ),
        output=_output_spec(body.get("text")),
        extra={
            key: value
            for key, value in body.items()
            if key not in {"model", "input", "instructions", "tools", "text"}
        },
    )


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        str(mapping(part, "content part").get("text", "")) for part in items(content, "content")
    )


def _user_content(content: object) -> MultimodalContent:
    if isinstance(content, str):
        return MultimodalContent.of(content)
    parts: list[TextContent | ImageContent] = []
    for raw in items(content, "content"):
        part = mapping(raw, "content part")
        if part.get("type") == "input_image":
            parts.append(image_of(text(part.get("image_url"), "image_url")))
        else:
            parts.append(TextContent(text(part.get("text"), "text")))
    return MultimodalContent(tuple(parts))


def _output_spec(text_options: object) -> OutputSpec:
    if not isinstance(text_options, Mapping):
        return OutputSpec()
    fields = cast("Mapping[str, object]", text_options)  # a JSON object: its keys are str
    fmt = mapping(fields.get("format", {}), "text.format")
    if fmt.get("type") == "json_schema":
        return OutputSpec(
            mode="schema",
            schema=mapping(fmt.get("schema"), "text.format.schema"),
            name=str(fmt.get("name")),
        )
    if fmt.get("type") == "json_object":
        return OutputSpec(mode="json")
    return OutputSpec()


def encode_response(output: ModelOutput, *, model: str, response_id: str) -> JSON:
    """A Responses API body carrying `output`."""
    items_out: list[JSON] = []
    if not output.content.is_empty:
        items_out.append(
            {
                "type": "message",
                "id": f"msg_{response_id}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": plain_text(output.content),
                        "annotations": [],
                    }
                ],
            }
        )
    for call in output.tool_requests:
        items_out.append(
            {
                "type": "function_call",
                "id": f"fc_{call.identifier}",
                "call_id": call.identifier,
                "name": call.tool,
                "arguments": arguments_text(call.arguments),
                "status": "completed",
            }
        )
    usage = output.usage or TokenUsage()
    return {
        "id": f"resp_{response_id}",
        "object": "response",
        "created_at": 0,
        "status": "completed",
        "model": model,
        "output": items_out,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def encode_refusal(reason: str, *, model: str, response_id: str) -> JSON:
    """A Responses API body in which the model refuses, as OpenAI sends one."""
    body = encode_response(ModelOutput.of("x"), model=model, response_id=response_id)
    body["output"] = [
        {
            "type": "message",
            "id": f"msg_{response_id}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": reason}],
        }
    ]
    return body


def encode_stream(whole: JSON, split: Split) -> list[StreamEvent]:
    """The events OpenAI streams for the response `whole` (as `encode_response`
    or `encode_refusal` made it): created, then each output item added, its
    text, refusal or arguments in pieces cut by `split`, done; then completed."""
    events: list[StreamEvent] = []

    def add(name: str, fields: JSON, *, delta: bool = False, end: bool = False) -> None:
        data: JSON = {"type": name, "sequence_number": len(events), **fields}
        events.append(StreamEvent(data, name, delta=delta, end=end))

    started: JSON = {**whole, "status": "in_progress", "output": [], "usage": None}
    add("response.created", {"response": started})
    add("response.in_progress", {"response": started})
    for output_index, raw in enumerate(items(whole.get("output"), "output")):
        item = dict(mapping(raw, "output item"))
        item_id = text(item.get("id"), "output item id")
        where: JSON = {"item_id": item_id, "output_index": output_index}
        if item.get("type") == "function_call":
            arguments = text(item.get("arguments"), "arguments")
            added: JSON = {**item, "status": "in_progress", "arguments": ""}
            add("response.output_item.added", {"output_index": output_index, "item": added})
            for piece in split(arguments):
                add("response.function_call_arguments.delta", {**where, "delta": piece}, delta=True)
            done = {**where, "name": item.get("name"), "arguments": arguments}
            add("response.function_call_arguments.done", done)
        else:
            parts = items(item.get("content"), "content")
            added = {**item, "status": "in_progress", "content": []}
            add("response.output_item.added", {"output_index": output_index, "item": added})
            for content_index, raw_part in enumerate(parts):
                part = mapping(raw_part, "content part")
                at: JSON = {**where, "content_index": content_index}
                refusal = part.get("type") == "refusal"
                field, kind = ("refusal", "refusal") if refusal else ("text", "output_text")
                extra: JSON = {} if refusal else {"logprobs": []}
                whole_text = text(part.get(field), field)
                add("response.content_part.added", {**at, "part": {**part, field: ""}})
                for piece in split(whole_text):
                    add(f"response.{kind}.delta", {**at, "delta": piece, **extra}, delta=True)
                add(f"response.{kind}.done", {**at, field: whole_text, **extra})
                add("response.content_part.done", {**at, "part": dict(part)})
        add("response.output_item.done", {"output_index": output_index, "item": item})
    add("response.completed", {"response": whole}, end=True)
    return events


def encode_stream_error(code: str | None, message: str, sequence_number: int) -> StreamEvent:
    """The `error` event OpenAI sends when a streamed response fails midway."""
    fields: JSON = {"code": code, "message": message, "param": None}
    data: JSON = {"type": "error", "sequence_number": sequence_number, **fields}
    return StreamEvent(data, "error", end=True)

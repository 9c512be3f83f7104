"""The Chat Completions API (`POST /v1/chat/completions`), the server's side.

The inverses of `stagefx.openai._chat`: `decode_request` reads what the
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
    instructions: list[str] = []
    context: list[ModelInput | ModelOutput] = []
    responses: list[ModelToolResponse] = []
    names: dict[str, str] = {}
    for index, raw in enumerate(items(body.get("messages", []), "messages")):
        message = mapping(raw, f"messages[{index}]")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            instructions.append(text(content, "system content"))
        elif role == "tool":
            call_id = text(message.get("tool_call_id"), "tool_call_id")
            responses.append(
                ModelToolResponse(
                    call_id, names.get(call_id, ""), MultimodalContent.of(text(content, "content"))
                )
            )
        elif role == "assistant":
            if responses:
                context.append(ModelInput(tool_responses=tuple(responses)))
                responses = []
            calls: list[ModelToolRequest] = []
            for raw_call in items(message.get("tool_calls") or [], "tool_calls"):
                call = mapping(raw_call, "tool_call")
                function = mapping(call.get("function"), "function")
                call_id = text(call.get("id"), "tool_call.id")
                names[call_id] = text(function.get("name"), "function.name")
                calls.append(
                    ModelToolRequest(
                        call_id, names[call_id], arguments_of(function.get("arguments"))
                    )
                )
            said = content if isinstance(content, str) else ""
            context.append(ModelOutput(MultimodalContent.of(said), tuple(calls)))
        else:
            context.append(ModelInput(_content_of(content), tuple(responses)))
            responses = []
    if responses:
        context.append(ModelInput(tool_responses=tuple(responses)))
    return ModelRequest(
        instructions="\n".join(instructions),
        context=tuple(context),
        tools=tuple(
            ToolSpec(
                text(function.get("name"), "function.name"),
                str(function.get("description") or ""),
                mapping(function.get("parameters", {}), "function.parameters"),
            )
            for function in (
                mapping(mapping(raw, "tool").get("function"), "tool.function")
                for raw in items(body.get("tools", []), "tools")
            )
        ),
        output=_output_spec(body.get("response_format")),
        extra={
            key: value
            for key, value in body.items()
            if key not in {"model", "messages", "tools", "response_format"}
        },
    )


def _content_of(content: object) -> MultimodalContent:
    if isinstance(content, str):
        return MultimodalContent.of(content)
    parts: list[TextContent | ImageContent] = []
    for raw in items(content, "content"):
        part = mapping(raw, "content part")
        if part.get("type") == "image_url":
            parts.append(
                image_of(text(mapping(part.get("image_url"), "image_url").get("url"), "url"))
            )
        else:
            parts.append(TextContent(text(part.get("text"), "text")))
    return MultimodalContent(tuple(parts))


def _output_spec(response_format: object) -> OutputSpec:
    if not isinstance(response_format, Mapping):
        return OutputSpec()
    fields = cast("Mapping[str, object]", response_format)  # a JSON object: its keys are str
    if fields.get("type") == "json_schema":
        schema = mapping(fields.get("json_schema"), "json_schema")
        return OutputSpec(
            mode="schema",
            schema=mapping(schema.get("schema"), "schema"),
            name=str(schema.get("name")),
        )
    if fields.get("type") == "json_object":
        return OutputSpec(mode="json")
    return OutputSpec()


def encode_response(output: ModelOutput, *, model: str, response_id: str) -> JSON:
    """A chat completion body carrying `output`."""
    message: JSON = {
        "role": "assistant",
        "content": plain_text(output.content) if not output.content.is_empty else None,
        "refusal": None,
    }
    if output.tool_requests:
        message["tool_calls"] = [
            {
                "id": call.identifier,
                "type": "function",
                "function": {"name": call.tool, "arguments": arguments_text(call.arguments)},
            }
            for call in output.tool_requests
        ]
    usage = output.usage or TokenUsage()
    return {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if output.tool_requests else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


def encode_refusal(reason: str, *, model: str, response_id: str) -> JSON:
    """A chat completion body in which the model refuses, as OpenAI sends one."""
    body = encode_response(ModelOutput(), model=model, response_id=response_id)
    choice = mapping(items(body["choices"], "choices")[0], "choice")
    message = mapping(choice["message"], "message")
    body["choices"] = [{**choice, "message": {**message, "refusal": reason}}]
    return body


def encode_stream(whole: JSON, split: Split, *, include_usage: bool) -> list[StreamEvent]:
    """The `chat.completion.chunk`s OpenAI streams for the completion `whole`
    (as `encode_response` or `encode_refusal` made it): the role, the content,
    refusal and each tool call's arguments in pieces cut by `split`, the
    finish reason, the usage (when `include_usage`), then `[DONE]`."""
    base: JSON = {
        "id": whole.get("id"),
        "object": "chat.completion.chunk",
        "created": whole.get("created"),
        "model": whole.get("model"),
    }
    if include_usage:
        base["usage"] = None  # on every chunk but the last, as OpenAI sends it
    choice = mapping(items(whole.get("choices"), "choices")[0], "choice")
    message = mapping(choice.get("message"), "message")

    def chunk(delta: JSON, finish: object = None) -> JSON:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events = [StreamEvent(chunk({"role": "assistant", "content": "", "refusal": None}))]
    for field in ("content", "refusal"):
        said = message.get(field)
        if isinstance(said, str):
            events.extend(StreamEvent(chunk({field: piece}), delta=True) for piece in split(said))
    for index, raw in enumerate(items(message.get("tool_calls") or [], "tool_calls")):
        call = mapping(raw, "tool_call")
        function = mapping(call.get("function"), "function")
        opened = {
            "index": index,
            "id": call.get("id"),
            "type": "function",
            "function": {"name": function.get("name"), "arguments": ""},
        }
        events.append(StreamEvent(chunk({"tool_calls": [opened]})))
        for piece in split(text(function.get("arguments"), "arguments")):
            grown = {"index": index, "function": {"arguments": piece}}
            events.append(StreamEvent(chunk({"tool_calls": [grown]}), delta=True))
    events.append(StreamEvent(chunk({}, choice.get("finish_reason")), end=True))
    if include_usage:
        events.append(StreamEvent({**base, "choices": [], "usage": whole.get("usage")}, end=True))
    events.append(StreamEvent(None, end=True))
    return events


def encode_stream_error(code: str | None, message: str) -> StreamEvent:
    """The error object OpenAI sends in place of a chunk when a stream fails midway."""
    error: JSON = {"message": message, "type": "server_error", "param": None, "code": code}
    return StreamEvent({"error": error}, end=True)

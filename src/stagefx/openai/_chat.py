"""The Chat Completions API (`POST /v1/chat/completions`) wire format, both ways.

This is the API OpenAI-compatible local servers speak (Ollama, vLLM, LM
Studio, llama.cpp). `encode_request` / `decode_response` serve the provider;
`decode_request` / `encode_response` are their inverses for the fake server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from stagefx._content import ImageContent, MultimodalContent, TextContent
from stagefx._conversation import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    TokenUsage,
)
from stagefx._model import ModelFailure, ModelRequest, OutputSpec, ToolSpec
from stagefx.openai._wire import (
    JSON,
    arguments_of,
    image_of,
    image_url,
    is_strict_schema,
    items,
    mapping,
    number,
    part_text,
    plain_text,
    schema_name,
    text,
)

__all__ = [
    "decode_request",
    "decode_response",
    "encode_refusal",
    "encode_request",
    "encode_response",
]


def _user_content(content: MultimodalContent) -> str | list[JSON]:
    if not any(isinstance(part, ImageContent) for part in content.parts):
        return plain_text(content)
    parts: list[JSON] = []
    for part in content.parts:
        if isinstance(part, ImageContent):
            parts.append({"type": "image_url", "image_url": {"url": image_url(part)}})
        else:
            parts.append({"type": "text", "text": part_text(part)})
    return parts


def _response_format(output: OutputSpec) -> JSON | None:
    if output.mode == "schema" and output.schema is not None:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": schema_name(output),
                "schema": dict(output.schema),
                "strict": is_strict_schema(output.schema),
            },
        }
    if output.mode == "json":
        return {"type": "json_object"}
    return None


def encode_request(request: ModelRequest, model: str, options: Mapping[str, object]) -> JSON:
    """The JSON body for `request`; `options` (config, then stage extras) are merged last."""
    messages: list[JSON] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for turn in request.context:
        if isinstance(turn, ModelInput):
            for response in turn.tool_responses:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": response.identifier,
                        "content": plain_text(response.content),
                    }
                )
            if not turn.content.is_empty:
                messages.append({"role": "user", "content": _user_content(turn.content)})
        else:
            message: JSON = {"role": "assistant", "content": plain_text(turn.content) or None}
            if turn.tool_requests:
                message["tool_calls"] = [
                    {
                        "id": call.identifier,
                        "type": "function",
                        "function": {
                            "name": call.tool,
                            "arguments": json.dumps(dict(call.arguments)),
                        },
                    }
                    for call in turn.tool_requests
                ]
            messages.append(message)
    body: JSON = {"model": model, "messages": messages}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": dict(spec.parameters),
                    "strict": is_strict_schema(spec.parameters),
                },
            }
            for spec in request.tools
        ]
    response_format = _response_format(request.output)
    if response_format is not None:
        body["response_format"] = response_format
    body.update(options)
    return body


def decode_response(body: object, model: str) -> ModelOutput | ModelFailure:
    """A `ModelOutput` from a chat completion body (`MalformedBody` if it is not one)."""
    completion = mapping(body, "completion")
    choices = items(completion.get("choices"), "choices")
    if not choices:
        return ModelFailure("unavailable", "the completion has no choices")
    choice = mapping(choices[0], "choices[0]")
    message = mapping(choice.get("message"), "choices[0].message")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        return ModelFailure("refused", f"the model refused: {refusal}")
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        return ModelFailure("refused", "the response was stopped by the content filter")
    calls = tuple(
        ModelToolRequest(
            text(call.get("id"), "tool_calls.id"),
            text(mapping(call.get("function"), "function").get("name"), "function.name"),
            arguments_of(mapping(call.get("function"), "function").get("arguments")),
        )
        for call in (
            mapping(raw, "tool_calls[]")
            for raw in items(message.get("tool_calls") or [], "tool_calls")
        )
    )
    content = message.get("content")
    usage = completion.get("usage")
    counts = usage if isinstance(usage, Mapping) else {}
    return ModelOutput(
        MultimodalContent.of(content)
        if isinstance(content, str) and content
        else MultimodalContent.empty,
        calls,
        usage=TokenUsage(
            model=str(completion.get("model") or model),
            input_tokens=number(counts.get("prompt_tokens")),
            output_tokens=number(counts.get("completion_tokens")),
        ),
        finish_reason=str(finish) if finish else None,
    )


# The fake server's side -------------------------------------------------------


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
    if response_format.get("type") == "json_schema":
        schema = mapping(response_format.get("json_schema"), "json_schema")
        return OutputSpec(
            mode="schema",
            schema=mapping(schema.get("schema"), "schema"),
            name=str(schema.get("name")),
        )
    if response_format.get("type") == "json_object":
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
                "function": {"name": call.tool, "arguments": json.dumps(dict(call.arguments))},
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

"""The Responses API (`POST /v1/responses`) wire format, both ways.

`encode_request` / `decode_response` are what the provider sends and reads;
`decode_request` / `encode_response` are their inverses, used by the fake server.
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


def _input_content(content: MultimodalContent) -> list[JSON]:
    parts: list[JSON] = []
    for part in content.parts:
        if isinstance(part, ImageContent):
            parts.append({"type": "input_image", "image_url": image_url(part), "detail": "auto"})
        else:
            parts.append({"type": "input_text", "text": part_text(part)})
    return parts


def _format(output: OutputSpec) -> JSON | None:
    if output.mode == "schema" and output.schema is not None:
        return {
            "type": "json_schema",
            "name": schema_name(output),
            "schema": dict(output.schema),
            "strict": is_strict_schema(output.schema),
        }
    if output.mode == "json":
        return {"type": "json_object"}
    return None


def encode_request(request: ModelRequest, model: str, options: Mapping[str, object]) -> JSON:
    """The JSON body for `request`; `options` (config, then stage extras) are merged last."""
    body: JSON = {"model": model, "input": _encode_context(request)}
    if request.instructions:
        body["instructions"] = request.instructions
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": spec.name,
                "description": spec.description,
                "parameters": dict(spec.parameters),
                "strict": is_strict_schema(spec.parameters),
            }
            for spec in request.tools
        ]
    text_format = _format(request.output)
    if text_format is not None:
        body["text"] = {"format": text_format}
    body.update(options)
    return body


def _encode_context(request: ModelRequest) -> list[JSON]:
    encoded: list[JSON] = []
    for turn in request.context:
        if isinstance(turn, ModelInput):
            for response in turn.tool_responses:
                encoded.append(
                    {
                        "type": "function_call_output",
                        "call_id": response.identifier,
                        "output": plain_text(response.content),
                    }
                )
            if not turn.content.is_empty:
                encoded.append({"role": "user", "content": _input_content(turn.content)})
        else:
            if not turn.content.is_empty:
                encoded.append({"role": "assistant", "content": plain_text(turn.content)})
            for call in turn.tool_requests:
                encoded.append(
                    {
                        "type": "function_call",
                        "call_id": call.identifier,
                        "name": call.tool,
                        "arguments": json.dumps(dict(call.arguments)),
                    }
                )
    return encoded


def decode_response(body: object, model: str) -> ModelOutput | ModelFailure:
    """A `ModelOutput` from a response body (`MalformedBody` if it is not one)."""
    response = mapping(body, "response")
    texts: list[str] = []
    calls: list[ModelToolRequest] = []
    for index, raw in enumerate(items(response.get("output"), "output")):
        item = mapping(raw, f"output[{index}]")
        if item.get("type") == "function_call":
            calls.append(
                ModelToolRequest(
                    text(item.get("call_id"), "call_id"),
                    text(item.get("name"), "name"),
                    arguments_of(item.get("arguments")),
                )
            )
        elif item.get("type") == "message":
            for part_index, raw_part in enumerate(items(item.get("content"), "content")):
                part = mapping(raw_part, f"output[{index}].content[{part_index}]")
                if part.get("type") == "refusal":
                    return ModelFailure("refused", f"the model refused: {part.get('refusal')}")
                if part.get("type") == "output_text":
                    texts.append(text(part.get("text"), "output_text.text"))
    usage = response.get("usage")
    counts = usage if isinstance(usage, Mapping) else {}
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    if reason == "content_filter":
        return ModelFailure("refused", "the response was stopped by the content filter")
    return ModelOutput(
        MultimodalContent.of("".join(texts)) if texts else MultimodalContent.empty,
        tuple(calls),
        usage=TokenUsage(
            model=str(response.get("model") or model),
            input_tokens=number(counts.get("input_tokens")),
            output_tokens=number(counts.get("output_tokens")),
        ),
        finish_reason="tool_calls" if calls else ("length" if reason else "stop"),
    )


# The fake server's side -------------------------------------------------------


def decode_request(body: Mapping[str, object]) -> ModelRequest:
    """The `ModelRequest` a provider encoded into `body`."""
    context: list[ModelInput | ModelOutput] = []
    responses: list[ModelToolResponse] = []
    names: dict[str, str] = {}
    for index, raw in enumerate(items(body.get("input", []), "input")):
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
    fmt = mapping(text_options.get("format", {}), "text.format")
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
                "arguments": json.dumps(dict(call.arguments)),
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

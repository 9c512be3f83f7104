"""The Responses API (`POST /v1/responses`), the provider's side.

`encode_request` builds the body the provider sends; `decode_response` reads
the answer. (The fake server's inverses live in `stagefx.testing._openai_codec`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from stagefx._content import ImageContent, MultimodalContent
from stagefx._conversation import ModelInput, ModelOutput, ModelToolRequest, TokenUsage
from stagefx._model import ModelFailure, ModelRequest, OutputSpec
from stagefx.openai._wire import (
    JSON,
    arguments_of,
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

__all__ = ["decode_response", "encode_request"]


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

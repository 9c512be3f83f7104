"""The Responses API (`POST /v1/responses`), the provider's side.

`encode_request` builds the body the provider sends; `decode_response` reads
the answer. (The fake server's inverses live in `stagefx.testing._openai_codec`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from stagefx._core.content import ImageContent, MultimodalContent
from stagefx._core.conversation import ModelInput, ModelOutput, ModelToolRequest, TokenUsage
from stagefx._core.request import ModelFailure, ModelRequest, OutputSpec
from stagefx._model.body import MalformedBody, items, mapping, text, token_count
from stagefx._model.content_text import part_text, plain_text
from stagefx.openai._errors import body_failure
from stagefx.openai._wire import (
    JSON,
    arguments_of,
    arguments_text,
    image_url,
    schema_name,
    strictly,
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
            **strictly("schema", output.schema),
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
                **strictly("parameters", spec.parameters),
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
                        "arguments": arguments_text(call.arguments),
                    }
                )
    return encoded


def decode_response(body: object, model: str) -> ModelOutput | ModelFailure:
    """A `ModelOutput` from a response body, a `ModelFailure` for a response
    that failed, or `MalformedBody` if it is not a response at all. Every
    status OpenAI documents is mapped (docs/providers.md, "How answers map").
    """
    response = mapping(body, "response")
    status = response.get("status")
    if status is not None and not isinstance(status, str):
        raise MalformedBody(f"expected text at status, got {type(status).__name__}")
    if status == "failed":
        return body_failure(response.get("error"), "the response failed")
    if status is None and isinstance(response.get("error"), Mapping):
        return body_failure(response.get("error"), "the response failed")
    if status == "cancelled":
        return ModelFailure("unavailable", "the response was cancelled")
    if status in ("queued", "in_progress"):
        return ModelFailure(
            "unavailable", f"the response is {status}: background responses are not polled"
        )
    if status not in (None, "completed", "incomplete"):
        return ModelFailure("unavailable", f"unknown response status '{status}'")
    texts: list[str] = []
    calls: list[ModelToolRequest] = []
    for index, raw in enumerate(items(response.get("output"), "output")):
        item = mapping(raw, f"output[{index}]")
        kind = item.get("type")
        if not isinstance(kind, str):  # every output item names its type (OutputItem)
            raise MalformedBody(f"output[{index}] has no type")
        if kind == "function_call":
            calls.append(
                ModelToolRequest(
                    text(item.get("call_id"), "call_id"),
                    text(item.get("name"), "name"),
                    arguments_of(item.get("arguments")),
                )
            )
        elif kind == "message":
            for part_index, raw_part in enumerate(items(item.get("content"), "content")):
                part = mapping(raw_part, f"output[{index}].content[{part_index}]")
                if part.get("type") == "refusal":
                    refusal = part.get("refusal")
                    said = refusal if isinstance(refusal, str) else "no reason given"
                    return ModelFailure("refused", f"the model refused: {said}")
                if part.get("type") == "output_text":
                    texts.append(text(part.get("text"), "output_text.text"))
    details = response.get("incomplete_details")
    # JSON objects: their keys are str.
    reason = (
        cast("Mapping[str, object]", details).get("reason")
        if isinstance(details, Mapping)
        else None
    )
    finish = "tool_calls" if calls else "stop"
    if status == "incomplete" or reason is not None:
        if reason == "content_filter":
            return ModelFailure("refused", "the response was stopped by the content filter")
        if not texts and not calls:
            if reason == "max_output_tokens":
                return ModelFailure(
                    "invalid_request",
                    "the response reached max_output_tokens before any output: raise it",
                )
            return ModelFailure("unavailable", "the response is incomplete, with no output")
        finish = "length" if reason == "max_output_tokens" else "incomplete"
    usage = response.get("usage")
    counts: Mapping[str, object] = (
        cast("Mapping[str, object]", usage) if isinstance(usage, Mapping) else {}
    )
    answered_by = response.get("model")
    return ModelOutput(
        MultimodalContent.of("".join(texts)) if texts else MultimodalContent.empty,
        tuple(calls),
        usage=TokenUsage(
            model=answered_by if isinstance(answered_by, str) and answered_by else model,
            input_tokens=token_count(counts.get("input_tokens")),
            output_tokens=token_count(counts.get("output_tokens")),
        ),
        finish_reason=finish,
    )

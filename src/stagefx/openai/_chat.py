"""The Chat Completions API (`POST /v1/chat/completions`), the provider's side.

This is the API OpenAI-compatible local servers speak (Ollama, vLLM, LM
Studio, llama.cpp). `encode_request` builds the body the provider sends;
`decode_response` reads the answer. (The fake server's inverses live in
`stagefx.testing._openai_codec`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from stagefx._core.content import ImageContent, MultimodalContent
from stagefx._core.conversation import ModelInput, ModelOutput, ModelToolRequest, TokenUsage
from stagefx._core.request import ModelFailure, ModelRequest, OutputSpec
from stagefx._model.body import items, mapping, text, token_count
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
                **strictly("schema", output.schema),
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
        elif turn.content.is_empty and not turn.tool_requests:
            continue  # a turn emptied of tool traffic (strip_context_tools): nothing to send
        else:
            message: JSON = {"role": "assistant", "content": plain_text(turn.content) or None}
            if turn.tool_requests:
                message["tool_calls"] = [
                    {
                        "id": call.identifier,
                        "type": "function",
                        "function": {
                            "name": call.tool,
                            "arguments": arguments_text(call.arguments),
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
                    **strictly("parameters", spec.parameters),
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
    """A `ModelOutput` from a chat completion body, a `ModelFailure` for a
    body that carries an error object instead of choices (as some
    OpenAI-compatible servers answer with status 200), or `MalformedBody` if
    it is not a completion at all."""
    completion = mapping(body, "completion")
    if "choices" not in completion and isinstance(completion.get("error"), Mapping):
        return body_failure(completion.get("error"), "the completion failed")
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
    # A JSON object: its keys are str.
    counts: Mapping[str, object] = (
        cast("Mapping[str, object]", usage) if isinstance(usage, Mapping) else {}
    )
    answered_by = completion.get("model")
    return ModelOutput(
        MultimodalContent.of(content)
        if isinstance(content, str) and content
        else MultimodalContent.empty,
        calls,
        usage=TokenUsage(
            model=answered_by if isinstance(answered_by, str) and answered_by else model,
            input_tokens=token_count(counts.get("prompt_tokens")),
            output_tokens=token_count(counts.get("completion_tokens")),
        ),
        finish_reason=finish if isinstance(finish, str) and finish else None,
    )

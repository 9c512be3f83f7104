"""The Gemini API (`generateContent`, `streamGenerateContent`), the provider's side.

`encode_request` builds the REST body; `decode_chunks` reads an answer, whole
(one chunk) or streamed (every chunk, in order): one decoder for both, so a
streamed answer and a whole one can never differ. (The fake server's inverses
live in `stagefx.testing._gemini_codec`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, cast

from stagefx._core.content import ImageContent, MultimodalContent
from stagefx._core.conversation import ModelInput, ModelOutput, ModelToolRequest, TokenUsage
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._model.body import items, mapping, text, token_count
from stagefx._model.content_text import part_text, plain_text
from stagefx.gemini._wire import (
    JSON,
    function_call,
    image_part,
    model_parts,
    sent_identifier,
    signature_data,
)

__all__ = ["chunk_text", "decode_chunks", "encode_request"]

_TOP_LEVEL: Final = {
    "safetySettings": "safetySettings",
    "safety_settings": "safetySettings",
    "toolConfig": "toolConfig",
    "tool_config": "toolConfig",
    "cachedContent": "cachedContent",
    "cached_content": "cachedContent",
}
"""Options that are fields of the request itself, not of its `generationConfig`."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _user_parts(content: MultimodalContent) -> list[JSON]:
    parts: list[JSON] = []
    for part in content.parts:
        if isinstance(part, ImageContent):
            parts.append(image_part(part))
        elif said := part_text(part):  # empty text parts are never sent
            parts.append({"text": said})
    return parts


def _contents(request: ModelRequest) -> list[JSON]:
    contents: list[JSON] = []
    for turn in request.context:
        parts: list[JSON] = []
        if isinstance(turn, ModelInput):
            for response in turn.tool_responses:
                given = sent_identifier(response.identifier)
                answer: JSON = {
                    "name": response.tool,
                    "response": {
                        ("error" if response.error else "output"): plain_text(response.content)
                    },
                }
                if given is not None:
                    answer["id"] = given
                parts.append({"functionResponse": answer})
            parts.extend(_user_parts(turn.content))
            role = "user"
        else:
            # Thought signatures are sent back on the parts that carried them.
            parts.extend(model_parts(turn, plain_text(turn.content)))
            role = "model"
        if parts:
            contents.append({"role": role, "parts": parts})
    return contents


def encode_request(request: ModelRequest, model: str, options: Mapping[str, object]) -> JSON:
    """The JSON body for `request`; `options` (config, then stage extras) are
    placed where they belong: request fields at the top, the rest (camelCased)
    in `generationConfig`, `thinking_budget` in its `thinkingConfig`."""
    body: JSON = {"model": f"models/{model}", "contents": _contents(request)}
    if request.instructions:
        body["systemInstruction"] = {"parts": [{"text": request.instructions}]}
    if request.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": spec.name,
                        "description": spec.description,
                        # Full JSON Schema: `parameters` takes an OpenAPI subset
                        # that refuses `additionalProperties`.
                        "parametersJsonSchema": dict(spec.parameters),
                    }
                    for spec in request.tools
                ]
            }
        ]
    generation: JSON = {}
    output = request.output
    if output.mode == "schema" and output.schema is not None:
        generation["responseMimeType"] = "application/json"
        generation["responseJsonSchema"] = dict(output.schema)
    elif output.mode == "json":
        generation["responseMimeType"] = "application/json"
    for key, value in options.items():
        if key in _TOP_LEVEL:
            body[_TOP_LEVEL[key]] = value
        elif key in ("thinking_budget", "thinkingBudget"):
            given = generation.get("thinkingConfig")
            kept: Mapping[str, object] = (
                cast("Mapping[str, object]", given) if isinstance(given, Mapping) else {}
            )
            generation["thinkingConfig"] = {**kept, "thinkingBudget": value}
        else:
            generation[_camel(key)] = value
    if generation:
        body["generationConfig"] = generation
    return body


_REFUSED: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
"""Finish reasons that mean the answer was withheld by a safety or policy filter."""

_BROKEN: Final = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)
"""Finish reasons of a generation that went wrong (another attempt may not)."""


def decode_chunks(chunks: Sequence[object], model: str) -> ModelOutput | ModelFailure:
    """The answer a whole response (one chunk) or a stream's chunks (in order)
    add up to; `MalformedBody` if they are not `GenerateContentResponse`s.
    docs/providers.md ("How answers map") has the mapping.
    """
    texts: list[str] = []
    calls: list[ModelToolRequest] = []
    signed: dict[str, str] = {}
    text_signature: str | None = None
    finish: str | None = None
    usage: Mapping[str, object] = {}
    answered_by = model
    for index, raw in enumerate(chunks):
        chunk = mapping(raw, f"chunk[{index}]")
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, Mapping):
            reason = cast("Mapping[str, object]", feedback).get("blockReason")
            if isinstance(reason, str) and reason:
                return ModelFailure("refused", f"the prompt was blocked ({reason})")
        if isinstance(chunk.get("usageMetadata"), Mapping):
            usage = mapping(chunk.get("usageMetadata"), "usageMetadata")
        version = chunk.get("modelVersion")
        if isinstance(version, str) and version:
            answered_by = version
        candidates = items(chunk.get("candidates") or [], "candidates")
        if not candidates:
            continue
        candidate = mapping(candidates[0], "candidates[0]")
        content = mapping(candidate.get("content") or {}, "candidates[0].content")
        for part_index, raw_part in enumerate(items(content.get("parts") or [], "parts")):
            part = mapping(raw_part, f"parts[{part_index}]")
            signature = part.get("thoughtSignature")
            if "functionCall" in part:
                call = function_call(part, len(calls))
                calls.append(call)
                if isinstance(signature, str) and signature:
                    signed[call.identifier] = signature
            elif "text" in part and part.get("thought") is not True:
                texts.append(text(part.get("text"), "parts[].text"))
                if isinstance(signature, str) and signature:
                    text_signature = signature
        reason = candidate.get("finishReason")
        if reason is not None:
            finish = text(reason, "finishReason")
    said = "".join(texts)
    if finish is None:
        return ModelFailure("unavailable", "the answer from Gemini ended before it was complete")
    if finish in _REFUSED:
        return ModelFailure("refused", f"the answer was blocked (finishReason {finish})")
    if finish in _BROKEN:
        return ModelFailure("unavailable", f"the generation failed (finishReason {finish})")
    if finish == "MISSING_THOUGHT_SIGNATURE":
        return ModelFailure("invalid_request", "a thought signature was not sent back")
    if finish == "MAX_TOKENS":
        if not said and not calls:
            return ModelFailure(
                "invalid_request", "the answer reached maxOutputTokens before any output: raise it"
            )
        reason_text = "length"
    elif finish == "STOP":
        reason_text = "tool_calls" if calls else "stop"
    else:
        reason_text = finish.lower()
    return ModelOutput(
        MultimodalContent.of(said) if said else MultimodalContent.empty,
        tuple(calls),
        usage=TokenUsage(
            model=answered_by,
            input_tokens=token_count(usage.get("promptTokenCount"))
            + token_count(usage.get("toolUsePromptTokenCount")),
            output_tokens=token_count(usage.get("candidatesTokenCount"))
            + token_count(usage.get("thoughtsTokenCount")),
        ),
        finish_reason=reason_text,
        provider_data=signature_data(signed, text_signature),
    )


def chunk_text(chunk: object) -> str:
    """The answer text one chunk of a stream carries (thoughts left out)."""
    fields = mapping(chunk, "chunk")
    candidates = items(fields.get("candidates") or [], "candidates")
    if not candidates:
        return ""
    content = mapping(mapping(candidates[0], "candidates[0]").get("content") or {}, "content")
    said: list[str] = []
    for raw in items(content.get("parts") or [], "parts"):
        part = mapping(raw, "parts[]")
        if "text" in part and "functionCall" not in part and part.get("thought") is not True:
            said.append(text(part.get("text"), "parts[].text"))
    return "".join(said)

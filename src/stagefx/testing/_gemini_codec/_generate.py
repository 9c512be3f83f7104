"""`generateContent` / `streamGenerateContent`, the fake server's side."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final, cast, final

import attrs

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
from stagefx.gemini._wire import (
    JSON,
    function_call,
    model_parts,
    sent_identifier,
    signature_data,
)

__all__ = [
    "StreamChunk",
    "decode_request",
    "encode_blocked",
    "encode_error",
    "encode_response",
    "encode_stream",
]

_KNOWN: Final = frozenset({"model", "contents", "systemInstruction", "tools", "generationConfig"})


def decode_request(body: Mapping[str, object]) -> ModelRequest:
    """The `ModelRequest` the provider encoded into `body` (a function
    response is paired with the previous turn's call by `id`, else by name
    in order, as Gemini pairs them)."""
    system = mapping(body.get("systemInstruction") or {"parts": []}, "systemInstruction")
    instructions = "".join(
        text(mapping(part, "part").get("text"), "systemInstruction text")
        for part in items(system.get("parts") or [], "systemInstruction.parts")
    )
    context: list[ModelInput | ModelOutput] = []
    for index, raw in enumerate(items(body.get("contents"), "contents")):
        content = mapping(raw, f"contents[{index}]")
        parts = [mapping(part, "part") for part in items(content.get("parts") or [], "parts")]
        if content.get("role") == "model":
            context.append(_model_turn(parts))
        else:
            context.append(_user_turn(parts, context[-1] if context else None))
    tools = tuple(
        ToolSpec(
            text(declaration.get("name"), "name"),
            str(declaration.get("description") or ""),
            mapping(declaration.get("parametersJsonSchema") or {}, "parametersJsonSchema"),
        )
        for tool in items(body.get("tools") or [], "tools")
        for declaration in (
            mapping(raw, "functionDeclaration")
            for raw in items(mapping(tool, "tool").get("functionDeclarations") or [], "decls")
        )
    )
    generation = dict(mapping(body.get("generationConfig") or {}, "generationConfig"))
    schema = generation.pop("responseJsonSchema", None)
    mime = generation.pop("responseMimeType", None)
    if isinstance(schema, dict):
        output = OutputSpec(mode="schema", schema=mapping(cast(object, schema), "schema"))
    elif mime == "application/json":
        output = OutputSpec(mode="json")
    else:
        output = OutputSpec()
    extra = {key: value for key, value in body.items() if key not in _KNOWN}
    return ModelRequest(instructions, tuple(context), tools, output, {**generation, **extra})


def _model_turn(parts: Sequence[Mapping[str, object]]) -> ModelOutput:
    """A model turn, the thought signatures its parts carry in its `provider_data`."""
    said = "".join(text(part.get("text"), "text") for part in parts if "text" in part)
    calls: list[ModelToolRequest] = []
    signed: dict[str, str] = {}
    text_signature: str | None = None
    for part in parts:
        signature = part.get("thoughtSignature")
        if "functionCall" in part:
            call = function_call(part, len(calls))
            calls.append(call)
            if isinstance(signature, str):
                signed[call.identifier] = signature
        elif "text" in part and isinstance(signature, str):
            text_signature = signature
    return ModelOutput(
        MultimodalContent.of(said),
        tuple(calls),
        provider_data=signature_data(signed, text_signature),
    )


def _user_turn(parts: Sequence[Mapping[str, object]], before: object) -> ModelInput:
    asked = list(before.tool_requests) if isinstance(before, ModelOutput) else []
    responses: list[ModelToolResponse] = []
    content: list[TextContent | ImageContent] = []
    for part in parts:
        if "functionResponse" in part:
            answer = mapping(part.get("functionResponse"), "functionResponse")
            name = text(answer.get("name"), "functionResponse.name")
            given = answer.get("id")
            call = next(
                (
                    call
                    for call in asked
                    if (sent_identifier(call.identifier) == given if given else call.tool == name)
                ),
                None,
            )
            if call is not None:
                asked.remove(call)
            result = mapping(answer.get("response"), "functionResponse.response")
            error = "error" in result
            said = result.get("error" if error else "output")
            responses.append(
                ModelToolResponse(
                    call.identifier if call is not None else str(given or name),
                    name,
                    MultimodalContent.of(said if isinstance(said, str) else json.dumps(said)),
                    error,
                )
            )
        elif "inlineData" in part:
            blob = mapping(part.get("inlineData"), "inlineData")
            content.append(
                ImageContent.of_bytes(
                    base64.b64decode(text(blob.get("data"), "data")),
                    mime_type=text(blob.get("mimeType"), "mimeType"),
                )
            )
        elif "fileData" in part:
            found = mapping(part.get("fileData"), "fileData")
            content.append(ImageContent.of_url(text(found.get("fileUri"), "fileUri")))
        elif "text" in part:
            content.append(TextContent(text(part.get("text"), "text")))
    return ModelInput(MultimodalContent(tuple(content)), tuple(responses))


def _usage(usage: TokenUsage | None) -> JSON:
    found = usage or TokenUsage()
    return {
        "promptTokenCount": found.input_tokens,
        "candidatesTokenCount": found.output_tokens,
        "totalTokenCount": found.input_tokens + found.output_tokens,
    }


def _finish(output: ModelOutput) -> str:
    return "MAX_TOKENS" if output.finish_reason == "length" else "STOP"


def encode_response(output: ModelOutput, *, model: str, response_id: str) -> JSON:
    """A `GenerateContentResponse` carrying `output` (its `usage` as `usageMetadata`)."""
    parts = model_parts(output, output.content.as_string())
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _finish(output),
                "index": 0,
            }
        ],
        "usageMetadata": _usage(output.usage),
        "modelVersion": model,
        "responseId": response_id,
    }


def encode_blocked(reason: str, *, model: str, response_id: str) -> JSON:
    """The answer to a prompt Gemini blocks: no candidate, a `blockReason`."""
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": _usage(None),
        "modelVersion": model,
        "responseId": response_id,
    }


_STATUS: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def encode_error(
    code: int, message: str, *, retry_delay: str | None = None, reason: str | None = None
) -> JSON:
    """A Google API error body (`google.rpc.Status`), with a `RetryInfo`
    detail when `retry_delay` (`"2s"`) and an `ErrorInfo` when `reason`."""
    details: list[JSON] = []
    if reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        )
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    error: JSON = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


@final
@attrs.frozen(slots=True)
class StreamChunk:
    """One server-sent event of a streamed answer: its JSON, whether it
    carries a piece of text or a function call (what streaming faults count),
    and whether it ends the answer (which they never let through)."""

    data: JSON
    delta: bool = False
    end: bool = False

    @property
    def text(self) -> str:
        return json.dumps(self.data)

    def encode(self) -> bytes:
        return f"data: {self.text}\r\n\r\n".encode()


def encode_stream(
    whole: Mapping[str, object], split: Callable[[str], Sequence[str]]
) -> list[StreamChunk]:
    """A whole `GenerateContentResponse` as Gemini streams it: a chunk per
    piece of text (a text's thought signature on its last piece), one per
    function call, then the finish reason and usage."""
    head = {key: whole[key] for key in ("modelVersion", "responseId") if key in whole}
    if "candidates" not in whole:  # blocked: one chunk says so
        return [StreamChunk(dict(whole), end=True)]
    candidate = mapping(items(whole["candidates"], "candidates")[0], "candidate")
    parts = items(mapping(candidate.get("content"), "content").get("parts"), "parts")

    def chunk(part: JSON) -> StreamChunk:
        content = {"role": "model", "parts": [part]}
        return StreamChunk({"candidates": [{"content": content, "index": 0}], **head}, delta=True)

    chunks: list[StreamChunk] = []
    for raw in parts:
        part = dict(mapping(raw, "part"))
        if "text" in part:
            pieces = list(split(text(part["text"], "text")))
            signature = part.get("thoughtSignature")
            if signature is None:
                chunks.extend(chunk({"text": piece}) for piece in pieces)
                continue
            *before, signed = pieces or [""]
            chunks.extend(chunk({"text": piece}) for piece in before)
            chunks.append(chunk({"text": signed, "thoughtSignature": signature}))
        else:
            chunks.append(chunk(part))
    last = {"finishReason": candidate.get("finishReason"), "index": 0}
    chunks.append(
        StreamChunk(
            {"candidates": [last], "usageMetadata": whole.get("usageMetadata"), **head}, end=True
        )
    )
    return chunks

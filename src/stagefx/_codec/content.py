"""Content and conversations: content parts, input and output turns, token usage."""

from __future__ import annotations

import base64
import binascii
from typing import cast

from stagefx._codec.user_types import NO_TYPES, Types, dumped, validated
from stagefx._codec.values import (
    JSON,
    Path,
    boolean,
    error_at,
    fields,
    integer,
    is_plain,
    items,
    json_list,
    json_object,
    kind_of,
    optional_string,
    parsed,
    render,
    string,
    tagged,
    to_json,
    too_deep,
    type_name,
)
from stagefx._core.content import (
    ArtifactContent,
    ContentPart,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx._core.conversation import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    TokenUsage,
)


def encode_content(content: MultimodalContent) -> JSON:
    """`content` as a list of parts: strings for text, one-key objects for the rest.

    An artifact's `"value"` is written only when it is plain JSON (exactly
    the builtin types all the way down); its `"type"` is informative only.
    """
    try:
        return encode_parts(content, "content")
    except RecursionError as error:
        raise too_deep("content") from error


def decode_content(data: JSON) -> MultimodalContent:
    """The content `data` encodes; `CodecError` if it is not one.

    An artifact written without its value decodes to the JSON its text holds
    (else the text): a user type cannot be rebuilt without the type, and
    nothing needs it to be (answers hold no artifacts).
    """
    try:
        return decode_parts(data, "content")
    except RecursionError as error:
        raise too_deep("content") from error


# --- content -------------------------------------------------------------------------


def encode_parts(content: object, path: Path, types: Types = NO_TYPES) -> list[JSON]:
    if not isinstance(content, MultimodalContent):
        raise error_at(path, f"expected MultimodalContent, got {kind_of(content)}")
    parts = items(content.parts, (path, "parts"), "content parts")
    return [_encode_part(part, (path, index), types) for index, part in enumerate(parts)]


def _encode_part(part: object, path: Path, types: Types) -> JSON:
    if isinstance(part, TextContent):
        return string(part.text, path)
    if isinstance(part, ImageContent):
        image: dict[str, JSON] = {}
        if part.data is not None:
            if not isinstance(cast(object, part.data), bytes | bytearray):  # may be untyped
                raise error_at((path, "data"), f"expected bytes, got {kind_of(part.data)}")
            image["data_base64"] = base64.b64encode(part.data).decode("ascii")
        else:
            image["url"] = string(part.url, (path, "url"))
        image["mime_type"] = optional_string(part.mime_type, (path, "mime_type"))
        return {"image": image}
    if isinstance(part, ResourceContent):
        return {
            "resource": {
                "uri": string(part.uri, (path, "uri")),
                "mime_type": optional_string(part.mime_type, (path, "mime_type")),
            }
        }
    if isinstance(part, ArtifactContent):
        kind = type(part.value)
        artifact: dict[str, JSON] = {
            "text": string(part.text, (path, "text")),
            "type": type_name(kind),
        }
        if is_plain(part.value):
            artifact["value"] = to_json(part.value, (path, "value"))
        elif types.get(type_name(kind)) is kind:  # a type the caller named: its dump, to rebuild
            artifact["value"] = dumped(part.value, render((path, "value")))
        return {"artifact": artifact}
    raise error_at(path, f"expected a content part, got {kind_of(part)}")


def decode_parts(data: object, path: Path, types: Types = NO_TYPES) -> MultimodalContent:
    return MultimodalContent(
        tuple(
            _decode_part(item, (path, index), types)
            for index, item in enumerate(json_list(data, path))
        )
    )


def _decode_part(data: object, path: Path, types: Types) -> ContentPart:
    if isinstance(data, str):
        return TextContent(str.__str__(data))
    tag, body = tagged(data, path, ("image", "resource", "artifact"))
    path = (path, tag)
    if tag == "image":
        return _decode_image(body, path)
    if tag == "resource":
        found = fields(body, path, ("uri",), ("mime_type",))
        return ResourceContent(
            string(found["uri"], (path, "uri")),
            optional_string(found.get("mime_type"), (path, "mime_type")),
        )
    found = fields(body, path, ("text",), ("type", "value"))
    text = string(found["text"], (path, "text"))
    kind = types.get(string(found["type"], (path, "type"))) if "type" in found else None
    if "value" in found:
        if kind is not None:  # a type the caller named: rebuilt from its dump
            return ArtifactContent(validated(kind, found["value"], render((path, "value"))), text)
        return ArtifactContent(to_json(found["value"], (path, "value")), text)
    return ArtifactContent(parsed(text), text)


def _decode_image(body: object, path: Path) -> ImageContent:
    found = fields(body, path, (), ("url", "data_base64", "mime_type"))
    mime_type = optional_string(found.get("mime_type"), (path, "mime_type"))
    if ("url" in found) == ("data_base64" in found):
        raise error_at(path, "an image needs exactly one of 'url' and 'data_base64'")
    if "url" in found:
        return ImageContent(url=string(found["url"], (path, "url")), mime_type=mime_type)
    where = (path, "data_base64")
    encoded = string(found["data_base64"], where)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise error_at(where, "not valid base64") from error
    if not mime_type:
        raise error_at(path, "an image given as data needs a 'mime_type', e.g. 'image/png'")
    return ImageContent(data=data, mime_type=mime_type)


# --- conversation -----------------------------------------------------------------------


def encode_context(context: object, path: Path, types: Types = NO_TYPES) -> list[JSON]:
    turns = items(context, path, "turns")
    return [_encode_turn(turn, (path, index), types) for index, turn in enumerate(turns)]


def _encode_turn(turn: object, path: Path, types: Types) -> JSON:
    if isinstance(turn, ModelInput):
        return {"input": _encode_input(turn, (path, "input"), types)}
    if isinstance(turn, ModelOutput):
        return {"output": encode_output(turn, (path, "output"), types)}
    raise error_at(path, f"expected a ModelInput or ModelOutput, got {kind_of(turn)}")


def _encode_input(turn: ModelInput, path: Path, types: Types) -> dict[str, JSON]:
    responses: list[JSON] = []
    listed = items(turn.tool_responses, (path, "tool_responses"), "tool responses")
    for index, response in enumerate(listed):
        where = ((path, "tool_responses"), index)
        if not isinstance(response, ModelToolResponse):
            raise error_at(where, f"expected a ModelToolResponse, got {kind_of(response)}")
        responses.append(
            {
                "identifier": string(response.identifier, (where, "identifier")),
                "tool": string(response.tool, (where, "tool")),
                "content": encode_parts(response.content, (where, "content"), types),
                "error": boolean(response.error, (where, "error")),
            }
        )
    return {
        "content": encode_parts(turn.content, (path, "content"), types),
        "tool_responses": responses,
    }


def encode_output(turn: ModelOutput, path: Path, types: Types = NO_TYPES) -> dict[str, JSON]:
    requests: list[JSON] = []
    listed = items(turn.tool_requests, (path, "tool_requests"), "tool requests")
    for index, request in enumerate(listed):
        where = ((path, "tool_requests"), index)
        if not isinstance(request, ModelToolRequest):
            raise error_at(where, f"expected a ModelToolRequest, got {kind_of(request)}")
        requests.append(
            {
                "identifier": string(request.identifier, (where, "identifier")),
                "tool": string(request.tool, (where, "tool")),
                "arguments": json_object(request.arguments, (where, "arguments")),
            }
        )
    usage = None if turn.usage is None else encode_usage(turn.usage, (path, "usage"))
    encoded: dict[str, JSON] = {
        "content": encode_parts(turn.content, (path, "content"), types),
        "tool_requests": requests,
        "usage": usage,
        "finish_reason": optional_string(turn.finish_reason, (path, "finish_reason")),
    }
    if turn.provider_data:  # written only when there is some: other encodings stay as they were
        encoded["provider_data"] = json_object(turn.provider_data, (path, "provider_data"))
    return encoded


def encode_usage(usage: object, path: Path) -> dict[str, JSON]:
    if not isinstance(usage, TokenUsage):
        raise error_at(path, f"expected a TokenUsage, got {kind_of(usage)}")
    return {
        "model": string(usage.model, (path, "model")),
        "input_tokens": integer(usage.input_tokens, (path, "input_tokens")),
        "output_tokens": integer(usage.output_tokens, (path, "output_tokens")),
    }


def decode_context(
    data: object, path: Path, types: Types = NO_TYPES
) -> tuple[ModelInput | ModelOutput, ...]:
    return tuple(
        _decode_turn(item, (path, index), types) for index, item in enumerate(json_list(data, path))
    )


def _decode_turn(data: object, path: Path, types: Types) -> ModelInput | ModelOutput:
    tag, body = tagged(data, path, ("input", "output"))
    if tag == "input":
        return _decode_input(body, (path, tag), types)
    return decode_output(body, (path, tag), types)


def _decode_input(data: object, path: Path, types: Types) -> ModelInput:
    found = fields(data, path, (), ("content", "tool_responses"))
    where = (path, "tool_responses")
    responses = json_list(found.get("tool_responses", []), where)
    return ModelInput(
        decode_parts(found.get("content", []), (path, "content"), types),
        tuple(
            _decode_response(item, (where, index), types) for index, item in enumerate(responses)
        ),
    )


def _decode_response(data: object, path: Path, types: Types) -> ModelToolResponse:
    found = fields(data, path, ("identifier", "tool", "content"), ("error",))
    return ModelToolResponse(
        string(found["identifier"], (path, "identifier")),
        string(found["tool"], (path, "tool")),
        decode_parts(found["content"], (path, "content"), types),
        boolean(found.get("error", False), (path, "error")),
    )


def decode_output(data: object, path: Path, types: Types = NO_TYPES) -> ModelOutput:
    found = fields(
        data, path, (), ("content", "finish_reason", "provider_data", "tool_requests", "usage")
    )
    where = (path, "tool_requests")
    requests = tuple(
        _decode_tool_request(item, (where, index))
        for index, item in enumerate(json_list(found.get("tool_requests", []), where))
    )
    usage = found.get("usage")
    provider_data = found.get("provider_data")
    return ModelOutput(
        decode_parts(found.get("content", []), (path, "content"), types),
        requests,
        None if usage is None else decode_usage(usage, (path, "usage")),
        optional_string(found.get("finish_reason"), (path, "finish_reason")),
        provider_data=(
            {} if provider_data is None else json_object(provider_data, (path, "provider_data"))
        ),
    )


def _decode_tool_request(data: object, path: Path) -> ModelToolRequest:
    found = fields(data, path, ("identifier", "tool"), ("arguments",))
    return ModelToolRequest(
        string(found["identifier"], (path, "identifier")),
        string(found["tool"], (path, "tool")),
        json_object(found.get("arguments", {}), (path, "arguments")),
    )


def decode_usage(data: object, path: Path) -> TokenUsage:
    found = fields(data, path, (), ("model", "input_tokens", "output_tokens"))
    return TokenUsage(
        string(found.get("model", ""), (path, "model")),
        integer(found.get("input_tokens", 0), (path, "input_tokens")),
        integer(found.get("output_tokens", 0), (path, "output_tokens")),
    )

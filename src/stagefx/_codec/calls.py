"""Model calls: requests, and answers (an output or a failure)."""

from __future__ import annotations

import json
from typing import Literal, TypeAlias, final, get_args

import msgspec

from stagefx._codec.content import decode_context, decode_output, encode_context, encode_output
from stagefx._codec.values import (
    JSON,
    CodecError,
    Path,
    canonical,
    checked_int,
    error_at,
    fields,
    items,
    json_list,
    json_object,
    kind_of,
    optional_number,
    optional_string,
    show,
    string,
    tagged,
    too_deep,
)
from stagefx._core.content import MultimodalContent, TextContent
from stagefx._core.conversation import ModelOutput, ModelToolRequest, TokenUsage
from stagefx._core.request import FailureKind, ModelFailure, ModelRequest, OutputSpec, ToolSpec

_OutputMode: TypeAlias = Literal["auto", "text", "json", "yaml", "schema"]
_MODES: dict[str, _OutputMode] = {mode: mode for mode in get_args(_OutputMode)}
_KINDS: dict[str, FailureKind] = {kind: kind for kind in get_args(FailureKind)}


def encode_request(request: ModelRequest) -> dict[str, JSON]:
    """`request` as `{"instructions", "context", "tools", "output", "extra"}`."""
    try:
        return _encode_request(request, "request")
    except RecursionError as error:
        raise too_deep("request") from error


def decode_request(data: JSON) -> ModelRequest:
    """The request `data` encodes; `CodecError` (saying where) if it is not one."""
    try:
        return _decode_request(data, "request")
    except RecursionError as error:
        raise too_deep("request") from error


@final
class RequestEncoder:
    """Canonical bytes of requests: `canonical(encode_request(request))`."""

    def canonical(self, request: ModelRequest) -> bytes:
        return canonical(encode_request(request))


def encode_answer(answer: ModelOutput | ModelFailure) -> dict[str, JSON]:
    """`{"output": {...}}` for a `ModelOutput` (usage and finish reason
    included), `{"failure": {"kind", "message", "retry_after"}}` for a `ModelFailure`."""
    try:
        return _encode_answer(answer, "answer")
    except RecursionError as error:
        raise too_deep("answer") from error


def decode_answer(data: JSON) -> ModelOutput | ModelFailure:
    """The answer `data` encodes, with its usage and finish reason; `CodecError` if none."""
    try:
        return _decode_answer(data, "answer")
    except RecursionError as error:
        raise too_deep("answer") from error


def decode_answer_json(text: bytes) -> ModelOutput | ModelFailure:
    """The answer the JSON `text` holds: `decode_answer(json.loads(text))`, and
    `CodecError` for text that is not JSON.

    An output of text parts is read by msgspec straight into its shape: kept
    for replay, which costs 3.6-3.9x its floor through the general path (target
    3x), 2.5-2.7x through this one. Anything else, and anything msgspec refuses,
    takes the general path, so the values and the messages are its own.
    """
    try:
        output = _READ_ANSWER.decode(text).output
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        output = None
    if output is None or output.provider_data:
        try:
            data: JSON = json.loads(text)
        except RecursionError as error:
            raise too_deep("answer") from error
        except ValueError as error:  # not JSON, not UTF-8, an integer past 4,300 digits
            raise CodecError(f"answer: not JSON ({error})") from error
        return decode_answer(data)
    where: Path = ("answer", "output")
    listed: Path = (where, "tool_requests")
    usage = output.usage
    return ModelOutput(
        MultimodalContent(tuple(map(TextContent, output.content))),
        tuple(
            ModelToolRequest(
                request.identifier,
                request.tool,
                json_object(request.arguments, ((listed, index), "arguments")),
            )
            for index, request in enumerate(output.tool_requests)
        ),
        None
        if usage is None
        else TokenUsage(
            usage.model,
            checked_int(usage.input_tokens, ((where, "usage"), "input_tokens")),
            checked_int(usage.output_tokens, ((where, "usage"), "output_tokens")),
        ),
        output.finish_reason,
    )


class _Usage(msgspec.Struct, forbid_unknown_fields=True):
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


class _ToolRequest(msgspec.Struct, forbid_unknown_fields=True):
    identifier: str
    tool: str
    arguments: dict[str, object] = {}


class _TextOutput(msgspec.Struct, forbid_unknown_fields=True):
    content: list[str] = []
    tool_requests: list[_ToolRequest] = []
    usage: _Usage | None = None
    finish_reason: str | None = None
    provider_data: dict[str, object] = {}


class _Answer(msgspec.Struct, forbid_unknown_fields=True):
    output: _TextOutput


_READ_ANSWER = msgspec.json.Decoder(_Answer)


# --- requests ----------------------------------------------------------------------------


def _encode_request(request: object, path: Path) -> dict[str, JSON]:
    if not isinstance(request, ModelRequest):
        raise error_at(path, f"expected a ModelRequest, got {kind_of(request)}")
    listed: Path = (path, "tools")
    return {
        "context": encode_context(request.context, (path, "context")),
        "extra": json_object(request.extra, (path, "extra")),
        "instructions": string(request.instructions, (path, "instructions")),
        "output": _encode_output_spec(request.output, (path, "output")),
        "tools": [
            _encode_tool(tool, (listed, index))
            for index, tool in enumerate(items(request.tools, listed, "tool specs"))
        ],
    }


def _encode_output_spec(output: object, path: Path) -> JSON:
    if not isinstance(output, OutputSpec):
        raise error_at(path, f"expected an OutputSpec, got {kind_of(output)}")
    schema = output.schema
    return {
        "mode": string(output.mode, (path, "mode")),
        "schema": None if schema is None else json_object(schema, (path, "schema")),
        "name": optional_string(output.name, (path, "name")),
    }


def _encode_tool(tool: object, path: Path) -> JSON:
    if not isinstance(tool, ToolSpec):
        raise error_at(path, f"expected a ToolSpec, got {kind_of(tool)}")
    return {
        "name": string(tool.name, (path, "name")),
        "description": string(tool.description, (path, "description")),
        "parameters": json_object(tool.parameters, (path, "parameters")),
    }


def _decode_request(data: object, path: Path) -> ModelRequest:
    found = fields(data, path, ("instructions", "context"), ("tools", "output", "extra"))
    where = (path, "tools")
    tools = json_list(found.get("tools", []), where)
    return ModelRequest(
        string(found["instructions"], (path, "instructions")),
        decode_context(found["context"], (path, "context")),
        tuple(_decode_tool(item, (where, index)) for index, item in enumerate(tools)),
        _decode_output_spec(found.get("output", {}), (path, "output")),
        json_object(found.get("extra", {}), (path, "extra")),
    )


def _decode_tool(data: object, path: Path) -> ToolSpec:
    found = fields(data, path, ("name", "description", "parameters"))
    return ToolSpec(
        string(found["name"], (path, "name")),
        string(found["description"], (path, "description")),
        json_object(found["parameters"], (path, "parameters")),
    )


def _decode_output_spec(data: object, path: Path) -> OutputSpec:
    found = fields(data, path, (), ("mode", "schema", "name"))
    mode = string(found.get("mode", "auto"), (path, "mode"))
    if mode not in _MODES:
        raise error_at((path, "mode"), f"unknown mode {show(mode)} (expected {', '.join(_MODES)})")
    schema = found.get("schema")
    return OutputSpec(
        _MODES[mode],
        None if schema is None else json_object(schema, (path, "schema")),
        optional_string(found.get("name"), (path, "name")),
    )


# --- answers -----------------------------------------------------------------------------


def _encode_answer(answer: object, path: Path) -> dict[str, JSON]:
    if isinstance(answer, ModelOutput):
        return {"output": encode_output(answer, (path, "output"))}
    if isinstance(answer, ModelFailure):
        where = (path, "failure")
        return {
            "failure": {
                "kind": string(answer.kind, (where, "kind")),
                "message": string(answer.message, (where, "message")),
                "retry_after": optional_number(answer.retry_after, (where, "retry_after")),
            }
        }
    raise error_at(path, f"expected a ModelOutput or ModelFailure, got {kind_of(answer)}")


def _decode_answer(data: object, path: Path) -> ModelOutput | ModelFailure:
    tag, body = tagged(data, path, ("output", "failure"))
    path = (path, tag)
    if tag == "output":
        return decode_output(body, path)
    found = fields(body, path, ("kind", "message"), ("retry_after",))
    kind = string(found["kind"], (path, "kind"))
    if kind not in _KINDS:
        raise error_at((path, "kind"), f"unknown kind {show(kind)} (expected {', '.join(_KINDS)})")
    return ModelFailure(
        _KINDS[kind],
        string(found["message"], (path, "message")),
        optional_number(found.get("retry_after"), (path, "retry_after")),
    )

"""A typed JSON codec for model calls and stage states: readable, deterministic, versioned.

Cassettes (record/replay) store model requests and answers with it, and stage
outputs can be stored as step outputs (DBOS) with it. Encoding gives plain
JSON data (dicts, lists, strings, numbers, booleans, None) that `json.dumps`
writes with `allow_nan=False`; callers dump with `sort_keys=True` for stable
files. Nothing is pickled and no class is looked up by a name found in the
data: the only types built are stagefx's own and those the caller passes in
`types=`.

Shapes (format version `CODEC_VERSION` = 1)::

    content  a list of parts: a text part is its string, the others are one-key objects
             ["Hello", {"image": {"url": "https://example.com/a.png", "mime_type": null}},
              {"image": {"data_base64": "iVBORw0KGgo=", "mime_type": "image/png"}},
              {"resource": {"uri": "file:///a.pdf", "mime_type": "application/pdf"}},
              {"artifact": {"text": "{\\"n\\": 1}", "type": "dict", "value": {"n": 1}}}]
    turn     {"input": {"content": [...], "tool_responses": [
                 {"identifier": "call_1", "tool": "add", "content": ["3"], "error": false}]}}
             {"output": {"content": [...], "tool_requests": [
                 {"identifier": "call_1", "tool": "add", "arguments": {"a": 1, "b": 2}}],
                 "usage": {"model": "m", "input_tokens": 5, "output_tokens": 2} | null,
                 "finish_reason": "stop" | null,
                 "provider_data": {...}}}      (written only when not empty)
    request  {"instructions": "...", "context": [turn, ...],
              "tools": [{"name": "add", "description": "...", "parameters": {...}}],
              "output": {"mode": "schema", "schema": {...} | null, "name": "Answer" | null},
              "extra": {"temperature": 0.2}}
    answer   {"output": {...as in a turn...}}
             or {"failure": {"kind": "rate_limited", "message": "...", "retry_after": 2.0 | null}}
    state    {"context": [turn, ...], "result": content,
              "usage": [{"model": "m", "input_tokens": 5, "output_tokens": 2}] | null,
              "values": {"app.models.Budget": {"limit": 3}}}

Encoding writes every field; decoding accepts data that leaves out fields
with a default (so hand-edited cassettes stay short), and rejects unknown
keys, wrong types, NaN and infinities with a `CodecError` naming the place
(`request.context[1].output.usage.input_tokens: expected an integer, got a
string`). Decoding raises nothing else, whatever the data. Encoding refuses
the same way what JSON cannot hold: NaN, infinities, non-string keys, other
objects, integers of thousands of digits, nesting past 256 levels (or cycles).

The encoded values do not carry the version: the container (a cassette's
header, a step record) stores `CODEC_VERSION` beside them and refuses data of
another version. It goes up whenever a shape changes incompatibly.

Equality: `decode_x(encode_x(v)) == v` for every content, request, answer
and state, and `ModelOutput.usage` and `.finish_reason` (left out of
`ModelOutput` equality) come back too; `ModelOutput.limits` (a provider's
rate-limit hint, also outside equality) is not encoded and decodes as None.
JSON-like mappings (tool arguments, tool parameters, output schemas, `extra`)
come back as dicts and lists, which equal what the constructors were given
when that was JSON-like dicts and lists (a tuple comes back as a list). The one lossy part is an
`ArtifactContent` whose value is not plain JSON: see `encode_content`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NoReturn, TypeAlias, cast, final, get_args

import msgspec
import pydantic

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
from stagefx._core.request import FailureKind, ModelFailure, ModelRequest, OutputSpec, ToolSpec
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals

__all__ = [
    "CODEC_VERSION",
    "JSON",
    "CodecError",
    "RequestEncoder",
    "canonical",
    "decode_answer",
    "decode_answer_json",
    "decode_content",
    "decode_request",
    "decode_state",
    "encode_answer",
    "encode_content",
    "encode_request",
    "encode_state",
    "json_value",
    "pretty",
]

CODEC_VERSION: int = 1
"""The version of the encoded shapes; stored by containers beside the data."""

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""Plain JSON data, as `json.loads` returns it."""


_Path: TypeAlias = "str | tuple[_Path, str | int]"
"""Where a value sits, built as a chain of (parent, key) pairs and rendered
as text (`request.context[1]`) only when a message needs it."""


class CodecError(ValueError):
    """Data that does not decode, or a value that does not encode; the message says where."""


_Types: TypeAlias = Mapping[str, type[object]]
"""The user types a state's values and artifacts may be of, by qualified name."""
_NO_TYPES: _Types = {}

_SORTED = msgspec.json.Encoder(order="sorted")
_KNOWN_LIMIT = 4096

_MAX_DEPTH = 256
"""How deeply JSON-like values may nest (deeper, or cyclic, values are refused)."""

_MAX_INT_BITS = 13_000
"""About 3,900 digits: larger integers are refused, as `json.dumps` and `json.loads`
refuse integers past 4,300 digits (Python's default conversion limit)."""

_OutputMode: TypeAlias = Literal["auto", "text", "json", "yaml", "schema"]
_MODES: Mapping[str, _OutputMode] = {mode: mode for mode in get_args(_OutputMode)}
_KINDS: Mapping[str, FailureKind] = {kind: kind for kind in get_args(FailureKind)}


# --- public API ---------------------------------------------------------------


def encode_content(content: MultimodalContent) -> JSON:
    """`content` as a list of parts: strings for text, one-key objects for the rest.

    An `ArtifactContent(value, text)` becomes `{"artifact": {"text": text,
    "type": <the value's qualified type name>, "value": value}}`, where
    `"value"` is written only when the value is plain JSON (exactly dict,
    list, str, int, float, bool or None all the way down, with string keys
    and finite floats); `"type"` is informative and never read back.
    """
    try:
        return _encode_content(content, "content")
    except RecursionError as error:
        raise _too_deep("content") from error


def decode_content(data: JSON) -> MultimodalContent:
    """The content `data` encodes (see `encode_content`); `CodecError` if it is not one.

    An artifact with a `"value"` decodes to `ArtifactContent(value, text)`,
    equal to the one encoded. One without (its value was not plain JSON)
    decodes to `ArtifactContent(parsed, text)`, where `parsed` is the JSON
    value `text` holds if it holds one, else `text` itself: a user type
    cannot be rebuilt without the type, and nothing needs it to be, since
    model answers hold no artifacts (parsing happens after the call) and a
    request only needs its text and a canonical value to compare by.
    """
    try:
        return _decode_content(data, "content")
    except RecursionError as error:
        raise _too_deep("content") from error


def encode_request(request: ModelRequest) -> dict[str, JSON]:
    """`request` as `{"instructions", "context", "tools", "output", "extra"}`."""
    try:
        return _encode_request(request, "request")
    except RecursionError as error:
        raise _too_deep("request") from error


@final
class RequestEncoder:
    """Canonical bytes of requests, for a stream of calls: each turn is
    encoded once, and so is the rest of a request (instructions, output
    spec, tools, extra), its bytes reused while the same objects come back.

    A conversation re-sends all its earlier turns, and a stage the same
    instructions, tools and options, with every call; requests are immutable
    values, so a Recorder keying every call pays only for what is new in it
    (a dict inside a request changed in place after a call would not be
    seen). It remembers up to 4,096 of each, then starts afresh.
    """

    def __init__(self) -> None:
        self._turns: dict[int, tuple[object, bytes]] = {}
        self._rests: dict[tuple[int, int, int, int], tuple[object, object, object, object, bytes]]
        self._rests = {}
        never = object()  # matches nothing a request holds
        self._last_rest: tuple[object, object, object, object, bytes] = (
            never,
            never,
            never,
            never,
            b"",
        )

    def canonical(self, request: object) -> bytes:
        """`canonical(encode_request(request))`, the same bytes, built from
        remembered parts; what that refuses, this refuses with its message."""
        try:
            if not isinstance(request, ModelRequest):
                _fail("request", f"expected a ModelRequest, got {_kind(request)}")
            turns: tuple[object, ...] | list[object] = request.context
            if type(turns) is not tuple:
                turns = _items(turns, ("request", "context"), "turns")
            known = self._turns
            context: list[bytes] = []
            for turn in turns:
                found = known.get(id(turn))
                if found is None or found[0] is not turn:
                    found = self._turn(turn, len(context))
                context.append(found[1])
            instructions, output, tools, extra = (
                request.instructions,
                request.output,
                request.tools,
                request.extra,
            )
            rest = self._last_rest  # the same stage again, usually
            if (
                rest[0] is not instructions
                or rest[1] is not output
                or rest[2] is not tools
                or rest[3] is not extra
            ):
                remembered = self._rests.get((id(instructions), id(output), id(tools), id(extra)))
                if (
                    remembered is None
                    or remembered[0] is not instructions
                    or remembered[1] is not output
                    or remembered[2] is not tools
                    or remembered[3] is not extra
                ):
                    remembered = self._rest(instructions, output, tools, extra)
                rest = self._last_rest = remembered
            # The keys of encode_request's object in sorted order, as canonical() writes them.
            return b"".join((b'{"context":[', b",".join(context), rest[4]))
        except (CodecError, RecursionError):  # the reference's checks, in its order, say why
            return canonical(encode_request(cast(ModelRequest, request)))

    def _turn(self, turn: object, index: int) -> tuple[object, bytes]:
        """Encode a turn not seen before, and remember it."""
        encoded = canonical(_encode_turn(turn, (("request", "context"), index)))
        return _remember(self._turns, turn, encoded)

    def _rest(
        self, instructions: object, output: object, tools: object, extra: object
    ) -> tuple[object, object, object, object, bytes]:
        """`],"extra":...,"tools":[...]}` for parts not seen together before,
        remembered by their identity (a stage sends the same ones with every call)."""
        path: _Path = "request"
        listed: _Path = (path, "tools")
        rest = b"".join(
            (
                b'],"extra":',
                canonical(_json_object(extra, (path, "extra"))),
                b',"instructions":',
                canonical(_string(instructions, (path, "instructions"))),
                b',"output":',
                canonical(_encode_output_spec(output, (path, "output"))),
                b',"tools":[',
                b",".join(
                    [
                        canonical(_encode_tool(tool, (listed, index)))
                        for index, tool in enumerate(_items(tools, listed, "tool specs"))
                    ]
                ),
                b"]}",
            )
        )
        if len(self._rests) >= _KNOWN_LIMIT:
            self._rests.clear()
        # The parts kept alive with the bytes: their ids stay their own.
        remembered = (instructions, output, tools, extra, rest)
        self._rests[(id(instructions), id(output), id(tools), id(extra))] = remembered
        return remembered


def _remember(
    known: dict[int, tuple[object, bytes]], value: object, encoded: bytes
) -> tuple[object, bytes]:
    if len(known) >= _KNOWN_LIMIT:
        known.clear()
    remembered = known[id(value)] = (value, encoded)  # kept alive: its id stays its own
    return remembered


def canonical(data: JSON) -> bytes:
    """`data` as compact UTF-8 JSON with sorted keys: equal data, equal bytes
    (keys to match by and to hash). What it cannot write (a lone surrogate,
    an integer of thousands of digits, an object that is not JSON) raises
    `CodecError`; NaN and infinities, which the codec never produces, would
    be written as null."""
    try:
        return _SORTED.encode(data)
    except UnicodeEncodeError as error:
        raise CodecError(f"a string UTF-8 cannot hold: {error.reason}") from error
    except (ValueError, TypeError) as error:
        raise CodecError(f"not JSON that can be written: {error}") from error


def pretty(data: JSON) -> str:
    """`data` as JSON text with sorted keys, indented by two spaces: files
    that are the same bytes for the same data and diff line by line."""
    return msgspec.json.format(canonical(data), indent=2).decode("utf-8")


def decode_request(data: JSON) -> ModelRequest:
    """The request `data` encodes; `CodecError` (saying where) if it is not one."""
    try:
        return _decode_request(data, "request")
    except RecursionError as error:
        raise _too_deep("request") from error


def json_value(value: object, what: str) -> JSON:
    """`value` (tool arguments, a schema, `extra`) as the codec writes it;
    `CodecError`, naming `what`, for what JSON cannot hold: NaN, infinities,
    integers of thousands of digits, other objects, absurd nesting."""
    try:
        return _json(value, what)
    except RecursionError as error:
        raise _too_deep(what) from error


def encode_answer(answer: ModelOutput | ModelFailure) -> dict[str, JSON]:
    """`{"output": {...}}` for a `ModelOutput` (usage and finish reason
    included), `{"failure": {"kind", "message", "retry_after"}}` for a `ModelFailure`."""
    try:
        return _encode_answer(answer, "answer")
    except RecursionError as error:
        raise _too_deep("answer") from error


def decode_answer(data: JSON) -> ModelOutput | ModelFailure:
    """The answer `data` encodes, with its usage and finish reason; `CodecError` if none."""
    try:
        return _decode_answer(data, "answer")
    except RecursionError as error:
        raise _too_deep("answer") from error


def decode_answer_json(text: bytes) -> ModelOutput | ModelFailure:
    """The answer the JSON `text` holds: `decode_answer(json.loads(text))`, faster.

    A model output is read by msgspec straight from the text, shape and
    types checked as it is parsed; anything else it holds (a failure, a part
    that is not text) and anything it refuses goes through `json.loads` and
    `decode_answer`, so the values and the messages are theirs.
    """
    try:
        read = _READ_OUTPUT.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        try:
            data: JSON = json.loads(text)
        except RecursionError as error:
            raise _too_deep("answer") from error
        except ValueError as error:  # not JSON, not UTF-8, an integer past 4,300 digits
            raise CodecError(f"answer: not JSON ({error})") from error
        return decode_answer(data)
    output = read.output
    if output.provider_data:  # rare: the general decoder checks it as JSON
        return decode_answer(json.loads(text))
    usage = output.usage
    return ModelOutput(
        MultimodalContent(tuple(map(TextContent, output.content))),
        _read_tool_requests(output.tool_requests) if output.tool_requests else (),
        None if usage is None else _read_usage(usage),
        output.finish_reason,
    )


def _read_tool_requests(requests: list[_ReadToolRequest]) -> tuple[ModelToolRequest, ...]:
    where: _Path = (("answer", "output"), "tool_requests")
    return tuple(
        [
            ModelToolRequest(
                request.identifier,
                request.tool,
                _json_object(request.arguments, ((where, index), "arguments")),
            )
            for index, request in enumerate(requests)
        ]
    )


def _read_usage(usage: _ReadUsage) -> TokenUsage:
    path: _Path = (("answer", "output"), "usage")
    return TokenUsage(
        usage.model,
        _checked_int(usage.input_tokens, (path, "input_tokens")),
        _checked_int(usage.output_tokens, (path, "output_tokens")),
    )


def encode_state(state: StageState, *, types: Sequence[type[object]] = ()) -> dict[str, JSON]:
    """`state` as `{"context", "result", "usage", "values"}`.

    `"usage"` holds the state's `UsageTotals` (null when it has none). Every
    other value must be of a type listed in `types` (exactly: not a subclass);
    it is stored under the type's qualified name (`module.Qualname`) as
    pydantic's JSON dump of it, so the type must be one pydantic handles (a
    dataclass, a pydantic model, a TypedDict...). A value of any other type
    raises `CodecError` naming the type.
    """
    try:
        return _encode_state(state, _named_types(types, "state"), "state")
    except RecursionError as error:
        raise _too_deep("state") from error


def decode_state(data: JSON, *, types: Sequence[type[object]] = ()) -> StageState:
    """The state `data` encodes; its user values are rebuilt by pydantic
    validation as the `types` of the same qualified names, and a value of a
    type not listed raises `CodecError`. Decoding runs no code but stagefx's
    and pydantic's validation of the listed types."""
    try:
        return _decode_state(data, _named_types(types, "state"), "state")
    except RecursionError as error:
        raise _too_deep("state") from error


def _too_deep(what: str) -> CodecError:
    """Running out of stack (data nested absurdly deep) as a `CodecError`."""
    return CodecError(f"{what}: nested too deeply")


# --- errors and paths -----------------------------------------------------------


def _fail(path: _Path, problem: str) -> NoReturn:
    raise CodecError(f"{_render(path)}: {problem}")


def _kind(data: object) -> str:
    """What `data` is, for messages (never its value: it may be huge)."""
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int):
        return "an integer"
    if isinstance(data, float):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list | tuple):
        return "a list"
    if isinstance(data, dict):
        return "an object"
    return _type_name(type(data))


def _show(key: object) -> str:
    if isinstance(key, str):
        return repr(key if len(key) <= 40 else key[:40] + "...")
    return _kind(key)


def _render(path: _Path) -> str:
    """`path` as text: `request.context[1].output.usage`."""
    steps: list[str | int] = []
    while isinstance(path, tuple):
        path, step = path
        steps.append(step)
    text = path
    for step in reversed(steps):
        if isinstance(step, int):
            text = f"{text}[{step}]"
        elif step.isidentifier():
            text = f"{text}.{step}"
        else:
            text = f"{text}[{_show(step)}]"
    return text


def _type_name(kind: type[object]) -> str:
    module = getattr(kind, "__module__", None)
    name = str(getattr(kind, "__qualname__", None) or getattr(kind, "__name__", "?"))
    return name if module in (None, "builtins") else f"{module}.{name}"


# --- JSON values ------------------------------------------------------------------


def _json(value: object, path: _Path, depth: int = 0) -> JSON:
    """`value` as fresh plain JSON: any mapping becomes a dict, a tuple a list,
    subclasses of str, int, float and bool their base type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value is True
    if isinstance(value, int):
        return _checked_int(value, path)
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(path, f"{value!r} is not JSON (NaN and infinities are refused)")
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if depth >= _MAX_DEPTH:
        _fail(path, f"nested deeper than {_MAX_DEPTH} levels (or cyclic)")
    if isinstance(value, Mapping):
        mapping = cast("Mapping[object, object]", value)
        return _json_mapping(mapping, path, depth)
    if isinstance(value, list | tuple):
        items = cast("Sequence[object]", value)
        return [_json(item, (path, index), depth + 1) for index, item in enumerate(items)]
    _fail(path, f"{_kind(value)} is not JSON")


def _json_mapping(value: Mapping[object, object], path: _Path, depth: int = 0) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            _fail(path, f"keys must be strings, not {_kind(key)}")
        result[str.__str__(key)] = _json(item, (path, key), depth + 1)
    return result


def _json_object(data: object, path: _Path) -> dict[str, JSON]:
    if not isinstance(data, Mapping):
        _fail(path, f"expected an object, got {_kind(data)}")
    mapping = cast("Mapping[object, object]", data)
    return _json_mapping(mapping, path)


def _is_plain(value: object, depth: int = 0) -> bool:
    """Whether `value` is JSON of exactly the builtin types, so it decodes to an equal value."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return True
    if isinstance(value, float):
        return kind is float and math.isfinite(value)
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, list):
        items = cast("list[object]", value)
        return kind is list and all(_is_plain(item, depth + 1) for item in items)
    if isinstance(value, dict):
        mapping = cast("dict[object, object]", value)
        return kind is dict and all(
            type(key) is str and _is_plain(item, depth + 1) for key, item in mapping.items()
        )
    return False


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _no_constant(literal: str) -> NoReturn:
    raise ValueError(f"{literal} is not JSON")


def _parsed(text: str) -> object:
    """The JSON value `text` holds, or `text` itself if it holds none."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return text


# --- scalars ------------------------------------------------------------------------


def _string(data: object, path: _Path) -> str:
    if not isinstance(data, str):
        _fail(path, f"expected a string, got {_kind(data)}")
    return str.__str__(data)


def _optional_string(data: object, path: _Path) -> str | None:
    return None if data is None else _string(data, path)


def _integer(data: object, path: _Path) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        _fail(path, f"expected an integer, got {_kind(data)}")
    return _checked_int(data, path)


def _checked_int(value: int, path: _Path) -> int:
    if value.bit_length() > _MAX_INT_BITS:
        _fail(path, f"integer too large for JSON ({value.bit_length()} bits)")
    return int.__int__(value)


def _boolean(data: object, path: _Path) -> bool:
    if not isinstance(data, bool):
        _fail(path, f"expected a boolean, got {_kind(data)}")
    return data is True


def _optional_number(data: object, path: _Path) -> float | None:
    if data is None:
        return None
    if isinstance(data, bool) or not isinstance(data, int | float):
        _fail(path, f"expected a number or null, got {_kind(data)}")
    try:
        number = float(data)
    except OverflowError:
        _fail(path, "number too large")
    if not math.isfinite(number):
        _fail(path, "NaN and infinities are refused")
    return number


def _list(data: object, path: _Path) -> list[object]:
    if not isinstance(data, list):
        _fail(path, f"expected a list, got {_kind(data)}")
    return cast("list[object]", data)


def _fields(
    data: object, path: _Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, object]:
    """`data` as an object with all `required` keys and no keys but those and `optional`."""
    if not isinstance(data, dict):
        _fail(path, f"expected an object, got {_kind(data)}")
    fields = cast("dict[str, object]", data)  # its keys are checked to be of these strings next
    for key in fields:
        if key not in optional and key not in required:
            known = ", ".join((*required, *optional))
            _fail(path, f"unexpected key {_show(key)} (expected {known})")
    for key in required:
        if key not in fields:
            _fail(path, f"missing key {key!r}")
    return fields


def _as_dict(data: object) -> dict[object, object] | None:
    """`data` if it is a dict (its keys and values not checked yet)."""
    return cast("dict[object, object]", data) if isinstance(data, dict) else None


def _exact_dict(data: object) -> dict[str, object] | None:
    """`data` if it is exactly a dict (its keys not checked yet), for fast
    paths that trust `keys()`: a subclass could hide keys from it."""
    return cast("dict[str, object]", data) if type(data) is dict else None


def _tagged(data: object, path: _Path, tags: tuple[str, ...]) -> tuple[str, object]:
    """The one key of `data` (one of `tags`) and its value."""
    tagged = _as_dict(data)
    if tagged is None or len(tagged) != 1:
        _fail(path, f"expected an object with one key, one of {', '.join(tags)}; got {_kind(data)}")
    ((tag, body),) = tagged.items()
    if not isinstance(tag, str) or tag not in tags:
        _fail(path, f"unexpected key {_show(tag)} (expected one of {', '.join(tags)})")
    return tag, body


# --- content -------------------------------------------------------------------------


def _encode_content(content: object, path: _Path, types: _Types = _NO_TYPES) -> list[JSON]:
    if not isinstance(content, MultimodalContent):
        _fail(path, f"expected MultimodalContent, got {_kind(content)}")
    parts = _items(content.parts, (path, "parts"), "content parts")
    return [_encode_part(part, (path, index), types) for index, part in enumerate(parts)]


def _items(value: object, path: _Path, what: str) -> tuple[object, ...] | list[object]:
    """`value` if it is a tuple or list (of `what`, checked one by one by the caller)."""
    if not isinstance(value, tuple | list):
        _fail(path, f"expected a tuple of {what}, got {_kind(value)}")
    return cast("tuple[object, ...] | list[object]", value)


def _encode_part(part: object, path: _Path, types: _Types = _NO_TYPES) -> JSON:
    if isinstance(part, TextContent):
        return _string(part.text, path)
    if isinstance(part, ImageContent):
        image: dict[str, JSON] = {}
        if part.data is not None:
            if not isinstance(cast(object, part.data), bytes | bytearray):  # typed is not checked
                _fail((path, "data"), f"expected bytes, got {_kind(part.data)}")
            image["data_base64"] = base64.b64encode(part.data).decode("ascii")
        else:
            image["url"] = _string(part.url, (path, "url"))
        image["mime_type"] = _optional_string(part.mime_type, (path, "mime_type"))
        return {"image": image}
    if isinstance(part, ResourceContent):
        return {
            "resource": {
                "uri": _string(part.uri, (path, "uri")),
                "mime_type": _optional_string(part.mime_type, (path, "mime_type")),
            }
        }
    if isinstance(part, ArtifactContent):
        artifact: dict[str, JSON] = {
            "text": _string(part.text, (path, "text")),
            "type": _type_name(type(part.value)),
        }
        kind = type(part.value)
        if _is_plain(part.value):
            artifact["value"] = _json(part.value, (path, "value"))
        elif types.get(_type_name(kind)) is kind:  # a type the caller named: its dump, to rebuild
            artifact["value"] = _dumped(part.value, f"{_render((path, 'value'))}")
        return {"artifact": artifact}
    _fail(path, f"expected a content part, got {_kind(part)}")


def _decode_content(data: object, path: _Path, types: _Types = _NO_TYPES) -> MultimodalContent:
    parts: list[ContentPart] = []
    for index, item in enumerate(_list(data, path)):
        parts.append(
            TextContent(item) if type(item) is str else _decode_part(item, (path, index), types)
        )
    return MultimodalContent(tuple(parts))


def _decode_part(data: object, path: _Path, types: _Types = _NO_TYPES) -> ContentPart:
    if isinstance(data, str):
        return TextContent(str.__str__(data))
    tag, body = _tagged(data, path, ("image", "resource", "artifact"))
    path = (path, tag)
    if tag == "image":
        return _decode_image(body, path)
    if tag == "resource":
        fields = _fields(body, path, ("uri",), ("mime_type",))
        return ResourceContent(
            _string(fields["uri"], (path, "uri")),
            _optional_string(fields.get("mime_type"), (path, "mime_type")),
        )
    fields = _fields(body, path, ("text",), ("type", "value"))
    text = _string(fields["text"], (path, "text"))
    kind = types.get(_string(fields["type"], (path, "type"))) if "type" in fields else None
    if "value" in fields:
        if kind is not None:  # a type the caller named: rebuilt from its dump
            return ArtifactContent(
                _validated(kind, fields["value"], _render((path, "value"))), text
            )
        return ArtifactContent(_json(fields["value"], (path, "value")), text)
    return ArtifactContent(_parsed(text), text)


def _decode_image(body: object, path: _Path) -> ImageContent:
    fields = _fields(body, path, (), ("url", "data_base64", "mime_type"))
    mime_type = _optional_string(fields.get("mime_type"), (path, "mime_type"))
    if ("url" in fields) == ("data_base64" in fields):
        _fail(path, "an image needs exactly one of 'url' and 'data_base64'")
    if "url" in fields:
        return ImageContent(url=_string(fields["url"], (path, "url")), mime_type=mime_type)
    where = (path, "data_base64")
    encoded = _string(fields["data_base64"], where)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        _fail(where, "not valid base64")
    if not mime_type:
        _fail(path, "an image given as data needs a 'mime_type', e.g. 'image/png'")
    return ImageContent(data=data, mime_type=mime_type)


# --- conversation -----------------------------------------------------------------------


def _encode_turn(turn: object, path: _Path, types: _Types = _NO_TYPES) -> JSON:
    if isinstance(turn, ModelInput):
        return {"input": _encode_input(turn, (path, "input"), types)}
    if isinstance(turn, ModelOutput):
        return {"output": _encode_output(turn, (path, "output"), types)}
    _fail(path, f"expected a ModelInput or ModelOutput, got {_kind(turn)}")


def _encode_context(context: object, path: _Path, types: _Types = _NO_TYPES) -> list[JSON]:
    turns = _items(context, path, "turns")
    return [_encode_turn(turn, (path, index), types) for index, turn in enumerate(turns)]


def _encode_input(turn: ModelInput, path: _Path, types: _Types = _NO_TYPES) -> dict[str, JSON]:
    responses: list[JSON] = []
    listed = _items(turn.tool_responses, (path, "tool_responses"), "tool responses")
    for index, response in enumerate(listed):
        where = ((path, "tool_responses"), index)
        if not isinstance(response, ModelToolResponse):
            _fail(where, f"expected a ModelToolResponse, got {_kind(response)}")
        responses.append(
            {
                "identifier": _string(response.identifier, (where, "identifier")),
                "tool": _string(response.tool, (where, "tool")),
                "content": _encode_content(response.content, (where, "content"), types),
                "error": _boolean(response.error, (where, "error")),
            }
        )
    return {
        "content": _encode_content(turn.content, (path, "content"), types),
        "tool_responses": responses,
    }


def _encode_output(turn: ModelOutput, path: _Path, types: _Types = _NO_TYPES) -> dict[str, JSON]:
    requests: list[JSON] = []
    listed = _items(turn.tool_requests, (path, "tool_requests"), "tool requests")
    for index, request in enumerate(listed):
        where = ((path, "tool_requests"), index)
        if not isinstance(request, ModelToolRequest):
            _fail(where, f"expected a ModelToolRequest, got {_kind(request)}")
        requests.append(
            {
                "identifier": _string(request.identifier, (where, "identifier")),
                "tool": _string(request.tool, (where, "tool")),
                "arguments": _json_object(request.arguments, (where, "arguments")),
            }
        )
    usage: JSON = None
    if turn.usage is not None:
        usage = _encode_usage(turn.usage, (path, "usage"))
    encoded: dict[str, JSON] = {
        "content": _encode_content(turn.content, (path, "content"), types),
        "tool_requests": requests,
        "usage": usage,
        "finish_reason": _optional_string(turn.finish_reason, (path, "finish_reason")),
    }
    if turn.provider_data:  # written only when there is some: other encodings stay as they were
        encoded["provider_data"] = _json_object(turn.provider_data, (path, "provider_data"))
    return encoded


def _encode_usage(usage: object, path: _Path) -> dict[str, JSON]:
    if not isinstance(usage, TokenUsage):
        _fail(path, f"expected a TokenUsage, got {_kind(usage)}")
    return {
        "model": _string(usage.model, (path, "model")),
        "input_tokens": _integer(usage.input_tokens, (path, "input_tokens")),
        "output_tokens": _integer(usage.output_tokens, (path, "output_tokens")),
    }


def _decode_context(
    data: object, path: _Path, types: _Types = _NO_TYPES
) -> tuple[ModelInput | ModelOutput, ...]:
    return tuple(
        _decode_turn(item, (path, index), types) for index, item in enumerate(_list(data, path))
    )


def _decode_turn(data: object, path: _Path, types: _Types = _NO_TYPES) -> ModelInput | ModelOutput:
    tag, body = _tagged(data, path, ("input", "output"))
    if tag == "input":
        return _decode_input(body, (path, tag), types)
    return _decode_output(body, (path, tag), types)


def _decode_input(data: object, path: _Path, types: _Types = _NO_TYPES) -> ModelInput:
    fields = _fields(data, path, (), ("content", "tool_responses"))
    where = (path, "tool_responses")
    responses = _list(fields.get("tool_responses", []), where)
    return ModelInput(
        _decode_content(fields.get("content", []), (path, "content"), types),
        tuple(
            _decode_response(item, (where, index), types) for index, item in enumerate(responses)
        ),
    )


def _decode_response(data: object, path: _Path, types: _Types = _NO_TYPES) -> ModelToolResponse:
    fields = _fields(data, path, ("identifier", "tool", "content"), ("error",))
    return ModelToolResponse(
        _string(fields["identifier"], (path, "identifier")),
        _string(fields["tool"], (path, "tool")),
        _decode_content(fields["content"], (path, "content"), types),
        _boolean(fields.get("error", False), (path, "error")),
    )


def _decode_output(data: object, path: _Path, types: _Types = _NO_TYPES) -> ModelOutput:
    exact = _exact_dict(data)
    fields: dict[str, object] = (
        exact
        if exact is not None and exact.keys() <= _OUTPUT_KEYS
        else _fields(data, path, (), tuple(sorted(_OUTPUT_KEYS)))  # says what is wrong
    )
    requests: tuple[ModelToolRequest, ...] = ()
    listed = fields.get("tool_requests")
    if listed is not None or "tool_requests" in fields:
        where = (path, "tool_requests")
        requests = tuple(
            [
                _decode_tool_request(item, (where, index))
                for index, item in enumerate(_list(listed, where))
            ]
        )
    usage = fields.get("usage")
    finish_reason = fields.get("finish_reason")
    provider_data = fields.get("provider_data")
    return ModelOutput(
        _decode_content(fields.get("content", _NO_PARTS), (path, "content"), types),
        requests,
        None if usage is None else _decode_usage(usage, (path, "usage")),
        None if finish_reason is None else _string(finish_reason, (path, "finish_reason")),
        provider_data=(
            {} if provider_data is None else _json_object(provider_data, (path, "provider_data"))
        ),
    )


_OUTPUT_KEYS = frozenset(("content", "tool_requests", "usage", "finish_reason", "provider_data"))
_NO_PARTS: list[JSON] = []


def _decode_tool_request(data: object, path: _Path) -> ModelToolRequest:
    fields = _fields(data, path, ("identifier", "tool"), ("arguments",))
    return ModelToolRequest(
        _string(fields["identifier"], (path, "identifier")),
        _string(fields["tool"], (path, "tool")),
        _json_object(fields.get("arguments", {}), (path, "arguments")),
    )


def _decode_usage(data: object, path: _Path) -> TokenUsage:
    fields = _fields(data, path, (), ("model", "input_tokens", "output_tokens"))
    return TokenUsage(
        _string(fields.get("model", ""), (path, "model")),
        _integer(fields.get("input_tokens", 0), (path, "input_tokens")),
        _integer(fields.get("output_tokens", 0), (path, "output_tokens")),
    )


# --- requests and answers ---------------------------------------------------------------


def _encode_request(request: object, path: _Path) -> dict[str, JSON]:
    if not isinstance(request, ModelRequest):
        _fail(path, f"expected a ModelRequest, got {_kind(request)}")
    tools, extra = request.tools, request.extra
    listed: _Path = (path, "tools")
    # In sorted order, as RequestEncoder checks them: with several faults, both report the same.
    return {
        "context": _encode_context(request.context, (path, "context")),
        "extra": _json_object(extra, (path, "extra")),
        "instructions": _string(request.instructions, (path, "instructions")),
        "output": _encode_output_spec(request.output, (path, "output")),
        "tools": [
            _encode_tool(tool, (listed, index))
            for index, tool in enumerate(_items(tools, listed, "tool specs"))
        ],
    }


def _encode_output_spec(output: object, path: _Path) -> JSON:
    if not isinstance(output, OutputSpec):
        _fail(path, f"expected an OutputSpec, got {_kind(output)}")
    schema = output.schema
    return {
        "mode": _string(output.mode, (path, "mode")),
        "schema": None if schema is None else _json_object(schema, (path, "schema")),
        "name": _optional_string(output.name, (path, "name")),
    }


def _encode_tool(tool: object, path: _Path) -> JSON:
    if not isinstance(tool, ToolSpec):
        _fail(path, f"expected a ToolSpec, got {_kind(tool)}")
    return {
        "name": _string(tool.name, (path, "name")),
        "description": _string(tool.description, (path, "description")),
        "parameters": _json_object(tool.parameters, (path, "parameters")),
    }


def _decode_request(data: object, path: _Path) -> ModelRequest:
    fields = _fields(data, path, ("instructions", "context"), ("tools", "output", "extra"))
    where = (path, "tools")
    tools = _list(fields.get("tools", []), where)
    return ModelRequest(
        _string(fields["instructions"], (path, "instructions")),
        _decode_context(fields["context"], (path, "context")),
        tuple(_decode_tool(item, (where, index)) for index, item in enumerate(tools)),
        _decode_output_spec(fields.get("output", {}), (path, "output")),
        _json_object(fields.get("extra", {}), (path, "extra")),
    )


def _decode_tool(data: object, path: _Path) -> ToolSpec:
    fields = _fields(data, path, ("name", "description", "parameters"))
    return ToolSpec(
        _string(fields["name"], (path, "name")),
        _string(fields["description"], (path, "description")),
        _json_object(fields["parameters"], (path, "parameters")),
    )


def _decode_output_spec(data: object, path: _Path) -> OutputSpec:
    fields = _fields(data, path, (), ("mode", "schema", "name"))
    mode = _string(fields.get("mode", "auto"), (path, "mode"))
    if mode not in _MODES:
        _fail((path, "mode"), f"unknown mode {_show(mode)} (expected {', '.join(_MODES)})")
    schema = fields.get("schema")
    return OutputSpec(
        _MODES[mode],
        None if schema is None else _json_object(schema, (path, "schema")),
        _optional_string(fields.get("name"), (path, "name")),
    )


def _encode_answer(answer: object, path: _Path) -> dict[str, JSON]:
    if isinstance(answer, ModelOutput):
        return {"output": _encode_output(answer, (path, "output"))}
    if isinstance(answer, ModelFailure):
        where = (path, "failure")
        return {
            "failure": {
                "kind": _string(answer.kind, (where, "kind")),
                "message": _string(answer.message, (where, "message")),
                "retry_after": _optional_number(answer.retry_after, (where, "retry_after")),
            }
        }
    _fail(path, f"expected a ModelOutput or ModelFailure, got {_kind(answer)}")


# What msgspec reads from JSON is a tree, never a cycle: no struct needs the GC (gc=False).
class _ReadUsage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


class _ReadToolRequest(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    identifier: str
    tool: str
    arguments: dict[str, object] = {}


class _ReadOutput(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An output whose content is text only, as msgspec reads it (see `decode_answer_json`)."""

    content: list[str] = []
    tool_requests: list[_ReadToolRequest] = []
    usage: _ReadUsage | None = None
    finish_reason: str | None = None
    provider_data: dict[str, object] = {}


class _ReadAnswer(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    output: _ReadOutput


_READ_OUTPUT = msgspec.json.Decoder(_ReadAnswer)


def _decode_answer(data: object, path: _Path) -> ModelOutput | ModelFailure:
    answer = _exact_dict(data)
    if answer is not None and len(answer) == 1 and "output" in answer:  # the usual answer, quickly
        return _decode_output(answer["output"], (path, "output"))
    tag, body = _tagged(data, path, ("output", "failure"))
    path = (path, tag)
    if tag == "output":
        return _decode_output(body, path)
    fields = _fields(body, path, ("kind", "message"), ("retry_after",))
    kind = _string(fields["kind"], (path, "kind"))
    if kind not in _KINDS:
        _fail((path, "kind"), f"unknown kind {_show(kind)} (expected {', '.join(_KINDS)})")
    return ModelFailure(
        _KINDS[kind],
        _string(fields["message"], (path, "message")),
        _optional_number(fields.get("retry_after"), (path, "retry_after")),
    )


# --- states -------------------------------------------------------------------------------


def _named_types(types: Sequence[type[object]], path: _Path) -> dict[str, type[object]]:
    named: dict[str, type[object]] = {}
    for kind in types:
        if not isinstance(cast(object, kind), type):  # typed is not checked
            _fail(path, f"types= holds types, not {_kind(kind)}")
        name = _type_name(kind)
        if named.get(name, kind) is not kind:
            _fail(path, f"types= holds two types named {name}")
        named[name] = kind
    return named


_ADAPTERS: dict[type[object], pydantic.TypeAdapter[object]] = {}
"""Adapters of the listed types, which are costly to build (cleared past 128 types)."""


def _adapter(kind: type[object], path: _Path) -> pydantic.TypeAdapter[object]:
    adapter = _ADAPTERS.get(kind)
    if adapter is not None:
        return adapter
    try:
        adapter = pydantic.TypeAdapter(kind)
    except (pydantic.PydanticUserError, pydantic.PydanticUndefinedAnnotation, TypeError) as error:
        raise CodecError(
            f"{_render(path)}: pydantic cannot handle {_type_name(kind)} ({error}); "
            "make it a dataclass or a pydantic model"
        ) from error
    if len(_ADAPTERS) >= 128:
        _ADAPTERS.clear()
    _ADAPTERS[kind] = adapter
    return adapter


def _dumped(value: object, where: str) -> JSON:
    """A value of a caller's type as JSON, by pydantic."""
    kind = type(value)
    try:
        dumped = _adapter(kind, where).dump_python(value, mode="json")
    except CodecError:
        raise
    except Exception as error:  # a type's own serializers run here: any failure is theirs
        raise CodecError(
            f"{where}: pydantic cannot dump the {_type_name(kind)}: {error}"
        ) from error
    return _json(dumped, where)


def _validated(kind: type[object], dumped: object, where: str) -> object:
    """A value of `kind` rebuilt from its dump, by pydantic."""
    try:
        value = _adapter(kind, where).validate_python(dumped)
    except CodecError:
        raise
    except Exception as error:  # validation runs the type's own code: any failure is bad data
        raise CodecError(f"{where}: not a valid {_type_name(kind)}: {error}") from error
    if type(value) is not kind:
        _fail(where, f"validation gave a {_type_name(type(value))}, not a {_type_name(kind)}")
    return value


def _encode_state(state: object, types: Mapping[str, type[object]], path: _Path) -> dict[str, JSON]:
    if not isinstance(state, StageState):
        _fail(path, f"expected a StageState, got {_kind(state)}")
    usage: JSON = None
    values: dict[str, JSON] = {}
    for value in state.values:
        kind = type(value)
        if isinstance(value, UsageTotals):
            where: _Path = (path, "usage")
            usage = [_encode_usage(item, (where, index)) for index, item in enumerate(value.models)]
            continue
        name = _type_name(kind)
        where = f"{_render((path, 'values'))}[{_show(name)}]"
        if types.get(name) is not kind:
            _fail(where, f"no codec for a value of type {name}: pass the type in types=")
        values[name] = _dumped(value, where)
    return {
        "context": _encode_context(state.context, (path, "context"), types),
        "result": _encode_content(state.result, (path, "result"), types),
        "usage": usage,
        "values": values,
    }


def _decode_state(data: object, types: Mapping[str, type[object]], path: _Path) -> StageState:
    fields = _fields(data, path, (), ("context", "result", "usage", "values"))
    values: list[object] = []
    usage = fields.get("usage")
    if usage is not None:
        where: _Path = (path, "usage")
        totals = tuple(
            _decode_usage(item, (where, index)) for index, item in enumerate(_list(usage, where))
        )
        values.append(UsageTotals(totals))
    stored = fields.get("values", {})
    if not isinstance(stored, dict):
        _fail((path, "values"), f"expected an object, got {_kind(stored)}")
    for name, dumped in cast("dict[object, object]", stored).items():
        where = f"{_render((path, 'values'))}[{_show(name)}]"
        kind = types.get(name) if isinstance(name, str) else None
        if kind is None or kind is UsageTotals:
            _fail(where, f"no codec for a value of type {_show(name)}: pass the type in types=")
        values.append(_validated(kind, dumped, where))
    return StageState(
        context=_decode_context(fields.get("context", []), (path, "context"), types),
        result=_decode_content(fields.get("result", []), (path, "result"), types),
        values=tuple(values),
    )

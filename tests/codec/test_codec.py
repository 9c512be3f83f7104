"""The JSON codec: values round-trip, encodings are deterministic JSON, and any
data that does not decode raises `CodecError` and nothing else."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import math
import types
from collections.abc import Callable, Iterator, KeysView, Sequence
from typing import TypeAlias, TypeVar, cast, get_args

import attrs
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagefx._codec as codec
from stagefx._codec import (
    CODEC_VERSION,
    JSON,
    CodecError,
    canonical,
    decode_answer,
    decode_answer_json,
    decode_content,
    decode_request,
    decode_state,
    encode_answer,
    encode_content,
    encode_request,
    encode_state,
)
from stagefx._codec.values import type_name
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

T = TypeVar("T")
Turn: TypeAlias = ModelInput | ModelOutput
Answer: TypeAlias = ModelOutput | ModelFailure

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GARBAGE_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- user value types a state may hold ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Budget:
    limit: int
    spent: float = 0.0
    tags: tuple[str, ...] = ()


class Note(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)

    text: str
    day: datetime.date | None = None


@attrs.frozen
class Plan:
    """An attrs class: pydantic has no schema for it."""

    steps: int


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    """Subclasses of JSON types are not plain: they would come back as the base type."""

    LOW = 1


class Steps(list[int]):
    pass


USER_TYPES: Sequence[type[object]] = (Budget, Note)


# --- strategies ---------------------------------------------------------------------------

texts = st.text(max_size=10)
small_texts = st.text(alphabet="abcxyz _-.\u00e9\u4e2d\U0001f600", max_size=6)
finite = st.floats(allow_nan=False, allow_infinity=False)


def _json_containers(inner: st.SearchStrategy[JSON]) -> st.SearchStrategy[JSON]:
    return st.lists(inner, max_size=3) | st.dictionaries(small_texts, inner, max_size=3)


json_leaves: st.SearchStrategy[JSON] = st.one_of(
    st.none(), st.booleans(), st.integers(), finite, texts
)
json_values: st.SearchStrategy[JSON] = st.recursive(json_leaves, _json_containers, max_leaves=8)
json_objects: st.SearchStrategy[dict[str, JSON]] = st.dictionaries(
    small_texts, json_values, max_size=3
)
optional_texts = st.none() | small_texts


def _image_parts() -> st.SearchStrategy[ImageContent]:
    by_url = st.builds(ImageContent.of_url, texts, mime_type=optional_texts)
    by_bytes = st.builds(
        ImageContent.of_bytes, st.binary(max_size=12), mime_type=st.text(min_size=1, max_size=8)
    )
    return by_url | by_bytes


parts: st.SearchStrategy[ContentPart] = st.one_of(
    st.builds(TextContent, texts),
    _image_parts(),
    st.builds(ResourceContent, texts, optional_texts),
    st.builds(ArtifactContent, json_values),
    st.builds(ArtifactContent, json_values, texts),
)
contents: st.SearchStrategy[MultimodalContent] = st.lists(parts, max_size=3).map(
    lambda items: MultimodalContent(tuple(items))
)
usages = st.builds(TokenUsage, small_texts, st.integers(), st.integers())
tool_requests = st.builds(ModelToolRequest, small_texts, small_texts, json_objects)
tool_responses = st.builds(ModelToolResponse, small_texts, small_texts, contents, st.booleans())
model_inputs = st.builds(ModelInput, contents, st.lists(tool_responses, max_size=2).map(tuple))
model_outputs = st.builds(
    ModelOutput,
    contents,
    st.lists(tool_requests, max_size=2).map(tuple),
    usage=st.none() | usages,
    finish_reason=optional_texts,
)
turns: st.SearchStrategy[Turn] = model_inputs | model_outputs
contexts = st.lists(turns, max_size=3).map(tuple)
tool_specs = st.builds(ToolSpec, small_texts, texts, json_objects)
output_specs = st.builds(
    OutputSpec,
    st.sampled_from(["auto", "text", "json", "yaml", "schema"]),
    st.none() | json_objects,
    optional_texts,
)
requests = st.builds(
    ModelRequest,
    texts,
    contexts,
    st.lists(tool_specs, max_size=2).map(tuple),
    output_specs,
    json_objects,
)
failures = st.builds(
    ModelFailure,
    st.sampled_from(get_args(FailureKind)),
    texts,
    st.none() | finite | st.integers(-(10**6), 10**6),
)
answers: st.SearchStrategy[Answer] = model_outputs | failures
budgets = st.builds(Budget, st.integers(), finite, st.lists(small_texts, max_size=2).map(tuple))
notes = st.builds(Note, text=texts, day=st.none() | st.dates())
totals = st.lists(usages, max_size=3).map(lambda items: UsageTotals(tuple(items)))
user_values = st.lists(st.one_of(budgets, notes, totals), max_size=3)
states = st.builds(StageState, context=contexts, result=contents, values=user_values)


# --- helpers ----------------------------------------------------------------------------


def dumped(data: JSON) -> str:
    """How a cassette writes it: any NaN or infinity fails here."""
    return json.dumps(data, sort_keys=True, allow_nan=False)


def through_json(data: JSON) -> JSON:
    loaded: JSON = json.loads(dumped(data))
    return loaded


def outputs_of(context: Sequence[Turn]) -> list[ModelOutput]:
    return [turn for turn in context if isinstance(turn, ModelOutput)]


def assert_same_outputs(actual: Sequence[ModelOutput], expected: Sequence[ModelOutput]) -> None:
    """Usage and finish reason do not take part in equality: compare them too."""
    assert [(o.usage, o.finish_reason) for o in actual] == [
        (o.usage, o.finish_reason) for o in expected
    ]


def assert_round_trip(
    value: T, encode: Callable[[T], JSON], decode: Callable[[JSON], T]
) -> tuple[T, JSON]:
    """`value` encodes to the same JSON every time, decodes (also after a trip
    through a JSON text) to an equal value, which encodes to the same JSON."""
    data = encode(value)
    text = dumped(data)
    assert dumped(encode(value)) == text
    assert through_json(data) == data
    decoded = decode(through_json(data))
    assert decoded == value
    assert decode(data) == value
    assert dumped(encode(decoded)) == text
    return decoded, data


# --- round trips ----------------------------------------------------------------------


@SETTINGS
@given(contents)
def test_contents_round_trip(content: MultimodalContent) -> None:
    assert_round_trip(content, encode_content, decode_content)


@SETTINGS
@given(requests)
def test_requests_round_trip(request: ModelRequest) -> None:
    decoded, _ = assert_round_trip(request, encode_request, decode_request)
    assert_same_outputs(outputs_of(decoded.context), outputs_of(request.context))


@SETTINGS
@given(answers)
def test_answers_round_trip(answer: Answer) -> None:
    decoded, data = assert_round_trip(answer, encode_answer, decode_answer)
    assert isinstance(data, dict)
    if isinstance(answer, ModelOutput):
        assert isinstance(decoded, ModelOutput)
        assert list(data) == ["output"]
        assert_same_outputs([decoded], [answer])
    else:
        assert isinstance(decoded, ModelFailure)
        assert list(data) == ["failure"]
        assert (decoded.kind, decoded.message, decoded.retry_after) == (
            answer.kind,
            answer.message,
            answer.retry_after,
        )


@SETTINGS
@given(states)
def test_states_round_trip(state: StageState) -> None:
    decoded, _ = assert_round_trip(
        state,
        lambda value: encode_state(value, types=USER_TYPES),
        lambda data: decode_state(data, types=USER_TYPES),
    )
    assert_same_outputs(outputs_of(decoded.context), outputs_of(state.context))
    assert decoded.get(UsageTotals) == state.get(UsageTotals)
    assert decoded.get(Budget) == state.get(Budget)
    assert decoded.get(Note) == state.get(Note)


def _not_plain_values() -> st.SearchStrategy[object]:
    """Artifact values that are not plain JSON: no `"value"` is written for them."""
    return st.one_of(
        st.tuples(json_values, json_values),
        st.frozensets(st.integers(), max_size=3),
        budgets,
        st.just(Color.RED),
        st.lists(st.sampled_from([math.nan, math.inf, -math.inf]), min_size=1, max_size=2),
        st.dictionaries(st.integers(), json_values, min_size=1, max_size=2),
        st.just(float("nan")),
        st.builds(ArtifactContent, json_values),
        st.lists(st.integers(), max_size=2).map(Steps),
        st.dictionaries(small_texts, st.integers(), max_size=2).map(collections.OrderedDict),
        st.just(Level.LOW),
    )


def fallback(text: str) -> object:
    """An artifact without a stored value decodes to the JSON its text holds, else the text."""
    try:
        return json.loads(text, parse_constant=lambda _: 1 / 0)
    except (ValueError, ZeroDivisionError):
        return text


@SETTINGS
@given(_not_plain_values())
def test_artifacts_of_other_values_keep_their_text(value: object) -> None:
    artifact = ArtifactContent(value)
    data = encode_content(MultimodalContent((artifact,)))
    assert dumped(data) == dumped(encode_content(MultimodalContent((artifact,))))
    assert data == [{"artifact": {"text": artifact.text, "type": type_name(type(value))}}]
    (decoded,) = decode_content(through_json(data)).parts
    assert isinstance(decoded, ArtifactContent)
    assert decoded.text == artifact.text
    expected = fallback(artifact.text)
    assert decoded.value == expected or (expected != expected and decoded.value != decoded.value)
    # One decode makes it canonical: from then on it round-trips exactly.
    canonical = MultimodalContent((decoded,))
    again = encode_content(canonical)
    assert dumped(encode_content(decode_content(again))) == dumped(again)


def test_every_kind_has_a_readable_shape() -> None:
    content = MultimodalContent.of(
        "Hello",
        ImageContent.of_url("https://example.com/a.png"),
        ImageContent.of_bytes(b"\x89PNG", mime_type="image/png"),
        ResourceContent("file:///a.pdf", "application/pdf"),
        ArtifactContent({"n": 1}),
        ArtifactContent(Budget(3)),
    )
    assert encode_content(content) == [
        "Hello",
        {"image": {"url": "https://example.com/a.png", "mime_type": None}},
        {"image": {"data_base64": "iVBORw==", "mime_type": "image/png"}},
        {"resource": {"uri": "file:///a.pdf", "mime_type": "application/pdf"}},
        {"artifact": {"text": '{"n": 1}', "type": "dict", "value": {"n": 1}}},
        {
            "artifact": {
                "text": '{"limit": 3, "spent": 0.0, "tags": []}',
                "type": "tests.codec.test_codec.Budget",
            }
        },
    ]
    output = ModelOutput(
        MultimodalContent.of("4"),
        (ModelToolRequest("call_1", "add", {"a": 2, "b": 2}),),
        usage=TokenUsage("m", 5, 2),
        finish_reason="stop",
    )
    encoded_output: JSON = {
        "content": ["4"],
        "tool_requests": [{"identifier": "call_1", "tool": "add", "arguments": {"a": 2, "b": 2}}],
        "usage": {"model": "m", "input_tokens": 5, "output_tokens": 2},
        "finish_reason": "stop",
    }
    assert encode_answer(output) == {"output": encoded_output}
    assert encode_answer(ModelFailure("rate_limited", "slow down", 2)) == {
        "failure": {"kind": "rate_limited", "message": "slow down", "retry_after": 2.0}
    }
    request = ModelRequest(
        "Be brief.",
        (ModelInput.of("2+2?"), output),
        (ToolSpec("add", "Adds.", {"type": "object"}),),
        OutputSpec("schema", {"type": "integer"}, "Answer"),
        {"temperature": 0.2},
    )
    assert encode_request(request) == {
        "instructions": "Be brief.",
        "context": [
            {"input": {"content": ["2+2?"], "tool_responses": []}},
            {"output": encoded_output},
        ],
        "tools": [{"name": "add", "description": "Adds.", "parameters": {"type": "object"}}],
        "output": {"mode": "schema", "schema": {"type": "integer"}, "name": "Answer"},
        "extra": {"temperature": 0.2},
    }
    state = StageState(result="draft", values=(UsageTotals((TokenUsage("m", 5, 2),)), Budget(3)))
    assert encode_state(state, types=[Budget]) == {
        "context": [],
        "result": ["draft"],
        "usage": [{"model": "m", "input_tokens": 5, "output_tokens": 2}],
        "values": {"tests.codec.test_codec.Budget": {"limit": 3, "spent": 0.0, "tags": []}},
    }
    assert encode_state(StageState.empty) == {
        "context": [],
        "result": [],
        "usage": None,
        "values": {},
    }


def test_fields_with_defaults_may_be_left_out() -> None:
    assert decode_request({"instructions": "x", "context": [{"output": {}}, {"input": {}}]}) == (
        ModelRequest("x", (ModelOutput(), ModelInput()))
    )
    assert decode_state({}) == StageState.empty
    assert decode_answer({"failure": {"kind": "refused", "message": "no"}}) == ModelFailure(
        "refused", "no"
    )


def test_frozen_and_nested_mappings_encode_as_plain_json() -> None:
    extra = {"options": types.MappingProxyType({"k": (1, 2.5, "x")})}
    request = ModelRequest("x", (), extra=extra)
    data = encode_request(request)
    assert data["extra"] == {"options": {"k": [1, 2.5, "x"]}}
    decoded = decode_request(through_json(data))
    assert decoded.extra == {"options": {"k": [1, 2.5, "x"]}}
    assert encode_request(decoded) == data


# --- refusals on encode ------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_on_encode(number: float) -> None:
    with pytest.raises(CodecError, match=r"request\.extra\.options\[1\]\.t: .*NaN"):
        encode_request(ModelRequest("x", (), extra={"options": [1, {"t": number}]}))
    with pytest.raises(CodecError, match=r"answer\.failure\.retry_after"):
        encode_answer(ModelFailure("rate_limited", "slow", number))
    with pytest.raises(CodecError, match=r"arguments\.a"):
        encode_answer(ModelOutput(tool_requests=(ModelToolRequest("c", "t", {"a": number}),)))
    with pytest.raises(CodecError, match=r"parameters"):
        encode_request(ModelRequest("x", (), (ToolSpec("t", "d", {"default": number}),)))
    with pytest.raises(CodecError, match=r"Budget"):
        encode_state(StageState(values=(Budget(1, number),)), types=[Budget])


def test_values_that_are_not_json_are_refused_on_encode() -> None:
    with pytest.raises(CodecError, match=r"request\.extra\.when: .*datetime"):
        encode_request(ModelRequest("x", (), extra={"when": datetime.datetime(2025, 1, 1)}))
    with pytest.raises(CodecError, match=r"request\.extra\.n: integer too large"):
        encode_request(ModelRequest("x", (), extra={"n": 10**5000}))
    with pytest.raises(CodecError, match="keys must be strings"):
        encode_request(ModelRequest("x", (), extra={"m": {1: "one"}}))
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(CodecError, match="cyclic"):
        encode_request(ModelRequest("x", (), extra={"c": cyclic}))
    # An artifact's value is informative: a cyclic one is just left out.
    data = encode_content(MultimodalContent((ArtifactContent(cyclic, "loop"),)))
    assert data == [{"artifact": {"text": "loop", "type": "list"}}]


def test_state_values_need_their_type_listed() -> None:
    state = StageState(values=(Budget(1), Note(text="n")))
    with pytest.raises(CodecError, match=r"tests\.codec\.test_codec\.Note.*types="):
        encode_state(state, types=[Budget])
    with pytest.raises(CodecError, match="types="):
        encode_state(StageState(values=(Color.RED,)), types=[Budget, Note])
    data = encode_state(state, types=[Budget, Note])
    with pytest.raises(CodecError, match=r"tests\.codec\.test_codec\.Note.*types="):
        decode_state(data, types=[Budget])
    with pytest.raises(CodecError, match="pydantic cannot handle"):
        encode_state(StageState(values=(Plan(2),)), types=[Plan])


def test_state_values_are_validated_on_decode() -> None:
    data: JSON = {"values": {"tests.codec.test_codec.Budget": {"limit": "lots"}}}
    with pytest.raises(CodecError, match=r"state\.values\['tests\.codec\.test_codec\.Budget'\]"):
        decode_state(data, types=[Budget])
    with pytest.raises(CodecError, match="two types named"):
        decode_state({}, types=[Budget, type("Budget", (), {"__module__": __name__})])


def test_codec_error_is_a_value_error_and_the_version_is_one() -> None:
    assert issubclass(CodecError, ValueError)
    assert CODEC_VERSION == 1
    assert sorted(codec.__all__) == sorted(
        [
            "CODEC_VERSION",
            "JSON",
            "CodecError",
            "RequestEncoder",
            "canonical",
            "pretty",
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
        ]
    )


# --- refusals on decode ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"instructions": "x"}, r"request: missing key 'context'"),
        ({"instructions": "x", "context": [], "tool": []}, r"request: unexpected key 'tool'"),
        (
            {"instructions": "x", "context": [{"output": {"usage": {"input_tokens": "3"}}}]},
            r"request\.context\[0\]\.output\.usage\.input_tokens: expected an integer",
        ),
        (
            {"instructions": "x", "context": [{"input": {"content": [{"image": {}}]}}]},
            r"request\.context\[0\]\.input\.content\[0\]\.image: .*exactly one",
        ),
        (
            {"instructions": "x", "context": [], "output": {"mode": "xml"}},
            r"request\.output\.mode: unknown mode 'xml'",
        ),
        (
            {"instructions": "x", "context": [{"output": {"usage": {"input_tokens": True}}}]},
            r"request\.context\[0\]\.output\.usage\.input_tokens: expected an integer, got a bool",
        ),
        (
            {"instructions": "x", "context": [], "extra": {"n": [10**5000]}},
            r"request\.extra\.n\[0\]: integer too large",
        ),
        (
            {"instructions": "x", "context": [{"turn": {}}]},
            r"request\.context\[0\]: unexpected key 'turn'",
        ),
    ],
)
def test_decode_errors_say_where(data: JSON, where: str) -> None:
    with pytest.raises(CodecError, match=where):
        decode_request(data)


def test_bad_images_are_refused() -> None:
    with pytest.raises(CodecError, match=r"content\[0\]\.image\.data_base64: not valid base64"):
        decode_content([{"image": {"data_base64": "not base64!", "mime_type": "image/png"}}])
    with pytest.raises(CodecError, match="mime_type"):
        decode_content([{"image": {"data_base64": "iVBORw=="}}])
    with pytest.raises(CodecError, match="base64"):
        decode_content([{"image": {"data_base64": "\u00e9\u00e9==", "mime_type": "image/png"}}])


def test_numbers_that_do_not_fit_are_refused() -> None:
    with pytest.raises(CodecError, match="retry_after: number too large"):
        decode_answer({"failure": {"kind": "refused", "message": "", "retry_after": 10**400}})
    with pytest.raises(CodecError, match="retry_after"):
        decode_answer({"failure": {"kind": "refused", "message": "", "retry_after": math.nan}})
    with pytest.raises(CodecError, match=r"arguments\.a"):
        decode_answer(
            {
                "output": {
                    "tool_requests": [
                        {"identifier": "c", "tool": "t", "arguments": {"a": math.inf}}
                    ]
                }
            }
        )


def nested(depth: int, leaf: JSON) -> JSON:
    data = leaf
    for _ in range(depth):
        data = [data]
    return data


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = nested(20_000, 1)
    arguments: JSON = {"identifier": "c", "tool": "t", "arguments": {"a": deep}}
    with pytest.raises(CodecError, match="nested deeper"):
        decode_answer({"output": {"tool_requests": [arguments]}})
    text = "[" * 20_000 + "]" * 20_000
    (part,) = decode_content([{"artifact": {"text": text}}]).parts
    assert part == ArtifactContent(text, text)
    with pytest.raises(CodecError):
        decode_content(deep)


def test_artifacts_without_a_value_decode_from_their_text() -> None:
    decoded = decode_content(
        [
            {"artifact": {"text": '{"a": [1, 2]}', "type": "app.Thing"}},
            {"artifact": {"text": "plain words"}},
            {"artifact": {"text": "NaN"}},
            {"artifact": {"text": "1e999"}},
            {"artifact": {"text": "null", "value": None}},
        ]
    )
    assert decoded.parts == (
        ArtifactContent({"a": [1, 2]}, '{"a": [1, 2]}'),
        ArtifactContent("plain words", "plain words"),
        ArtifactContent("NaN", "NaN"),
        ArtifactContent("1e999", "1e999"),
        ArtifactContent(None, "null"),
    )


# --- garbage and mutations decode to CodecError, or to a value that encodes --------------

KEYS = [
    "text", "image", "url", "data_base64", "mime_type", "resource", "uri", "artifact", "value",
    "type", "input", "output", "content", "tool_responses", "tool_requests", "identifier",
    "tool", "arguments", "error", "usage", "model", "input_tokens", "output_tokens",
    "finish_reason", "instructions", "context", "tools", "name", "description", "parameters",
    "mode", "schema", "extra", "failure", "kind", "message", "retry_after", "result", "values",
    "tests.codec.test_codec.Budget", "tests.codec.test_codec.Note", "rate_limited", "auto", "limit",
]  # fmt: skip


def huge() -> int:
    """An integer too long for `repr` (past 4,300 digits): built, not shown by hypothesis."""
    return -(10**5000)


garbage_leaves: st.SearchStrategy[JSON] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers() | st.just(10**400) | st.builds(huge),
    st.floats(),
    st.sampled_from(KEYS),
    texts,
    st.just("iVBORw=="),
)


def _garbage_containers(inner: st.SearchStrategy[JSON]) -> st.SearchStrategy[JSON]:
    keys = st.sampled_from(KEYS) | texts
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3)


garbage: st.SearchStrategy[JSON] = st.recursive(garbage_leaves, _garbage_containers, max_leaves=12)
# Not JSON at all: decoding still only ever raises CodecError.
not_json = cast(
    "st.SearchStrategy[JSON]",
    st.one_of(
        st.binary(max_size=3),
        st.tuples(garbage),
        st.builds(object),
        st.dictionaries(st.integers() | st.builds(huge), garbage, min_size=1, max_size=2),
        st.sets(st.integers(), max_size=2),
    ),
)

DECODERS: list[Callable[[JSON], object]] = [
    decode_content,
    decode_request,
    decode_answer,
    lambda data: decode_state(data, types=USER_TYPES),
]
ENCODERS: dict[type, Callable[[object], JSON]] = {
    MultimodalContent: lambda value: encode_content(cast(MultimodalContent, value)),
    ModelRequest: lambda value: encode_request(cast(ModelRequest, value)),
    ModelOutput: lambda value: encode_answer(cast(ModelOutput, value)),
    ModelFailure: lambda value: encode_answer(cast(ModelFailure, value)),
    StageState: lambda value: encode_state(cast(StageState, value), types=USER_TYPES),
}


def decodes_or_refuses(decode: Callable[[JSON], object], data: JSON) -> None:
    """`decode(data)` raises CodecError, or gives a value that encodes."""
    try:
        value = decode(data)
    except CodecError:
        return
    dumped(ENCODERS[type(value)](value))


@GARBAGE_SETTINGS
@given(st.one_of(garbage, not_json, st.builds(nested, st.integers(0, 600), garbage)))
def test_garbage_raises_only_codec_errors(data: JSON) -> None:
    for decode in DECODERS:
        decodes_or_refuses(decode, data)
        decodes_or_refuses(decode, {"output": data})
        decodes_or_refuses(decode, [data])


Path: TypeAlias = tuple[str | int, ...]


def places(data: JSON, path: Path = ()) -> Iterator[Path]:
    """Every place in `data`, outermost first."""
    yield path
    if isinstance(data, dict):
        for key, item in data.items():
            yield from places(item, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from places(item, (*path, index))


def at(data: JSON, path: Path) -> JSON:
    for step in path:
        if isinstance(data, dict):
            data = data[cast(str, step)]
        elif isinstance(data, list):
            data = data[cast(int, step)]
    return data


def replaced(data: JSON, path: Path, change: Callable[[JSON], JSON]) -> JSON:
    """A copy of `data` with the value at `path` changed."""
    if not path:
        return change(data)
    step, rest = path[0], path[1:]
    if isinstance(data, dict) and isinstance(step, str):
        return {
            key: replaced(item, rest, change) if key == step else item for key, item in data.items()
        }
    if isinstance(data, list) and isinstance(step, int):
        return [
            replaced(item, rest, change) if index == step else item
            for index, item in enumerate(data)
        ]
    return data


def mutations(data: JSON, replacement: JSON, key: str) -> list[Callable[[JSON], JSON]]:
    """Ways to damage one place: replace it, wrap it, drop or add a key, drop an item."""
    changes: list[Callable[[JSON], JSON]] = [
        lambda _: replacement,
        lambda node: [node],
        lambda node: {key: node},
    ]
    if isinstance(data, dict) and data:
        first = sorted(data)[0]
        changes.append(
            lambda node: {k: v for k, v in cast(dict[str, JSON], node).items() if k != first}
        )
        changes.append(lambda node: {**cast(dict[str, JSON], node), key: replacement})
    if isinstance(data, list) and data:
        changes.append(lambda node: cast(list[JSON], node)[1:])
        changes.append(lambda node: cast(list[JSON], node)[0])
    if isinstance(data, str):
        changes.append(lambda node: cast(str, node) + "!")
    return changes


valid_values = st.one_of(contents, requests, answers, states)


@GARBAGE_SETTINGS
@given(valid_values, st.data())
def test_damaged_encodings_raise_only_codec_errors(value: object, data: st.DataObject) -> None:
    encoded = ENCODERS[type(value)](value)
    damaged = encoded
    for _ in range(data.draw(st.integers(1, 2), label="damages")):
        path = data.draw(st.sampled_from(list(places(damaged))), label="path")
        node = at(damaged, path)
        replacement = data.draw(garbage, label="replacement")
        key = data.draw(st.sampled_from(KEYS), label="key")
        change = data.draw(st.sampled_from(mutations(node, replacement, key)), label="change")
        damaged = replaced(damaged, path, change)
    for decode in DECODERS:
        decodes_or_refuses(decode, damaged)


# --- canonical bytes and the remembering encoder ----------------------------------------------


def _keys_reversed(value: JSON) -> JSON:
    if isinstance(value, dict):
        return {key: _keys_reversed(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_keys_reversed(item) for item in value]
    return value


@SETTINGS
@given(json_values)
def test_canonical_bytes_depend_on_the_data_not_on_key_order(value: JSON) -> None:
    assert codec.canonical(_keys_reversed(value)) == codec.canonical(value)
    assert json.loads(codec.canonical(value)) == value
    assert json.loads(codec.pretty(value)) == value


def test_canonical_refuses_what_utf8_cannot_hold() -> None:
    with pytest.raises(CodecError, match="UTF-8"):
        codec.canonical({"text": "a\ud800b"})


@SETTINGS
@given(st.lists(requests, min_size=1, max_size=4))
def test_a_request_encoder_gives_the_canonical_bytes_of_a_growing_conversation(
    batch: list[ModelRequest],
) -> None:
    """Later requests re-send earlier turns and tools (the same objects), as a
    conversation does: the bytes built from remembered parts are the canonical
    bytes of encode_request's JSON."""
    encoder = codec.RequestEncoder()
    context: tuple[Turn, ...] = ()
    grown: list[ModelRequest] = []
    for request in batch:
        context = (*context, *request.context)
        tools = (*batch[0].tools, *request.tools)
        grown.append(attrs.evolve(request, context=context, tools=tools, output=batch[0].output))
    for request in [*grown, *grown]:
        assert encoder.canonical(request) == codec.canonical(encode_request(request))


@SETTINGS
@given(
    st.lists(requests, min_size=1, max_size=3),
    st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=12),
)
def test_a_request_encoder_follows_stages_taking_turns(
    stages: list[ModelRequest], order: list[int]
) -> None:
    """Calls from several stages, each re-sending its own instructions, tools,
    output spec and extra, arrive in any order (the same stage again, then
    another, then back): each gets the canonical bytes of its own request."""
    encoder = codec.RequestEncoder()
    for index in order:
        request = stages[index % len(stages)]
        assert encoder.canonical(request) == codec.canonical(encode_request(request))


# --- answers read straight from JSON text -------------------------------------------------------


@SETTINGS
@given(answers)
def test_answers_read_from_json_text_equal_the_reference_decoding(answer: Answer) -> None:
    data = encode_answer(answer)
    read = codec.decode_answer_json(codec.canonical(data))
    reference = decode_answer(data)
    assert read == reference == answer
    if isinstance(read, ModelOutput) and isinstance(reference, ModelOutput):
        assert_same_outputs([read], [reference])


def outcome_of(decode: Callable[[], Answer]) -> tuple[object, ...]:
    """What `decode()` gives (with the parts outside equality), or its CodecError's message."""
    try:
        answer = decode()
    except CodecError as error:
        return ("refused", str(error))
    if isinstance(answer, ModelOutput):
        return ("output", answer, answer.usage, answer.finish_reason)
    return ("failure", answer)


def assert_read_as_the_reference(text: bytes) -> None:
    """`decode_answer_json(text)` gives what `decode_answer(json.loads(text))`
    gives, or the same CodecError (text json.loads refuses: a CodecError)."""
    try:
        data: JSON = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises(CodecError):
            codec.decode_answer_json(text)
        return
    assert outcome_of(lambda: codec.decode_answer_json(text)) == outcome_of(
        lambda: decode_answer(data)
    )


@GARBAGE_SETTINGS
@given(st.one_of(garbage, st.builds(lambda data: {"output": data}, garbage)))
def test_json_text_reads_as_the_reference_decoder_reads_it(data: JSON) -> None:
    try:
        text = json.dumps(data).encode()
    except ValueError:
        return  # an integer json cannot write
    assert_read_as_the_reference(text)


@pytest.mark.parametrize(
    "text",
    [
        b'{"output": {"content": ["\\ud800"]}}',  # a lone surrogate, escaped
        b'\xef\xbb\xbf{"output": {"content": ["a"]}}',  # a byte order mark
        '{"output": {"content": ["a"]}}'.encode("utf-16"),
        b'{"output": {"content": ["\xff"]}}',  # not UTF-8
        b'{"output": {"tool_requests": [{"identifier": "1", "tool": "t", "arguments": '
        b'{"x": NaN}}]}}',
        b'{"output": {"usage": {"input_tokens": 1e400}}}',
        b'{"output": {"content": ["a"], "content": [1]}}',  # a key twice: the last one counts
        b'{"output": {"usage": {"input_tokens": ' + b"9" * 4000 + b"}}}",
    ],
)
def test_odd_json_text_reads_as_the_reference_decoder_reads_it(text: bytes) -> None:
    assert_read_as_the_reference(text)


@pytest.mark.parametrize("text", [b"", b"{", b'{"output": {"content": ["a"]}} trailing'])
def test_text_that_is_not_json_is_a_codec_error(text: bytes) -> None:
    with pytest.raises(CodecError, match="answer: not JSON"):
        codec.decode_answer_json(text)


def test_json_text_nested_absurdly_deep_is_a_codec_error() -> None:
    deep = b'{"output": {"content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(CodecError, match="nested too deeply"):
        codec.decode_answer_json(deep)


TURN = ModelInput(MultimodalContent.of("hi"))


@pytest.mark.parametrize(
    "request_",
    [
        ModelRequest(cast(str, 1), (cast(Turn, object()),)),
        ModelRequest("", (TURN,), cast(tuple[ToolSpec, ...], (1,)), cast(OutputSpec, None)),
        ModelRequest("", (TURN,), cast(tuple[ToolSpec, ...], None)),
        ModelRequest("", (TURN,), cast(tuple[ToolSpec, ...], 5)),
        ModelRequest("", (ModelInput(MultimodalContent.of("hi"), cast(tuple[()], None)),)),
        ModelRequest("", (ModelInput(MultimodalContent(cast(tuple[ContentPart, ...], None))),)),
        ModelRequest("", (ModelOutput(tool_requests=cast(tuple[ModelToolRequest, ...], 3)),)),
        ModelRequest("", (TURN,), extra=cast(dict[str, object], None)),
        # A string UTF-8 cannot hold, and a fault found before it by the reference:
        ModelRequest(
            "x",
            (ModelInput(MultimodalContent.of("\ud800")),),
            extra=cast(dict[str, object], None),
        ),
        ModelRequest(cast(str, 1), (), extra={"k": "\ud800"}),
    ],
)
def test_a_malformed_request_is_refused_alike_by_both_encoders(request_: ModelRequest) -> None:
    """A CodecError, and nothing else, saying the same, even with several faults."""
    with pytest.raises(CodecError) as direct:
        codec.canonical(encode_request(request_))
    with pytest.raises(CodecError) as remembered:
        codec.RequestEncoder().canonical(request_)
    assert str(remembered.value) == str(direct.value)


class HidingDict(dict[str, JSON]):
    """A dict whose `keys()` shows only `content`, whatever it holds."""

    def keys(self) -> KeysView[str]:  # type: ignore[override]  # narrower on purpose: it lies
        return dict.fromkeys(["content"]).keys()


def test_a_dict_hiding_keys_from_keys_is_still_refused_for_them() -> None:
    """The fast path trusts `keys()` only on an exact dict; a subclass gets
    the full check, which sees every key."""
    with pytest.raises(CodecError, match="unexpected key 'bogus'"):
        decode_answer({"output": HidingDict(content=["hi"], bogus=1)})  # a hostile caller


def test_provider_data_is_kept_and_absent_when_empty() -> None:
    """What a provider must get back (thinking blocks, signatures) survives
    cassettes and durable steps; an answer without any encodes as before."""
    data = {"anthropic": {"thinking": [{"type": "thinking", "thinking": "…", "signature": "c2ln"}]}}
    answer = ModelOutput(ModelOutput.of("hi").content, provider_data=data)
    encoded = encode_answer(answer)
    for decoded in (decode_answer(encoded), decode_answer_json(canonical(encoded))):
        assert isinstance(decoded, ModelOutput)
        assert decoded.provider_data == data
    assert "provider_data" not in encode_answer(ModelOutput.of("hi"))["output"]  # type: ignore[operator]  # an output is a JSON object
    request = ModelRequest("", (ModelInput.of("q"), answer))
    assert decode_request(encode_request(request)).context[1].provider_data == data  # type: ignore[union-attr]  # an output turn

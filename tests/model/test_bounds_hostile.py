"""Parsing model output and rendering tool results are bounded: whatever a
hostile model or tool produces, `attempt()` returns in bounded time with a
`Success` or a documented failure, never RecursionError, ValueError or a
validator's own exception."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import attrs
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Result, Success

from stagefx import (
    Env,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    OutputValidationError,
    Stage,
    StageException,
    StageExecutionError,
    StageState,
    ToolError,
    tool,
)
from stagefx._model.output import (
    MAX_INTEGER_DIGITS,
    MAX_OUTPUT_CHARS,
    MAX_OUTPUT_DEPTH,
    MAX_YAML_ALIASES,
    _unfenced,
)
from stagefx._model.tools import MAX_RESULT_DEPTH
from stagefx.testing import FunctionModel, ScriptedModel, strategies
from tests.helpers import Unprintable

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

BOUND = 5.0  # seconds: what "bounded time" means here, with slack; each takes milliseconds


@dataclasses.dataclass(frozen=True)
class Checked:
    name: str
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise TypeError("a negative count")  # pydantic lets a TypeError through
        if self.count == 7:
            raise Unprintable


@attrs.frozen
class Sized:
    size: int = attrs.field(validator=attrs.validators.gt(0))  # a ValueError from attrs
    tags: list[str] = attrs.field(factory=list)


class Strict(pydantic.BaseModel):
    value: int

    @pydantic.field_validator("value")
    @classmethod
    def odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise TypeError("an even value")
        if value == 3:
            raise Unprintable
        return value


OUTPUTS: list[object] = ["json", "yaml", Checked, Sized, Strict]


async def attempt_output(output: object, text: str) -> Result[StageState, StageException]:
    stage = Stage.completion("give", output=output)  # type: ignore[arg-type]  # each selection under test
    started = time.monotonic()
    outcome = await stage.attempt(env=Env.of(ScriptedModel(text)))
    assert time.monotonic() - started < BOUND
    return outcome


def refused(outcome: Result[StageState, StageException]) -> OutputValidationError:
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, OutputValidationError), repr(error)
    str(error)  # prints, whatever it wraps
    repr(error)
    return error


def nested(depth: int, *, mapping: bool = False) -> str:
    if mapping:
        return '{"a": ' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


# --- parsing model output ----------------------------------------------------------------


async def test_deeply_nested_json_output_is_an_output_validation_error() -> None:
    for text in (nested(MAX_OUTPUT_DEPTH + 1), nested(MAX_OUTPUT_DEPTH + 1, mapping=True)):
        assert "nested more than 100 deep" in str(refused(await attempt_output("json", text)))
    for text in (nested(100_000), "[" * 500_000):  # once a RecursionError
        refused(await attempt_output("json", text))
    kept = await attempt_output("json", nested(MAX_OUTPUT_DEPTH))
    assert isinstance(kept, Success)


async def test_deeply_nested_yaml_output_is_an_output_validation_error() -> None:
    block = "".join("  " * level + "- \n" for level in range(MAX_OUTPUT_DEPTH + 5))
    for text in (nested(MAX_OUTPUT_DEPTH + 1), nested(100_000), block, "- " * 5_000):
        refused(await attempt_output("yaml", text))
    assert isinstance(await attempt_output("yaml", nested(MAX_OUTPUT_DEPTH)), Success)


async def test_integers_past_the_digit_limit_are_output_validation_errors() -> None:
    huge = "9" * (MAX_INTEGER_DIGITS + 1)
    for output, text in [
        ("json", huge),  # once a ValueError from int()
        ("json", f"[1, -{huge}]"),
        ("yaml", huge),
        ("yaml", f"a: 0x{'f' * 20_000}"),
        (Strict, f'{{"value": {huge}}}'),
    ]:
        assert "digits" in str(refused(await attempt_output(output, text)))
    kept = await attempt_output("json", "9" * MAX_INTEGER_DIGITS)
    assert kept.unwrap().result.artifact(int) == int("9" * MAX_INTEGER_DIGITS)


def bomb(width: int, levels: int) -> str:
    """`levels` anchors, each a list of `width` aliases of the one before."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"a: &a [{','.join(['lol'] * width)}]"]
    lines += [
        f"{names[level]}: &{names[level]} [{','.join([f'*{names[level - 1]}'] * width)}]"
        for level in range(1, levels)
    ]
    return "\n".join(lines) + "\n"


async def test_a_yaml_alias_bomb_is_refused_in_no_time() -> None:
    text = bomb(9, 9)  # 9**9 values once expanded, in about 350 bytes
    assert len(text) < 400
    started = time.monotonic()
    error = refused(await attempt_output("yaml", text))
    assert time.monotonic() - started < 0.5
    assert "values" in str(error) or "aliases" in str(error)
    doubling = bomb(2, 26)  # few aliases, 2**26 values
    assert "expands to more than" in str(refused(await attempt_output("yaml", doubling)))
    many = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]"
    assert "aliases" in str(refused(await attempt_output("yaml", many)))
    fine = await attempt_output("yaml", "base: &base {x: 1}\nfirst: *base\nsecond: *base")
    assert fine.unwrap().result.artifact(dict) == {
        "base": {"x": 1},
        "first": {"x": 1},
        "second": {"x": 1},
    }


async def test_a_yaml_alias_inside_its_own_anchor_is_refused() -> None:
    for text in ("&a [*a]", "&a {k: *a}", "a: &a [1, [2, *a]]"):
        assert "inside its own anchor" in str(refused(await attempt_output("yaml", text)))


async def test_yaml_tags_that_build_objects_or_bad_values_are_output_validation_errors() -> None:
    for text in [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system",
        "!foo bar",
        "when: 2024-13-45",  # once a ValueError from datetime.date
        "!!timestamp 'not a time'",  # once an AttributeError
        "!!binary 'zz'",
        "!!float 'x'",
        "? [a]\n: b",
        "a: \ud800",  # a lone surrogate
        "a: \x00",
    ]:
        refused(await attempt_output("yaml", text))
    tagged = await attempt_output("yaml", "!!set {a, b}")
    assert tagged.unwrap().result.artifact(set) == {"a", "b"}


async def test_validator_errors_of_attrs_pydantic_and_dataclasses_are_validation_errors() -> None:
    for output, text, message in [
        (Checked, '{"name": "x", "count": -1}', "TypeError: a negative count"),
        (Checked, '{"name": "x", "count": 7}', "Unprintable: <unprintable message>"),
        (Sized, '{"size": 0}', "ValueError: 'size' must be > 0"),
        (Strict, '{"value": 2}', "TypeError: an even value"),
        (Strict, '{"value": 3}', "<unprintable message>"),
    ]:
        assert message in str(refused(await attempt_output(output, text)))
    kept = await attempt_output(Sized, '{"size": 2, "tags": ["a"]}')
    assert kept.unwrap().result.artifact(Sized) == Sized(2, ["a"])


async def test_output_longer_than_the_bound_is_refused() -> None:
    text = " " * MAX_OUTPUT_CHARS + "1"
    for output in ("json", "yaml", Strict):
        assert "longer than" in str(refused(await attempt_output(output, text)))


_OLD_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)


async def test_a_fence_followed_by_many_newlines_parses_in_linear_time() -> None:
    text = "```" + "\n" * 200_000 + "1"  # the old expression backtracked over it quadratically
    started = time.monotonic()
    assert _unfenced(text) == text
    assert time.monotonic() - started < 0.5
    refused(await attempt_output("json", "```json" + "\n" * 200_000 + "{"))
    fenced = await attempt_output("json", "```json\n" + "\n" * 1_000 + '{"a": 1}\n```')
    assert fenced.unwrap().result.artifact(dict) == {"a": 1}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["```", "`", "\n", " ", "\t", "json", "x", "-", "é", "{}"])))
def test_unfencing_agrees_with_the_expression_it_replaced(pieces: list[str]) -> None:
    text = "".join(pieces)
    match = _OLD_FENCE.match(text)
    assert _unfenced(text) == (match.group(1) if match else text)


# --- rendering tool results ---------------------------------------------------------------


async def tool_round(
    value: object, *, stop_on_error: bool = False
) -> tuple[Result[StageState, StageException], ModelToolResponse | None]:
    @tool(stop_on_error=stop_on_error)
    def produce() -> object:
        """Gives the value under test."""
        return value

    model = ScriptedModel(ModelOutput(tool_requests=(ModelToolRequest("1", "produce", {}),)), "ok")
    started = time.monotonic()
    outcome = await Stage.completion("go", tools=[produce]).attempt(env=Env.of(model))
    assert time.monotonic() - started < BOUND
    if len(model.requests) < 2:
        return outcome, None
    turn = model.requests[1].context[-1]
    assert isinstance(turn, ModelInput)
    (response,) = turn.tool_responses
    return outcome, response


class ReprExplodes:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


def deep_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


async def test_a_tool_returning_a_huge_integer_answers_with_an_error() -> None:
    for value in (2**20_000, {"n": -(2**20_000)}, [1, (2, {3: 2**20_000})]):
        outcome, response = await tool_round(value)
        assert isinstance(outcome, Success)
        assert response is not None
        assert response.error
        assert "produce returned a result that cannot be shown" in response.content.as_string()
        assert "digits" in response.content.as_string()


async def test_a_tool_returning_a_deeply_nested_value_answers_with_an_error() -> None:
    @attrs.frozen
    class Link:
        next: object

    chain: object = None
    for _ in range(5_000):
        chain = Link(chain)
    for value in (deep_list(MAX_RESULT_DEPTH + 1), deep_list(100_000), chain):
        outcome, response = await tool_round(value)
        assert isinstance(outcome, Success)
        assert response is not None
        assert response.error
        assert "nested more than" in response.content.as_string()
    _, shown = await tool_round(deep_list(MAX_RESULT_DEPTH - 1))
    assert shown is not None
    assert not shown.error


async def test_a_tool_returning_an_object_whose_repr_raises_answers_with_an_error() -> None:
    for value in (ReprExplodes(), [ReprExplodes()], {"k": ReprExplodes()}):
        outcome, response = await tool_round(value)
        assert isinstance(outcome, Success)
        assert response is not None
        assert response.error
        assert "RuntimeError: repr exploded" in response.content.as_string()


async def test_a_stop_on_error_tool_with_an_unshowable_result_stops_with_a_tool_error() -> None:
    outcome, _ = await tool_round(2**20_000, stop_on_error=True)
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), ToolError)
    assert "digits" in str(outcome.failure())


async def test_ordinary_tool_results_render_as_before() -> None:
    @dataclasses.dataclass
    class Row:
        id: int
        name: str

    class Plain:
        def __repr__(self) -> str:
            return "Plain()"

    for value, text in [
        ({"a": [1, 2.5, None, True]}, '{"a": [1, 2.5, null, true]}'),
        (Row(1, "é"), '{"id": 1, "name": "é"}'),
        (Plain(), "Plain()"),
        (b"raw", "b'raw'"),
        ("text", "text"),
    ]:
        _, response = await tool_round(value)
        assert response is not None
        assert not response.error
        assert response.content.as_string() == text


# --- hostile suites ------------------------------------------------------------------------

depths = st.integers(MAX_OUTPUT_DEPTH - 3, 3_000)
digit_counts = st.integers(MAX_INTEGER_DIGITS - 10, 20_000)

deep_outputs = st.one_of(
    depths.map(nested),
    depths.map(lambda depth: nested(depth, mapping=True)),
    depths.map(lambda depth: "[" * depth),
    depths.map(lambda depth: "".join("  " * level + "- \n" for level in range(depth))),
    depths.map(lambda depth: "- " * depth + "x"),
    depths.map(lambda depth: '{"name": "x", "count": ' + nested(depth) + "}"),
)
huge_numbers = st.one_of(
    digit_counts.map(lambda digits: "9" * digits),
    digit_counts.map(lambda digits: '{"value": -' + "1" * digits + "}"),
    digit_counts.map(lambda digits: '{"name": "n", "count": ' + "7" * digits + "}"),
    digit_counts.map(lambda digits: "0x" + "f" * digits),
    digit_counts.map(lambda digits: "1" * digits + ".5e3"),
    st.sampled_from(
        ["1e999", "-1e99999", "NaN", "Infinity", '{"size": 1e999}', "0b" + "1" * 70_000]
    ),
)
wrong_types = st.one_of(
    strategies.json_values.map(json.dumps),
    st.builds(
        lambda name, count: json.dumps({"name": name, "count": count}),
        strategies.json_values,
        strategies.json_values,
    ),
    st.builds(lambda value: json.dumps({"value": value}), strategies.json_values),
    st.builds(
        lambda size, tags: json.dumps({"size": size, "tags": tags}),
        st.integers(),
        strategies.json_values,
    ),
)
broken_text = st.one_of(
    st.binary(max_size=64).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    st.text(st.characters(categories=["Cs"]), max_size=8),
    st.text(st.characters(categories=["Cs"]), max_size=8).map(
        lambda text: json.dumps({"name": text, "count": 1}, ensure_ascii=False)
    ),
    st.sampled_from(
        ['"\\ud800"', '{"name": "\\udfff", "count": 1}', '{"value": "\\ud83d"}', 'a: "\\ud800"']
    ),
)
YAML_TAGS = [
    "!!python/object/apply:os.system",
    "!!python/object:object",
    "!!python/name:os.system",
    "!!binary",
    "!!timestamp",
    "!!set",
    "!!omap",
    "!!pairs",
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!!str",
    "!!map",
    "!!seq",
    "!!merge",
    "!foo",
    "!<tag:yaml.org,2002:python/tuple>",
]
YAML_VALUES = [
    "x",
    "''",
    "[1, 2]",
    "{a: 1}",
    "2024-13-45",
    "zz==",
    "9" * 5_000,
    "[*a]",
    "&a [*a]",
    "?",
    "- a",
]
yaml_hostile = st.one_of(
    st.builds(
        lambda tag, value: f"{tag} {value}",
        st.sampled_from(YAML_TAGS),
        st.sampled_from(YAML_VALUES),
    ),
    st.builds(
        lambda tag, value: f"key: {tag} {value}",
        st.sampled_from(YAML_TAGS),
        st.sampled_from(YAML_VALUES),
    ),
    st.builds(bomb, st.integers(1, 12), st.integers(1, 26)),
    st.integers(0, 3 * MAX_YAML_ALIASES).map(
        lambda count: "a: &a [1]\nb: [" + ", ".join(["*a"] * count) + "]"
    ),
    st.sampled_from(
        ["&a [*a]", "*undefined", "a: &a\n  b: *a", "<<: *x", "<<: [1, 2]", "--- a\n--- b"]
    ),
)
fenced = st.builds(
    lambda inner, newlines, info: f"```{info}" + "\n" * newlines + inner + "\n```",
    st.sampled_from(['{"value": 1}', "[1]", "- a", "{"]),
    st.integers(0, 50_000),
    st.sampled_from(["", "json", "yaml", "c++", "  "]),
)
hostile_outputs = st.one_of(
    deep_outputs, huge_numbers, wrong_types, broken_text, yaml_hostile, fenced
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=hostile_outputs, output=st.sampled_from(OUTPUTS))
async def test_hostile_model_outputs_never_escape_attempt(text: str, output: object) -> None:
    outcome = await attempt_output(output, text)
    if isinstance(outcome, Failure):
        refused(outcome)  # an OutputValidationError: a parse error is never anything else
    else:
        assert isinstance(outcome, Success)
        (part,) = outcome.unwrap().result.parts
        assert part.text == text  # an artifact (or text) keeps the raw text


@attrs.define
class Node:
    child: object


class Dumps(pydantic.BaseModel):
    n: int

    @pydantic.model_serializer
    def explode(self) -> dict[str, object]:
        raise Unprintable


def circular() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


def chained(depth: int) -> Node:
    link = Node(None)
    for _ in range(depth):
        link = Node(link)
    return link


hostile_leaves = st.one_of(
    st.integers(14_300, 200_000).map(lambda bits: 2**bits),
    st.integers(14_300, 200_000).map(lambda bits: -(2**bits)),
    st.builds(ReprExplodes),  # built, not sampled: hypothesis reprs what it samples from
    st.builds(Unprintable),
    st.builds(lambda: Dumps(n=1)),
    st.builds(object),
    st.sampled_from([float("nan"), float("inf"), b"\xff\xfe"]),
    st.text(st.characters(categories=["Cs"]), max_size=4),
    st.integers(),
    st.text(max_size=5),
)
hostile_results = st.one_of(
    st.recursive(
        hostile_leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.text(max_size=3), children, max_size=3),
            children.map(Node),
        ),
        max_leaves=8,
    ),
    st.integers(MAX_RESULT_DEPTH - 3, 50_000).map(deep_list),
    st.integers(MAX_RESULT_DEPTH - 3, 5_000).map(chained),
    st.builds(circular),
    st.builds(lambda value: {1: value, (2, 3): [value]}, hostile_leaves),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_results, stop_on_error=st.booleans())
async def test_hostile_tool_results_never_escape_attempt(
    value: object, stop_on_error: bool
) -> None:
    outcome, response = await tool_round(value, stop_on_error=stop_on_error)
    if isinstance(outcome, Failure):
        error = outcome.failure()
        assert isinstance(error, ToolError | StageExecutionError), repr(error)
        assert stop_on_error
        str(error)
        repr(error)
        return
    assert isinstance(outcome, Success)
    assert response is not None
    response.content.as_string()  # what the model reads: always text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_results)
async def test_hostile_tool_results_through_a_function_model_never_escape_attempt(
    value: object,
) -> None:
    seen: list[str] = []

    def answer(request: object) -> ModelOutput:
        context = request.context  # type: ignore[attr-defined]  # a ModelRequest
        last = context[-1]
        if isinstance(last, ModelInput) and last.tool_responses:
            seen.append(last.tool_responses[0].content.as_string())
            return ModelOutput.of("done")
        return ModelOutput(tool_requests=(ModelToolRequest("1", "produce", {}),))

    @tool
    async def produce() -> object:
        """Gives the value under test."""
        return value

    started = time.monotonic()
    outcome = await Stage.completion("go", tools=[produce]).attempt(
        env=Env.of(FunctionModel(answer))
    )
    assert time.monotonic() - started < BOUND
    assert isinstance(outcome, Success)
    assert len(seen) == 1

"""output=: text, JSON, YAML and typed values, parsed into artifacts."""

from __future__ import annotations

import dataclasses
import json

import anyio
import attrs
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from stagefx import ArtifactContent, Env, OutputValidationError, Stage
from stagefx._core.request import OutputSpec
from stagefx.testing import ScriptedModel

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(frozen=True)
class Language:
    name: str
    year: int
    typed: bool = True


class Movie(TypedDict):
    title: str
    rating: float


@attrs.frozen
class Point:
    x: int
    y: int = 0


class Person(pydantic.BaseModel):
    name: str
    age: int


async def complete(output: object, *answers: str) -> tuple[object, ScriptedModel]:
    model = ScriptedModel(*answers)
    stage = Stage.completion("give", output=output)  # type: ignore[arg-type]  # every selection under test
    state = await stage.execute(env=Env.of(model))
    (part,) = state.result.parts
    assert isinstance(part, ArtifactContent)
    assert state.result.as_string() == answers[-1]  # text still reads as the model wrote it
    return part.value, model


async def test_text_keeps_the_model_content() -> None:
    model = ScriptedModel("plain words")
    state = await Stage.completion("hi", output="text").execute(env=Env.of(model))
    assert state.result.as_string() == "plain words"
    assert model.requests[0].output == OutputSpec(mode="text")


async def test_json_and_yaml_are_parsed_fenced_or_not() -> None:
    value, model = await complete("json", '["Python", "Rust", "Go"]')
    assert value == ["Python", "Rust", "Go"]
    assert model.requests[0].output == OutputSpec(mode="json")
    fenced, _ = await complete("json", '```json\n{"a": 1}\n```')
    assert fenced == {"a": 1}
    yaml_value, _ = await complete("yaml", "- Python\n- Rust\n")
    assert yaml_value == ["Python", "Rust"]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (Language, '{"name": "Python", "year": 1991}', Language("Python", 1991)),
        (Movie, '{"title": "Heat", "rating": 8.3}', Movie(title="Heat", rating=8.3)),
        (Point, '{"x": 3}', Point(3, 0)),
        (Person, '{"name": "Ada", "age": 36}', Person(name="Ada", age=36)),
    ],
)
async def test_typed_outputs_validate_into_instances(
    kind: type, text: str, expected: object
) -> None:
    value, model = await complete(kind, text)
    assert value == expected
    spec = model.requests[0].output
    assert spec.mode == "schema"
    assert spec.name == kind.__name__
    assert spec.schema is not None
    assert "properties" in spec.schema


@pytest.mark.parametrize(
    ("output", "text", "message"),
    [
        ("json", '{"unclosed": ', "not valid json: not JSON"),
        ("yaml", "key: [unclosed", "not valid yaml: not YAML"),
        (Language, '{"name": "Python"}', "not valid Language: year: Field required"),
        (Language, '{"name": "Python", "year": "old"}', "year: Input should be a valid integer"),
        (Point, "[1, 2]", "not valid Point"),
    ],
)
async def test_output_that_does_not_parse_or_validate_fails_with_the_raw_text(
    output: object, text: str, message: str
) -> None:
    stage = Stage.completion("give", output=output)  # type: ignore[arg-type]  # every selection under test
    outcome = await stage.attempt(env=Env.of(ScriptedModel(text)))
    error = outcome.failure()
    assert isinstance(error, OutputValidationError)
    assert error.raw == text
    assert message in str(error)


async def test_retry_asks_again_after_invalid_output() -> None:
    model = ScriptedModel("not json at all", '{"name": "Go", "year": 2009}')
    stage = Stage.completion("give", output=Language).with_retry(
        limit=1, catching=OutputValidationError
    )
    state = await stage.execute(env=Env.of(model))
    assert state.result.artifact(Language) == Language("Go", 2009)


def test_an_output_type_without_a_schema_is_refused_at_construction() -> None:
    class Opaque:
        def __init__(self, anything: object) -> None:
            self.anything = anything

    with pytest.raises(TypeError, match="cannot be described"):
        Stage.completion("x", output=Opaque)


languages = st.builds(
    Language,
    name=st.text(max_size=20),
    year=st.integers(-(2**53), 2**53),
    typed=st.booleans(),
)


@given(st.lists(languages, max_size=4))
def test_structured_values_come_back_exactly_as_the_model_sent_them(
    values: list[Language],
) -> None:
    async def check() -> None:
        for value in values:
            text = json.dumps(dataclasses.asdict(value))
            model = ScriptedModel(text)
            state = await Stage.completion("give", output=Language).execute(env=Env.of(model))
            assert state.result.artifact(Language) == value

    anyio.run(check)

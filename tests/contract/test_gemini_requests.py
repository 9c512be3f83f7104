"""Every request body the Gemini provider sends, whole or streamed, validates
against Google's published API description (../shared/spec/gemini-openapi.json):
`GenerateContentRequest`, for `:generateContent` and `:streamGenerateContent`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import attrs
import pydantic
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stagefx import ModelInput, Stage, ctx
from stagefx._core.request import OutputSpec
from stagefx.gemini import Gemini, GeminiConfig
from stagefx.testing import demo_answer
from stagefx.testing._fake_gemini import FakeGeminiServer
from tests.contract.shared import shared_file
from tests.helpers import word_count
from tests.providers.gemini.test_provider import SECRET, rich_request

pytestmark = pytest.mark.anyio


@cache
def _validator(spec_path: Path) -> Draft202012Validator:
    spec = json.loads(spec_path.read_text())
    registry: Registry[bool | Mapping[str, object]] = Registry().with_resource(
        "urn:gemini", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    body = spec["paths"]["/v1beta/models/{model}:generateContent"]["post"]["requestBody"]
    reference = body["content"]["application/json"]["schema"]["$ref"]
    assert reference == "#/components/schemas/GenerateContentRequest"
    return Draft202012Validator({"$ref": f"urn:gemini{reference}"}, registry=registry)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return _validator(shared_file("spec/gemini-openapi.json"))


class Languages(pydantic.BaseModel):
    names: list[str]
    count: int = 0


async def _send_everything(base_url: str) -> None:
    config = GeminiConfig(
        model="gemini-2.5-flash",
        temperature=0.2,
        top_k=20,
        max_output_tokens=300,
        thinking_budget=512,
    )
    async with ctx.scope(
        "contract", config, disposables=(Gemini(api_key=SECRET, base_url=base_url),)
    ) as env:
        gemini = env.get(Gemini)
        assert gemini is not None
        rich = rich_request()
        for request in (rich, attrs.evolve(rich, output=OutputSpec(mode="json"), extra={})):
            await gemini.generate(request, env)
            async for _ in gemini.stream(request, env):
                pass
        pipeline = Stage.sequence(
            Stage.predefined(ModelInput.of("Here is a document.")),
            Stage.completion("Analyze the document.", instructions="Be thorough."),
            Stage.completion("Count its words.", tools=[word_count]),
            Stage.completion("List three languages.", output="json"),
            Stage.completion("As a type.", output=Languages),
            Stage.completion("As YAML.", output="yaml", top_p=0.9),
        )
        await pipeline.execute(env=env)
        async for _ in pipeline.stream(env=env):
            pass


async def test_every_request_body_matches_the_published_description(
    validator: Draft202012Validator,
) -> None:
    with FakeGeminiServer(demo_answer) as server:
        await _send_everything(server.base_url)
    streamed = [request for request in server.requests if "streamGenerateContent" in request.path]
    assert len(server.requests) >= 14
    assert streamed
    for request in server.requests:
        problems = [
            f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(dict(request.body))
        ]
        assert not problems, f"{request.path} body {request.body} breaks the spec: {problems[:3]}"


async def test_the_validator_rejects_a_body_that_breaks_the_spec(
    validator: Draft202012Validator,
) -> None:
    assert not validator.is_valid({"model": "models/x", "contents": "hi"})
    assert not validator.is_valid({"contents": [{"parts": [{"text": 7}]}]})

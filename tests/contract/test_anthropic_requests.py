"""Every request body the Anthropic provider sends, whole or streamed,
validates against Anthropic's published API description
(../shared/spec/anthropic-openapi.json): `CreateMessageParams`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import attrs
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stagefx import ModelInput, Stage, ctx
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx.anthropic import Anthropic, AnthropicConfig
from stagefx.testing import demo_answer
from stagefx.testing._fake_anthropic import FakeAnthropicServer
from tests.contract.shared import shared_file, with_discriminators_resolved
from tests.helpers import word_count
from tests.providers.anthropic.test_provider import SECRET, rich_request

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@cache
def _validator(spec_path: Path) -> Draft202012Validator:
    spec = with_discriminators_resolved(json.loads(spec_path.read_text()))
    assert isinstance(spec, dict)
    registry: Registry[bool | Mapping[str, object]] = Registry().with_resource(
        "urn:anthropic", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    body = spec["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
    return Draft202012Validator(
        {"$ref": f"urn:anthropic{body['schema']['$ref']}"}, registry=registry
    )


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return _validator(shared_file("spec/anthropic-openapi.json"))


def _requests() -> list[ModelRequest]:
    """Every feature: images, tools, several calls and results, thinking
    blocks, forced, `any` and wrapped structured output, JSON output."""
    rich = rich_request()
    return [
        rich,
        attrs.evolve(rich, tools=(), output=OutputSpec(mode="json"), extra={}),
        attrs.evolve(
            rich,
            tools=(),
            output=OutputSpec(mode="schema", schema={"type": "array"}, name="Numbers"),
        ),
        attrs.evolve(rich, output=OutputSpec(), extra={"top_p": 0.5}),
    ]


async def _send_everything(base_url: str) -> None:
    for config in (
        AnthropicConfig(model="claude-sonnet-4-5", max_tokens=300, temperature=0.2, top_k=5),
        AnthropicConfig(model="claude-sonnet-4-5", max_tokens=4096, thinking_budget=1024),
    ):
        async with ctx.scope(
            "contract", config, disposables=(Anthropic(api_key=SECRET, base_url=base_url),)
        ) as env:
            model = env.get(Anthropic)
            assert model is not None
            for request in _requests():
                await model.generate(request, env)
                async for _ in model.stream(request, env):
                    pass
            pipeline = Stage.sequence(
                Stage.predefined(ModelInput.of("Here is a document.")),
                Stage.completion("Analyze the document.", instructions="Be thorough."),
                Stage.completion("Count its words.", tools=[word_count]),
                Stage.completion("List three languages.", output="json"),
                Stage.completion("As YAML.", output="yaml"),
            )
            await pipeline.execute(env=env)


async def test_every_request_body_matches_the_published_schema(
    validator: Draft202012Validator,
) -> None:
    with FakeAnthropicServer(demo_answer) as server:
        await _send_everything(server.base_url)
    assert len(server.requests) >= 26
    assert any(request.body.get("stream") for request in server.requests)
    assert any("thinking" in request.body for request in server.requests)
    assert any(  # thinking blocks kept in an answer's provider_data went back
        '"type": "thinking"' in json.dumps(request.body["messages"]) for request in server.requests
    )
    for request in server.requests:
        problems = [
            f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(dict(request.body))
        ]
        assert not problems, f"body {request.body} breaks the spec: {problems[:3]}"


async def test_the_validator_rejects_a_body_that_breaks_the_spec(
    validator: Draft202012Validator,
) -> None:
    empty_text = {"type": "text", "text": ""}
    assert not validator.is_valid(
        {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [empty_text]}]}
    )
    assert not validator.is_valid({"model": "m", "messages": []})  # max_tokens is required
    assert not validator.is_valid(
        {"model": "m", "max_tokens": 1, "messages": [], "output_config": {"format": {}}}
    )

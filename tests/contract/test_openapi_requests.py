"""Every request body the provider sends, whole or streamed, validates against
the official OpenAPI description (../shared/spec/openai-openapi.json) for its
endpoint."""

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

from stagefx import Env, ModelInput, Stage, ctx
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, demo_answer
from tests.contract.shared import shared_file, with_discriminators_resolved
from tests.helpers import word_count
from tests.providers.openai.test_provider import SECRET, rich_request

pytestmark = pytest.mark.anyio

ENDPOINTS = {"/v1/responses": "/responses", "/v1/chat/completions": "/chat/completions"}


@cache
def _validators(spec_path: Path) -> dict[str, Draft202012Validator]:
    spec = with_discriminators_resolved(json.loads(spec_path.read_text()))
    assert isinstance(spec, dict)
    registry: Registry[bool | Mapping[str, object]] = Registry().with_resource(
        "urn:openai", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    validators = {}
    for served, documented in ENDPOINTS.items():
        body = spec["paths"][documented]["post"]["requestBody"]["content"]["application/json"]
        reference = body["schema"]["$ref"]
        validators[served] = Draft202012Validator(
            {"$ref": f"urn:openai{reference}"}, registry=registry
        )
    return validators


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    return _validators(shared_file("spec/openai-openapi.json"))


async def _stream(provider: OpenAI, request: ModelRequest, env: Env) -> None:
    async for _ in provider.stream(request, env):
        pass


def _streamed_requests() -> list[ModelRequest]:
    """Requests sent streamed: every feature, JSON output, and a caller's own
    `stream_options` (which the provider completes, never replaces)."""
    rich = rich_request()
    return [
        rich,
        attrs.evolve(rich, output=OutputSpec(mode="json"), extra={}),
        attrs.evolve(rich, extra={"stream_options": {"include_obfuscation": False}}),
    ]


async def _send_everything(base_url: str) -> None:
    for config in (
        OpenAIResponsesConfig(model="gpt-4o", temperature=0.2, max_output_tokens=300),
        OpenAIChatConfig(model="gpt-4o", temperature=0.2, max_completion_tokens=300),
    ):
        async with ctx.scope(
            "contract", config, disposables=(OpenAI(api_key=SECRET, base_url=base_url),)
        ) as env:
            provider = env.get(OpenAI)
            assert provider is not None
            await provider.generate(rich_request(), env)
            for request in _streamed_requests():
                await _stream(provider, request, env)
            pipeline = Stage.sequence(
                Stage.predefined(ModelInput.of("Here is a document.")),
                Stage.completion("Analyze the document.", instructions="Be thorough."),
                Stage.completion("Count its words.", tools=[word_count]),
                Stage.completion("List three languages.", output="json"),
                Stage.completion("As YAML.", output="yaml", top_p=0.9),
                Stage.router(
                    Stage.noop.with_meta(name="a", description="route a"),
                    Stage.noop.with_meta(name="b", description="route b"),
                ),
            )
            await pipeline.execute(env=env)


async def test_every_request_body_matches_the_openapi_schema(
    validators: Mapping[str, Draft202012Validator],
) -> None:
    with FakeOpenAIServer(demo_answer) as server:
        await _send_everything(server.base_url)
    paths = [request.path for request in server.requests]
    assert set(paths) == set(ENDPOINTS), paths
    assert len(server.requests) >= 18
    streamed = {request.path for request in server.requests if request.body.get("stream")}
    assert streamed == set(ENDPOINTS), streamed
    for request in server.requests:
        problems = [
            f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
            for error in validators[request.path].iter_errors(dict(request.body))
        ]
        assert not problems, f"{request.path} body {request.body} breaks the spec: {problems[:3]}"


async def test_the_validator_rejects_a_body_that_breaks_the_spec(
    validators: Mapping[str, Draft202012Validator],
) -> None:
    broken = {"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_txt"}]}]}
    assert not validators["/v1/responses"].is_valid(broken)
    assert not validators["/v1/chat/completions"].is_valid({"model": "gpt-4o", "messages": "hi"})

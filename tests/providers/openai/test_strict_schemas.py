"""Typed outputs and tool arguments go out strict wherever the schema can be strict."""

from __future__ import annotations

import logging

import pydantic
import pytest

from stagefx import Stage, ctx, tool
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._wire import strict_form
from stagefx.testing import FakeOpenAIServer, demo_answer

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


class Ticket(pydantic.BaseModel):
    title: str
    priority: int = 3
    tags: list[str] = []


class Loose(pydantic.BaseModel):
    title: str
    counts: dict[str, int]


def test_an_optional_property_with_a_default_becomes_required_and_objects_close() -> None:
    made, why = strict_form(Ticket.model_json_schema())
    assert why is None
    assert made["additionalProperties"] is False
    assert made["required"] == ["title", "priority", "tags"]
    properties = made["properties"]
    assert isinstance(properties, dict)
    assert "default" not in properties["priority"]


def test_nested_definitions_are_made_strict_too() -> None:
    class Order(pydantic.BaseModel):
        ticket: Ticket
        note: str = ""

    made, why = strict_form(Order.model_json_schema())
    assert why is None
    definitions = made["$defs"]
    assert isinstance(definitions, dict)
    assert definitions["Ticket"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (Loose.model_json_schema(), "arbitrary keys"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, "no default"),
    ],
)
def test_a_schema_that_cannot_be_strict_is_sent_as_it_is_with_the_reason(
    schema: dict[str, object], reason: str
) -> None:
    made, why = strict_form(schema)
    assert made == schema
    assert why is not None
    assert reason in why


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_requests_ask_for_strict_output_and_strict_tools(
    api: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    @tool
    async def lookup(query: str, limit: int = 5) -> str:
        """Look something up."""
        return query

    config = OpenAIResponsesConfig(model="m") if api == "responses" else OpenAIChatConfig(model="m")
    with FakeOpenAIServer(demo_answer) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-strict-schemas")
        async with ctx.scope("strict", config, disposables=(OpenAI(base_url=server.base_url),)):
            state = await Stage.completion("File it.", output=Ticket).execute()
            with caplog.at_level(logging.DEBUG, logger="stagefx"):
                await Stage.completion("Count.", output=Loose).attempt()
            await Stage.completion("Look up.", tools=[lookup]).execute()
        strict_output, loose_output, with_tool = (raw.body for raw in server.requests[:3])
    assert isinstance(state.result.artifact(Ticket), Ticket)
    if api == "responses":
        sent, loose_sent = strict_output["text"]["format"], loose_output["text"]["format"]  # type: ignore[index]  # JSON bodies
        tools = with_tool["tools"]
    else:
        sent = strict_output["response_format"]["json_schema"]  # type: ignore[index]  # JSON bodies
        loose_sent = loose_output["response_format"]["json_schema"]  # type: ignore[index]  # JSON bodies
        tools = [entry["function"] for entry in with_tool["tools"]]  # type: ignore[attr-defined]  # JSON bodies
    assert sent["strict"] is True
    assert sent["schema"]["additionalProperties"] is False
    assert loose_sent["strict"] is False
    assert tools[0]["strict"] is True  # type: ignore[index]  # JSON bodies
    assert tools[0]["parameters"]["required"] == ["query", "limit"]  # type: ignore[index]  # JSON bodies
    assert any("arbitrary keys" in str(record.__dict__) for record in caplog.records)

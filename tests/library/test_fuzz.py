"""Bad input never crashes stagefx with anything but a StageException (or a
clear ValueError/TypeError when a stage is built)."""

from __future__ import annotations

import dataclasses
import json

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

from stagefx import (
    Env,
    ModelOutput,
    MultimodalContent,
    Stage,
    StageException,
    StageState,
    tool,
)
from stagefx._core.request import ModelFailure
from stagefx._core.schema import ValidationFailure
from stagefx._model.body import MalformedBody
from stagefx.openai import _chat as chat
from stagefx.openai import _responses as responses
from stagefx.testing import ScriptedModel, strategies


@dataclasses.dataclass(frozen=True)
class Order:
    item: str
    quantity: int


@tool
async def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def outcome_of(stage: Stage, state: StageState, env: Env) -> object:
    async def run() -> object:
        return await stage.attempt(state, env=env)

    return anyio.run(run)


def assert_typed(outcome: object) -> None:
    assert isinstance(outcome, Success | Failure)
    if isinstance(outcome, Failure):
        assert isinstance(outcome.failure(), StageException)


@settings(max_examples=80, deadline=None)
@given(st.lists(strategies.model_outputs(), min_size=1, max_size=4), strategies.states())
def test_arbitrary_model_outputs_and_tool_requests(
    outputs: list[ModelOutput], state: StageState
) -> None:
    stage = Stage.completion("go", tools=[add], tool_rounds=3, output=Order)
    assert_typed(outcome_of(stage, state, Env.of(ScriptedModel(*outputs))))


payloads = st.one_of(
    st.text(max_size=40),
    strategies.json_values.map(json.dumps),
    st.builds(
        lambda item, quantity: json.dumps({"item": item, "quantity": quantity}),
        st.text(),
        strategies.json_values,
    ),
)


@settings(max_examples=120, deadline=None)
@given(payloads, st.sampled_from(["json", "yaml", Order]))
def test_arbitrary_structured_output_payloads(payload: str, output: object) -> None:
    stage = Stage.completion("go", output=output)  # type: ignore[arg-type]  # each mode under test
    assert_typed(outcome_of(stage, StageState.empty, Env.of(ScriptedModel(payload))))


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.text(max_size=5), strategies.json_values, max_size=4))
def test_arbitrary_tool_arguments_are_validated_or_refused(arguments: dict[str, object]) -> None:
    async def call() -> None:
        try:
            result = await add.call(arguments)
        except ValidationFailure:
            return
        assert isinstance(result, int)

    anyio.run(call)


@settings(max_examples=80, deadline=None)
@given(strategies.stages(), strategies.contexts(max_turns=8), strategies.contents())
def test_arbitrary_contexts_and_contents_through_every_context_stage(
    stage: Stage, context: tuple[object, ...], result: MultimodalContent
) -> None:
    state = StageState(context=context, result=result)  # type: ignore[arg-type]  # generated turns
    for shaped in (
        stage,
        Stage.sequence(Stage.trim_context(limit=3), stage, Stage.strip_context_tools()),
        stage.with_volatile_tools_context().extend_result(),
    ):
        assert_typed(outcome_of(shaped, state, Env.of()))


@settings(max_examples=150, deadline=None)
@given(strategies.json_values)
def test_arbitrary_response_bodies_decode_or_are_malformed(body: object) -> None:
    for decode in (responses.decode_response, chat.decode_response):
        try:
            decoded = decode(body, "m")
        except MalformedBody:
            continue
        assert isinstance(decoded, ModelOutput | ModelFailure)

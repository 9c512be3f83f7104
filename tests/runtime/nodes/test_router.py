"""Routing: the default router (the model picks a route by name), routing
functions, and what a router refuses at construction."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from stagefx import Env, MultimodalContent, RoutingError, Stage, StageMeta, StageState
from stagefx.testing import ScriptedModel

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


analysis = Stage.predefined("analyse", "deep analysis", result="deep analysis").with_meta(
    name="detailed_analysis", description="Full analysis of the input dataset."
)
summary = Stage.predefined("summarise", "short summary", result="short summary").with_meta(
    name="quick_summary", description="Lightweight overview for dashboards."
)
router = Stage.router(analysis, summary)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("detailed_analysis", "deep analysis"),
        ("quick_summary", "short summary"),
        (" `Quick_Summary`.\n", "short summary"),
    ],
)
async def test_the_model_routes_to_the_route_it_names(answer: str, expected: str) -> None:
    model = ScriptedModel(answer)
    state = await router.execute(env=Env.of(model))
    assert state.result.as_string() == expected
    (request,) = model.requests
    assert "- detailed_analysis: Full analysis of the input dataset." in request.instructions
    assert "- quick_summary: Lightweight overview for dashboards." in request.instructions


async def test_an_answer_naming_no_route_is_a_routing_error() -> None:
    outcome = await router.attempt(env=Env.of(ScriptedModel("something else")))
    error = outcome.failure()
    assert isinstance(error, RoutingError)
    assert "'something else'" in str(error)
    assert "detailed_analysis" in str(error)


async def test_router_runs_the_chosen_route_and_fails_on_an_unknown_one() -> None:
    first = Stage.predefined("q", "first", result="first").with_meta(
        name="first", description="the first"
    )
    second = Stage.predefined("q", "second", result="second").with_meta(
        name="second", description="the second", tags=["b"]
    )
    offered: list[Mapping[str, StageMeta]] = []

    def choose(name: str) -> Stage:
        def routing(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
            offered.append(options)
            return name

        return Stage.router(first, second, routing=routing)

    assert (await choose("second").execute(env=ENV)).result.as_string() == "second"
    assert offered[0] == {"first": first.meta, "second": second.meta}  # draive's `options`
    assert offered[0]["second"].tags == ("b",)
    assert (await choose(" SECOND").execute(env=ENV)).result.as_string() == "second"
    failure = (await choose("third").attempt(env=ENV)).failure()
    assert isinstance(failure, RoutingError)
    assert "'third'" in str(failure)


def test_router_refuses_unnamed_undescribed_and_duplicate_routes() -> None:
    named = Stage.noop.with_meta(name="a", description="A")

    def routing(*, state: StageState, options: object) -> str:
        return "a"

    with pytest.raises(ValueError, match="has no name"):
        Stage.router(named, Stage.noop, routing=routing)
    with pytest.raises(ValueError, match="has no description"):
        Stage.router(named, Stage.noop.with_meta(name="b"), routing=routing)
    with pytest.raises(ValueError, match="two routes are named 'a'"):
        Stage.router(named, named, routing=routing)


async def test_a_router_of_one_stage_runs_it_without_asking_anyone() -> None:
    def never(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
        raise AssertionError("a single route needs no routing")

    only = Stage.transform_result(lambda content: MultimodalContent.of("only"))
    assert (await Stage.router(only).execute(env=ENV)).result.as_string() == "only"  # no model
    routed = Stage.router(only, routing=never)
    assert (await routed.execute(env=ENV)).result.as_string() == "only"

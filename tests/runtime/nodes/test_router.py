"""The default router: the model picks a route by name."""

from __future__ import annotations

import pytest

from stagefx import Env, RoutingError, Stage
from stagefx.testing import ScriptedModel

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


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

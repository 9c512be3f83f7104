"""Modifiers that describe a stage: its name in failure paths, and its span."""

from __future__ import annotations

from collections.abc import Mapping

from stagefx.combinators._step import Outcome, Step
from stagefx.env import Env
from stagefx.errors import StageException
from stagefx.state import StageState
from stagefx.tracing import AttributeValue, span

__all__ = ["named", "traced"]


def named(step: Step, name: str) -> Step:
    """Failures from `step` get `name` prepended to their stage path."""

    async def run(state: StageState, env: Env) -> Outcome:
        outcome = await step(state, env)
        if isinstance(outcome, StageException):
            return outcome.located(name)
        return outcome

    return run


def traced(step: Step, label: str, attributes: Mapping[str, AttributeValue]) -> Step:
    """Record a span named `label` around `step` through the Env's tracer."""

    async def run(state: StageState, env: Env) -> Outcome:
        with span(env.tracer, env.clock, label, attributes) as opened:
            outcome = await step(state, env)
            if isinstance(outcome, StageException):
                opened.fail(outcome)
        return outcome

    return run

"""Modifiers that describe a stage: its name in failure paths, and its span."""

from __future__ import annotations

from collections.abc import Mapping

from stagefx.combinators._step import Outcome, Step
from stagefx.env import Env
from stagefx.errors import StageException
from stagefx.state import StageState
from stagefx.tracing import (
    AttributeValue,
    close_span,
    close_span_raised,
    is_tracing,
    open_span,
)

__all__ = ["in_span", "named", "traced"]


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
    return in_span(step, label, attributes)


def in_span(step: Step, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Step:
    """`step` run under a span named `name` (when the Env's tracer keeps spans)."""

    async def run(state: StageState, env: Env) -> Outcome:
        if not is_tracing(env.tracer):
            return await step(state, env)
        opened = open_span(env.tracer, env.clock.now, name, attributes)
        try:
            outcome = await step(state, env)
        except BaseException as error:
            close_span_raised(opened, error)
            raise
        close_span(opened, outcome)
        return outcome

    return run

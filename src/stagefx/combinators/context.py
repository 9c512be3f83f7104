"""Stages and modifiers that shape what the next stage sees of context and result."""

from __future__ import annotations

from collections.abc import Callable

from stagefx.combinators._step import Outcome, Step, require_count
from stagefx.conversation import ModelContext, ModelInput, ModelOutput
from stagefx.env import Env
from stagefx.errors import StageException
from stagefx.state import StageState

__all__ = [
    "after",
    "extend_result",
    "ignore_result",
    "strip_context_tools",
    "trim_context",
    "volatile_context",
    "volatile_tools_context",
    "without_tools",
]


def _without_orphans(context: ModelContext) -> ModelContext:
    """Drop leading tool responses whose requests were trimmed away: no
    provider accepts an answer to a call it never made."""
    start = 0
    while start < len(context):
        turn = context[start]
        if not (isinstance(turn, ModelInput) and turn.tool_responses):
            break
        start += 1
    return context[start:]


def trim_context(limit: int) -> Step:
    """Keep at most the last `limit` turns, less any orphaned tool responses."""
    require_count(limit, "trim_context(limit=...)", 0)

    async def run(state: StageState, env: Env) -> Outcome:
        if len(state.context) <= limit:
            return state
        kept = state.context[len(state.context) - limit :] if limit else ()
        return state.updated(context=_without_orphans(kept))

    return run


def without_tools(context: ModelContext) -> ModelContext:
    """The context with every tool request and response removed (empty turns dropped)."""
    kept: list[ModelInput | ModelOutput] = []
    for turn in context:
        if isinstance(turn, ModelOutput):
            if turn.tool_requests:
                turn = ModelOutput(turn.content, (), turn.usage, turn.finish_reason)
        elif turn.tool_responses:
            turn = ModelInput(turn.content)
        if not turn.content.is_empty:
            kept.append(turn)
    return tuple(kept)


async def _strip(state: StageState, env: Env) -> Outcome:
    return state.updated(context=without_tools(state.context))


def strip_context_tools() -> Step:
    """Remove all tool requests and responses from the context."""
    return _strip


def after(step: Step, combine: Callable[[StageState, StageState], StageState]) -> Step:
    """Run `step`; on success, `combine(state_before, state_after)` is the result.

    Failures pass through untouched (they already carry the last good state).
    """

    async def run(state: StageState, env: Env) -> Outcome:
        outcome = await step(state, env)
        if isinstance(outcome, StageException):
            return outcome
        return combine(state, outcome)

    return run


def _keep_context(before: StageState, after: StageState) -> StageState:
    return before.updated(result=after.result)


def _drop_added_tools(before: StageState, after: StageState) -> StageState:
    common = 0
    for old, new in zip(before.context, after.context, strict=False):
        if old != new:
            break
        common += 1
    added = without_tools(after.context[common:])
    return after.updated(context=(*after.context[:common], *added))


def _keep_result(before: StageState, after: StageState) -> StageState:
    return after.updated(result=before.result)


def _extend_result(before: StageState, after: StageState) -> StageState:
    return after.updated(result=before.result.extending(after.result))


def volatile_context(step: Step) -> Step:
    """Run `step`, keep its result, restore the context it started with."""
    return after(step, _keep_context)


def volatile_tools_context(step: Step) -> Step:
    """Run `step`, then drop the tool turns it added (earlier ones stay)."""
    return after(step, _drop_added_tools)


def ignore_result(step: Step) -> Step:
    """Run `step`, keep its context, restore the result it started with."""
    return after(step, _keep_result)


def extend_result(step: Step) -> Step:
    """Run `step`, append its result to the result it started with."""
    return after(step, _extend_result)

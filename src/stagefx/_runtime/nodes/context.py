"""Nodes that shape what the next stage sees of the context and the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, final

import attrs

from stagefx._core.conversation import ModelContext, ModelInput, ModelOutput
from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage
from stagefx._env.env import Env
from stagefx._runtime.node import Frame, Next, Node, Outcome, Run
from stagefx._runtime.user_code import require_count

__all__ = [
    "ExtendResult",
    "IgnoreResult",
    "StripContextTools",
    "TrimContext",
    "VolatileContext",
    "VolatileToolsContext",
]


def _check_limit(_: object, __: object, value: int | slice | None) -> None:
    if value is None or isinstance(value, slice):
        return
    require_count(value, "trim_context(limit=...)", 0)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class TrimContext(Node):
    """As draive does: keep the first `limit` turns (an int), the turns a
    `slice` selects, or none (`None` clears the context)."""

    kind: ClassVar[str] = "trim_context"
    leaf: ClassVar[bool] = True

    limit: int | slice | None = attrs.field(validator=_check_limit)

    def details(self) -> Mapping[str, AttributeValue]:
        limit = self.limit
        if limit is None:
            return {"limit": "none"}
        if isinstance(limit, slice):
            return {"limit": f"[{_bound(limit.start)}:{_bound(limit.stop)}:{_bound(limit.step)}]"}
        return {"limit": limit}

    async def run(self, state: StageState, env: Env) -> Outcome:
        limit = self.limit
        if limit is None:
            return state.updated(context=()) if state.context else state
        kept = state.context[:limit] if isinstance(limit, int) else state.context[limit]
        if len(kept) == len(state.context):
            return state
        return state.updated(context=kept)


def _bound(value: object) -> str:
    return "" if value is None else str(value)


def without_tools(context: ModelContext) -> ModelContext:
    """The context with every tool request and response removed; a turn that
    held only tool traffic stays, emptied, so the context keeps its length (as
    draive's `without_tools()` does). Providers skip turns with nothing to send."""
    kept: list[ModelInput | ModelOutput] = []
    for turn in context:
        if isinstance(turn, ModelOutput):
            if turn.tool_requests:
                turn = ModelOutput(turn.content, (), turn.usage, turn.finish_reason)
        elif turn.tool_responses:
            turn = ModelInput(turn.content)
        kept.append(turn)
    return tuple(kept)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class StripContextTools(Node):
    """Remove all tool requests and responses from the context."""

    kind: ClassVar[str] = "strip_context_tools"
    leaf: ClassVar[bool] = True

    async def run(self, state: StageState, env: Env) -> Outcome:
        return state.updated(context=without_tools(state.context))


class _After(Node):
    """Run the child; on success combine the state before with the state after.
    Failures pass through untouched (they already carry the last good state)."""

    __slots__ = ()

    child: Node

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def start(self, state: StageState, env: Env) -> Next:
        return Run(self.child, state, _AfterFrame(self, state))

    def combine(self, before: StageState, after: StageState) -> StageState:
        raise NotImplementedError


@final
class _AfterFrame(Frame):
    __slots__ = ("before", "node")

    def __init__(self, node: _After, before: StageState) -> None:
        self.node = node
        self.before = before

    def resume(self, outcome: Outcome) -> Next:
        if isinstance(outcome, StageException):
            return outcome
        return self.node.combine(self.before, outcome)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class VolatileContext(_After):
    """Keep the child's result, not its changes to the context or to values;
    the usage it spent still counts."""

    kind: ClassVar[str] = "volatile_context"
    child: Node

    def combine(self, before: StageState, after: StageState) -> StageState:
        kept = before.updated(result=after.result)
        return with_usage(kept, after.get(UsageTotals, UsageTotals()))


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class VolatileToolsContext(_After):
    """Keep the child's context changes, with the tool requests and responses
    it added removed (turns that held only those stay, emptied)."""

    kind: ClassVar[str] = "volatile_tools_context"
    child: Node

    def combine(self, before: StageState, after: StageState) -> StageState:
        common = 0
        for old, new in zip(before.context, after.context, strict=False):
            if old != new:
                break
            common += 1
        added = without_tools(after.context[common:])
        return after.updated(context=(*after.context[:common], *added))


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class IgnoreResult(_After):
    """Keep the child's context changes, restore the result it started with."""

    kind: ClassVar[str] = "ignore_result"
    child: Node

    def combine(self, before: StageState, after: StageState) -> StageState:
        return after.updated(result=before.result)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class ExtendResult(_After):
    """Append the child's result to the result it started with."""

    kind: ClassVar[str] = "extend_result"
    child: Node

    def combine(self, before: StageState, after: StageState) -> StageState:
        return after.updated(result=before.result.extending(after.result))

"""Fan-out: run branches on the same state concurrently, then merge (a traversal)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, Protocol, TypeAlias, cast, final

import anyio
import attrs

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.spending import with_all_spent
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import close_span, close_span_raised, open_span
from stagefx._runtime.calls import failure, require_count, resolve
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Node, Outcome, SpanSpec, run_leaf

__all__ = ["DEFAULT_CONCURRENT_TASKS", "Concurrent", "Merge", "MergeBranches"]

DEFAULT_CONCURRENT_TASKS = 2
"""draive's default: at most two branches run at once."""


class MergeBranches(Protocol):
    """draive's merge: `merge(*, branches)`, sync or async."""

    def __call__(self, *, branches: Sequence[Outcome]) -> StageState | Awaitable[StageState]: ...


Merge: TypeAlias = MergeBranches | Callable[[Sequence[Outcome]], StageState | Awaitable[StageState]]
"""Receives each branch's `StageState | StageException`, in branch order: as
`branches=` (draive's way) when it has a parameter of that name, else
positionally."""


def _by_keyword(merge: object) -> bool:
    """Whether `merge` takes `branches=` (draive calls it so)."""
    try:
        parameters = inspect.signature(merge).parameters  # type: ignore[arg-type]  # any callable
    except (TypeError, ValueError):  # no signature to read: call it positionally
        return False
    found = parameters.get("branches")
    return found is not None and found.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_branches(_: object, __: object, value: tuple[Node, ...]) -> None:
    if not value:
        raise ValueError("Stage.concurrent needs at least one stage")


def _check_merge(_: object, __: object, value: Merge) -> None:
    if not callable(value):
        raise TypeError(f"concurrent merge must be callable, got {type(value).__name__}")


def _check_limit(_: object, __: object, value: int | None) -> None:
    if value is not None:
        require_count(value, "Stage.concurrent(concurrent_tasks=...)", 1)


def _keyword(node: Concurrent) -> bool:
    return _by_keyword(node.merge)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Concurrent(Node):
    """All branches run in one task group (at most `limit` at a time), each
    interpreted in its own task; the merge sees every outcome in branch order.
    Nothing outlives the node, and a cancellation from outside cancels every
    branch. The usage of every branch is kept, whichever the merge keeps."""

    kind: ClassVar[str] = "concurrent"
    leaf: ClassVar[bool] = True
    laws: ClassVar[tuple[str, ...]] = ("check_concurrent",)

    branches: tuple[Node, ...] = attrs.field(validator=_check_branches)
    merge: Merge = attrs.field(validator=_check_merge)
    limit: int | None = attrs.field(validator=_check_limit)
    keyword: bool = attrs.field(init=False, default=attrs.Factory(_keyword, takes_self=True))

    def children(self) -> tuple[Node, ...]:
        return self.branches

    def details(self) -> Mapping[str, AttributeValue]:
        return {} if self.limit is None else {"concurrent_tasks": self.limit}

    def span(self) -> SpanSpec:
        return ("concurrent", {"branches": len(self.branches)})

    async def run(self, state: StageState, env: Env) -> Outcome:
        count = len(self.branches)
        outcomes: list[Outcome] = [state] * count
        branches = self.branches
        traced = env.tracer_active

        async def branch(index: int) -> None:
            node = branches[index]
            if not traced:
                outcomes[index] = await (
                    run_leaf(node, state, env) if node.leaf else interpret(node, state, env)
                )
                return
            span = open_span(env.tracer, env.clock.now, f"branch {index}")
            try:
                outcome = await (
                    run_leaf(node, state, env) if node.leaf else interpret(node, state, env)
                )
            except BaseException as error:
                close_span_raised(span, error)
                raise
            close_span(span, outcome)
            outcomes[index] = outcome

        workers = count if self.limit is None else min(self.limit, count)
        async with anyio.create_task_group() as group:
            if workers == count:
                for index in range(count):
                    group.start_soon(branch, index)
            else:
                pending = iter(range(count))

                async def worker() -> None:
                    for index in pending:
                        await branch(index)

                for _ in range(workers):
                    group.start_soon(worker)
        return await self._merged(state, outcomes)

    async def _merged(self, state: StageState, outcomes: list[Outcome]) -> Outcome:
        try:
            # `keyword`, read once when built, says how to call it.
            merge = cast("Callable[..., object]", self.merge)
            called = merge(branches=outcomes) if self.keyword else merge(outcomes)
            value: object = await resolve(called)
        except StageException as error:  # a branch's failure, passed on: all usage kept
            passed = copy.copy(error)
            passed.state = with_all_spent(state, outcomes, error.state)
            return passed
        except Exception as error:
            return failure(error, with_all_spent(state, outcomes, state))
        if not isinstance(value, StageState):
            wrong = TypeError(f"merge must return StageState, got {type(value).__name__}")
            return failure(wrong, with_all_spent(state, outcomes, state))
        return with_all_spent(state, outcomes, value)

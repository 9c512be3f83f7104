"""Fan-out: run branches on the same state concurrently, then merge (a traversal)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, Protocol, TypeAlias, cast, final

import anyio
import attrs
from returns.result import Success

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.spending import with_all_spent
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage
from stagefx._env.env import Env
from stagefx._env.tracing import close_span, close_span_raised, open_span
from stagefx._runtime.equivalence import (
    Attempt,
    LawViolation,
    Staged,
    as_attempt,
    assert_equivalent,
    assert_equivalent_up_to_usage,
    assert_usage,
    attempted,
    spent,
)
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Law, Node, Outcome, SpanSpec
from stagefx._runtime.user_code import failure, require_count, resolve

__all__ = ["Concurrent", "DEFAULT_CONCURRENT_TASKS", "Merge", "MergeBranches", "check_concurrent"]

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


# The law of `Concurrent`.


def _recording(
    seen: list[list[Attempt]], state: StageState
) -> Callable[[Sequence[Outcome]], StageState]:
    """A merge that appends the outcomes it receives to `seen` and returns `state`."""

    def merge(outcomes: Sequence[Outcome]) -> StageState:
        seen.append([as_attempt(outcome) for outcome in outcomes])
        return state

    return merge


def _picking(index: int) -> Callable[[Sequence[Outcome]], StageState]:
    """A merge giving the outcome of branch `index`: its state, or its failure raised."""

    def pick(outcomes: Sequence[Outcome]) -> StageState:
        chosen = outcomes[index]
        if isinstance(chosen, StageException):
            raise chosen
        return chosen

    return pick


async def check_concurrent(stages: Sequence[Staged], state: StageState, env: Env) -> None:
    """`Stage.concurrent` is a traversal: every branch runs as if alone on the
    input, and the merge sees the outcomes in branch order.

    - the merge is called once, with each branch's outcome, in branch order,
      equivalent to that branch run alone: no branch depends on its siblings,
      with any number of concurrent tasks (unlimited, or 1);
    - a merge returning the input state gives it with every branch's usage added;
    - `concurrent(branch, merge=<pick it>) == branch`, for each branch;
    - among all the branches, a merge picking one (returning its state, or
      raising its failure) gives that branch's outcome, with every branch's
      usage (up to usage, it is the branch alone).
    """
    branches = tuple(stage.node for stage in stages)
    if not branches:
        raise ValueError("check_concurrent needs at least one stage")
    alone = [await attempted(branch, state, env) for branch in branches]
    total = state.get(UsageTotals, UsageTotals())
    for outcome in alone:
        total = total.combined(spent(outcome, state))
    for tasks in (None, 1):
        seen: list[list[Attempt]] = []
        law = "concurrent" if tasks is None else f"concurrent(concurrent_tasks={tasks})"
        merged = await attempted(Concurrent(branches, _recording(seen, state), tasks), state, env)
        if len(seen) != 1 or len(seen[0]) != len(branches):
            raise LawViolation(
                f"{law}: the merge was called {len(seen)} times with "
                f"{[len(call) for call in seen]} outcomes, expected once with {len(branches)}"
            )
        for index, (outcome, expected) in enumerate(zip(seen[0], alone, strict=True)):
            assert_equivalent(f"{law}: branch {index} as if alone", outcome, expected)
        assert_equivalent(
            f"{law}: the merge's state with every branch's usage",
            merged,
            Success(with_usage(state, total)),
        )
    for index, branch in enumerate(branches):
        assert_equivalent(
            f"concurrent(branch {index}) picking it",
            await attempted(
                Concurrent((branch,), _picking(0), DEFAULT_CONCURRENT_TASKS), state, env
            ),
            alone[index],
        )
        picked = await attempted(
            Concurrent(branches, _picking(index), DEFAULT_CONCURRENT_TASKS), state, env
        )
        law = f"concurrent picking branch {index} of {len(branches)}"
        assert_equivalent_up_to_usage(law, picked, alone[index])
        assert_usage(f"{law} keeps every branch's usage", picked, total)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Concurrent(Node):
    """All branches run in one task group (at most `limit` at a time), each
    interpreted in its own task; the merge sees every outcome in branch order.
    Nothing outlives the node, and a cancellation from outside cancels every
    branch. The usage of every branch is kept, whichever the merge keeps."""

    kind: ClassVar[str] = "concurrent"
    leaf: ClassVar[bool] = True
    laws: ClassVar[tuple[Law[...], ...]] = (Law("concurrent", check_concurrent),)

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
                outcomes[index] = await interpret(node, state, env)
                return
            span = open_span(env.tracer, env.clock.now, f"branch {index}")
            try:
                outcome = await interpret(node, state, env)
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

"""Sequences and loops, run as flat loops over a tuple of steps (stack-safe)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Literal, Protocol

from stagefx.combinators._step import Outcome, Step, failure, identity, require_count, resolve_bool
from stagefx.env import Env
from stagefx.errors import StageException
from stagefx.state import StageState
from stagefx.tracing import annotate

__all__ = ["LoopCondition", "loop", "sequence"]


class LoopCondition(Protocol):
    """`(*, state, iteration) -> bool`, sync or async; `iteration` counts finished runs."""

    def __call__(self, *, state: StageState, iteration: int) -> bool | Awaitable[bool]: ...


def sequence(parts: tuple[Step, ...]) -> Step:
    """Kleisli composition of `parts`, short-circuiting on the first failure."""
    if not parts:
        return identity
    if len(parts) == 1:
        return parts[0]

    async def run(state: StageState, env: Env) -> Outcome:
        for part in parts:
            outcome = await part(state, env)
            if isinstance(outcome, StageException):
                return outcome
            state = outcome
        return state

    return run


def loop(
    body: tuple[Step, ...],
    condition: LoopCondition,
    mode: Literal["post_check", "pre_check"],
    max_iterations: int | None,
) -> Step:
    """Run `body` while `condition` holds: checked after each run (`post_check`,
    so the body runs at least once) or before it (`pre_check`). `max_iterations`
    caps the number of runs; reaching it ends the loop normally."""
    if not callable(condition):
        raise TypeError(f"loop condition must be callable, got {type(condition).__name__}")
    if mode not in ("post_check", "pre_check"):
        raise ValueError(f"loop mode must be 'post_check' or 'pre_check', got {mode!r}")
    if max_iterations is not None:
        require_count(max_iterations, "Stage.loop(max_iterations=...)", 0)
    step = sequence(body)
    check_first = mode == "pre_check"
    cap = -1 if max_iterations is None else max_iterations

    async def run(state: StageState, env: Env) -> Outcome:
        iteration = 0
        while iteration != cap:
            if check_first or iteration:
                try:
                    proceed = condition(state=state, iteration=iteration)
                    if proceed is not True and proceed is not False:
                        proceed = await resolve_bool(proceed, "loop condition")
                except Exception as error:
                    return failure(error, state)
                if not proceed:
                    annotate("iterations", iteration)
                    return state
            outcome = await step(state, env)
            if isinstance(outcome, StageException):
                annotate("iterations", iteration + 1)
                return outcome
            state = outcome
            iteration += 1
        annotate("iterations", iteration)
        return state

    return run

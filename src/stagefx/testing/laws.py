"""Law checkers: call them from your tests to verify your own stages.

Each checker runs stages on a state in an `Env` and raises `LawViolation`
(an `AssertionError`) describing the difference when a law does not hold.
They are async; under hypothesis, wrap a call in `anyio.run`.

Two outcomes are *equivalent* when both succeed with equal states, or both
fail with the same failure type, message, stage path and last good state.
"""

from __future__ import annotations

from collections.abc import Callable

from returns.result import Failure, Result, Success

from stagefx._content import MultimodalContent
from stagefx._conversation import ModelContext
from stagefx._env import Env
from stagefx._errors import StageException
from stagefx._stage import Stage
from stagefx._state import StageState

__all__ = [
    "LawViolation",
    "assert_equivalent",
    "check_associativity",
    "check_cached_determinism",
    "check_context_functor",
    "check_identity",
    "check_result_functor",
    "check_short_circuit",
    "equivalent",
]

Outcome = Result[StageState, StageException]


class LawViolation(AssertionError):
    """A combinator law did not hold; the message says which and how."""


def _key(outcome: Outcome) -> object:
    match outcome:
        case Success(state):
            return ("success", state)
        case Failure(error):
            return ("failure", type(error), error.message, error.stage_path, error.state)
    raise TypeError(f"not a Result: {outcome!r}")


def equivalent(left: Outcome, right: Outcome) -> bool:
    """Whether two outcomes are the same for a user (see the module docstring)."""
    return _key(left) == _key(right)


def assert_equivalent(law: str, left: Outcome, right: Outcome) -> None:
    """Raise `LawViolation`, naming `law` and both sides, unless they are equivalent."""
    if not equivalent(left, right):
        raise LawViolation(f"{law}:\n  left:  {_key(left)!r}\n  right: {_key(right)!r}")


async def check_identity(stage: Stage, state: StageState, env: Env) -> None:
    """`sequence(noop, s) == s == sequence(s, noop)`."""
    alone = await stage.attempt(state, env=env)
    assert_equivalent(
        "left identity", await Stage.sequence(Stage.noop, stage).attempt(state, env=env), alone
    )
    assert_equivalent(
        "right identity", await Stage.sequence(stage, Stage.noop).attempt(state, env=env), alone
    )


async def check_associativity(
    first: Stage, second: Stage, third: Stage, state: StageState, env: Env
) -> None:
    """`sequence(sequence(a, b), c) == sequence(a, sequence(b, c)) == sequence(a, b, c)`."""
    flat = await Stage.sequence(first, second, third).attempt(state, env=env)
    left = await Stage.sequence(Stage.sequence(first, second), third).attempt(state, env=env)
    right = await Stage.sequence(first, Stage.sequence(second, third)).attempt(state, env=env)
    assert_equivalent("associativity (left nesting)", left, flat)
    assert_equivalent("associativity (right nesting)", right, flat)


async def check_short_circuit(failing: Stage, after: Stage, state: StageState, env: Env) -> None:
    """If `failing` fails, `sequence(failing, after)` fails the same way and
    never runs `after`."""
    alone = await failing.attempt(state, env=env)
    if not isinstance(alone, Failure):
        raise LawViolation(f"short circuit: the first stage did not fail: {alone!r}")
    ran: list[StageState] = []

    async def spy(content: MultimodalContent) -> MultimodalContent:
        ran.append(state)
        return content

    chained = await Stage.sequence(failing, Stage.transform_result(spy), after).attempt(
        state, env=env
    )
    assert_equivalent("short circuit", chained, alone)
    if ran:
        raise LawViolation("short circuit: a stage after the failure ran")


async def check_result_functor(
    first: Callable[[MultimodalContent], MultimodalContent],
    second: Callable[[MultimodalContent], MultimodalContent],
    state: StageState,
    env: Env,
) -> None:
    """`transform_result(id) == noop`; `transform_result(g . f) ==
    sequence(transform_result(f), transform_result(g))`."""
    assert_equivalent(
        "result functor identity",
        await Stage.transform_result(lambda content: content).attempt(state, env=env),
        await Stage.noop.attempt(state, env=env),
    )
    assert_equivalent(
        "result functor composition",
        await Stage.transform_result(lambda content: second(first(content))).attempt(
            state, env=env
        ),
        await Stage.sequence(Stage.transform_result(first), Stage.transform_result(second)).attempt(
            state, env=env
        ),
    )


async def check_context_functor(
    first: Callable[[ModelContext], ModelContext],
    second: Callable[[ModelContext], ModelContext],
    state: StageState,
    env: Env,
) -> None:
    """The functor laws for `transform_context`, as for `check_result_functor`."""
    assert_equivalent(
        "context functor identity",
        await Stage.transform_context(lambda context: context).attempt(state, env=env),
        await Stage.noop.attempt(state, env=env),
    )
    assert_equivalent(
        "context functor composition",
        await Stage.transform_context(lambda context: second(first(context))).attempt(
            state, env=env
        ),
        await Stage.sequence(
            Stage.transform_context(first), Stage.transform_context(second)
        ).attempt(state, env=env),
    )


async def check_cached_determinism(stage: Stage, states: list[StageState], env: Env) -> None:
    """`stage.cached()` gives what `stage` gives, for every state, run twice over."""
    memo = stage.cached()
    for state in [*states, *states]:
        assert_equivalent(
            "cached equivalence",
            await memo.attempt(state, env=env),
            await stage.attempt(state, env=env),
        )

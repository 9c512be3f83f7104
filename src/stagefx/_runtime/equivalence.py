"""When two stages behave the same: what every law check (`Node.laws`, beside
each node) needs once: running a tree, comparing outcomes fully or up to
usage, `LawViolation`, and a probe leaf to build trees with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, TypeAlias, final

import attrs
from returns.result import Failure, Result, Success

from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, without_usage
from stagefx._env.env import Env
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Node, Outcome
from stagefx._runtime.user_code import failure

__all__ = [
    "Attempt",
    "LawViolation",
    "Probe",
    "Staged",
    "as_attempt",
    "assert_equivalent",
    "assert_equivalent_up_to_usage",
    "assert_usage",
    "attempted",
    "equivalent",
    "spent",
    "usage_of",
]

Attempt: TypeAlias = Result[StageState, StageException]
"""An outcome as `Stage.attempt` gives it."""

_NO_USAGE = UsageTotals()


class Staged(Protocol):
    """What a law takes as a stage: anything with a `node`, the root of a tree,
    as a `Stage` has."""

    @property
    def node(self) -> Node: ...


class LawViolation(AssertionError):
    """A combinator law did not hold; the message says which and how."""


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Probe(Node):
    """A leaf the checks build trees with: `step(state)` is its outcome, and
    what `step` raises its failure (a spy, a tag, a refusal)."""

    kind: ClassVar[str] = "probe"
    leaf: ClassVar[bool] = True

    step: Callable[[StageState], StageState]

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            return self.step(state)
        except Exception as error:
            return failure(error, state)


async def attempted(node: Node, state: StageState, env: Env) -> Attempt:
    """Run `node` on `state` in `env`, as `Stage.attempt` does."""
    return as_attempt(await interpret(node, state, env))


def as_attempt(outcome: Outcome) -> Attempt:
    """A node's outcome as a `Result`."""
    return Failure(outcome) if isinstance(outcome, StageException) else Success(outcome)


def _key(outcome: Attempt) -> object:
    match outcome:
        case Success(state):
            return ("success", state)
        case Failure(error):
            return ("failure", type(error), error.message, error.stage_path, error.state)
        case _:  # Result's subclasses are not a closed union to a type checker
            raise TypeError(f"not a Result: {outcome!r}")


def _key_up_to_usage(outcome: Attempt) -> object:
    if isinstance(outcome, Success):
        return ("success", without_usage(outcome.unwrap()))
    error = outcome.failure()
    return ("failure", type(error), error.message, error.stage_path, without_usage(error.state))


def equivalent(left: Attempt, right: Attempt) -> bool:
    """Whether two outcomes are the same for a user: both succeed with equal
    states, or both fail with the same failure type, message, stage path and
    last good state."""
    return _key(left) == _key(right)


def assert_equivalent(law: str, left: Attempt, right: Attempt) -> None:
    """Raise `LawViolation`, naming `law` and both sides, unless they are equivalent."""
    if not equivalent(left, right):
        raise LawViolation(f"{law}:\n  left:  {_key(left)!r}\n  right: {_key(right)!r}")


def assert_equivalent_up_to_usage(law: str, left: Attempt, right: Attempt) -> None:
    """`assert_equivalent`, leaving the token usage (`UsageTotals`) out of the states."""
    if _key_up_to_usage(left) != _key_up_to_usage(right):
        raise LawViolation(
            f"{law} (up to usage):\n  left:  {_key(left)!r}\n  right: {_key(right)!r}"
        )


def usage_of(outcome: Attempt) -> UsageTotals:
    """The usage the outcome's state (or its failure's last good state) holds."""
    state = outcome.unwrap() if isinstance(outcome, Success) else outcome.failure().state
    return state.get(UsageTotals, _NO_USAGE)


def spent(outcome: Attempt, base: StageState) -> UsageTotals:
    """The usage `outcome` added to what `base` held."""
    return usage_of(outcome).combined(base.get(UsageTotals, _NO_USAGE), sign=-1)


def assert_usage(law: str, outcome: Attempt, expected: UsageTotals) -> None:
    """Raise `LawViolation`, naming `law`, unless `outcome` holds `expected` usage."""
    if usage_of(outcome) != expected:
        raise LawViolation(
            f"{law}:\n  usage:    {usage_of(outcome)!r}\n  expected: {expected!r}\n"
            f"  outcome:  {_key(outcome)!r}"
        )

"""Usage accounting across failures and branches: what a failure spent counts
once, never less than nothing, whichever state it carries."""

from __future__ import annotations

from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage

__all__ = ["plus_spent_by", "with_all_spent"]

_NONE = UsageTotals()


def _usage_in(outcome: StageState | StageException) -> UsageTotals:
    """The usage an outcome reports: a state's totals, or a failure's state's."""
    state = outcome if isinstance(outcome, StageState) else outcome.state
    return state.get(UsageTotals, _NONE)


def plus_spent_by(state: StageState, failure: StageException) -> StageState:
    """`state` plus what `failure` spent beyond it: to run again or fall back from."""
    start = state.get(UsageTotals, _NONE)
    extra = _usage_in(failure).beyond(start)
    if not extra.models:
        return state
    return state.updated(start.combined(extra))


def with_all_spent(
    base: StageState, outcomes: list[StageState | StageException], kept: StageState
) -> StageState:
    """`kept` with `base`'s usage plus what every outcome spent beyond it,
    whichever outcomes it was made from (failed ones included)."""
    start = base.get(UsageTotals, _NONE)
    total = start
    for outcome in outcomes:
        state = outcome if isinstance(outcome, StageState) else outcome.state
        if state.values is base.values:
            continue  # the hot path: a branch that changed no values spent nothing
        extra = state.get(UsageTotals, _NONE).beyond(start)
        if extra.models:
            total = total.combined(extra)
    return with_usage(kept, total)

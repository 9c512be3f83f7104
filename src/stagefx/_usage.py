"""Token usage totals per model: kept in the state, summed across branches."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import attrs

from stagefx._conversation import TokenUsage
from stagefx._state import StageState

if TYPE_CHECKING:
    from stagefx._errors import StageException

__all__ = ["UsageTotals", "carrying", "spent", "with_all_spent"]


@final
@attrs.frozen(slots=True)
class UsageTotals:
    """Input and output tokens per model, for one execution.

    Every model call adds to the `UsageTotals` in the state
    (`state.get(UsageTotals)`), and a failure's state holds what was spent up
    to it: retried attempts, a branch that failed before a fallback and every
    concurrent branch all count, so the final state agrees with the trace.
    """

    models: tuple[TokenUsage, ...] = ()

    def plus(self, usage: TokenUsage) -> UsageTotals:
        """These totals with one more call's usage added."""
        return self.combined(UsageTotals((usage,)), sign=1)

    def combined(self, other: UsageTotals, *, sign: int = 1) -> UsageTotals:
        """These totals plus (or, with `sign=-1`, minus) `other`'s."""
        counts = {usage.model: (usage.input_tokens, usage.output_tokens) for usage in self.models}
        for usage in other.models:
            tokens_in, tokens_out = counts.get(usage.model, (0, 0))
            counts[usage.model] = (
                tokens_in + sign * usage.input_tokens,
                tokens_out + sign * usage.output_tokens,
            )
        return UsageTotals(
            tuple(
                TokenUsage(model, tokens_in, tokens_out)
                for model, (tokens_in, tokens_out) in sorted(counts.items())
                if tokens_in or tokens_out
            )
        )

    def of(self, model: str) -> TokenUsage:
        """The totals of one model (zeros if it was not used)."""
        for usage in self.models:
            if usage.model == model:
                return usage
        return TokenUsage(model)

    @property
    def input_tokens(self) -> int:
        return sum(usage.input_tokens for usage in self.models)

    @property
    def output_tokens(self) -> int:
        return sum(usage.output_tokens for usage in self.models)


_NONE = UsageTotals()


def spent(outcome: StageState | StageException) -> UsageTotals:
    """The usage an outcome reports: a state's totals, or a failure's state's."""
    state = outcome if isinstance(outcome, StageState) else outcome.state
    return state.get(UsageTotals, _NONE)


def carrying(state: StageState, failure: StageException) -> StageState:
    """`state` with the usage `failure` spent, to run again or fall back from."""
    used = spent(failure)
    if used == state.get(UsageTotals, _NONE):
        return state
    return state.updated(used)


def with_all_spent(
    base: StageState, outcomes: list[StageState | StageException], kept: StageState
) -> StageState:
    """`kept` with the usage every outcome added on top of `base`'s, whichever
    outcomes it was made from (failed ones included)."""
    start = base.get(UsageTotals, _NONE)
    total = start
    for outcome in outcomes:
        state = outcome if isinstance(outcome, StageState) else outcome.state
        if state.values is base.values:
            continue  # the hot path: a branch that changed no values spent nothing
        used = state.get(UsageTotals, _NONE)
        if used != start:
            total = total.combined(used).combined(start, sign=-1)
    if total == kept.get(UsageTotals, _NONE):
        return kept
    return kept.updated(total)

"""Token usage totals per model: kept in the state, summed across branches."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import final

import attrs

from stagefx._core.conversation import TokenUsage
from stagefx._core.state import StageState

__all__ = [
    "Ledger",
    "UsageTotals",
    "close_ledger",
    "open_ledger",
    "record_spend",
    "with_usage",
    "without_usage",
]


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

    def beyond(self, base: UsageTotals) -> UsageTotals:
        """What these totals hold beyond `base`'s, per model and count, never
        below zero (a failure may carry a state unrelated to its input)."""
        if self is base or self == base:
            return _NONE
        extra = self.combined(base, sign=-1)
        return UsageTotals(
            tuple(
                TokenUsage(usage.model, max(usage.input_tokens, 0), max(usage.output_tokens, 0))
                for usage in extra.models
                if usage.input_tokens > 0 or usage.output_tokens > 0
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


def with_usage(state: StageState, usage: UsageTotals) -> StageState:
    """`state` holding `usage` as its totals."""
    if usage == state.get(UsageTotals, _NONE):
        return state
    return state.updated(usage)


def without_usage(state: StageState) -> StageState:
    """`state` with no `UsageTotals`: what a cache keys on (usage is no input)."""
    if state.get(UsageTotals) is None:
        return state
    kept = tuple(value for value in state.values if type(value) is not UsageTotals)
    return StageState(context=state.context, result=state.result, values=kept)


@final
class Ledger:
    """Usage spent under a stage that may be cut off (`with_timeout`): every
    model call adds to the ledgers open around it, so a timed-out failure
    still carries what the cancelled work spent."""

    __slots__ = ("parent", "spent")

    def __init__(self, parent: Ledger | None) -> None:
        self.parent = parent
        self.spent = _NONE


_ledger: ContextVar[Ledger | None] = ContextVar("stagefx_ledger", default=None)


def open_ledger() -> tuple[Ledger, Token[Ledger | None]]:
    """Open a ledger under the current one (reset the token, in LIFO order, to close it)."""
    ledger = Ledger(_ledger.get())
    return ledger, _ledger.set(ledger)


def close_ledger(token: Token[Ledger | None]) -> None:
    _ledger.reset(token)


def record_spend(usage: TokenUsage) -> None:
    """Add one call's usage to every open ledger (nothing when none is open)."""
    ledger = _ledger.get()
    if ledger is None:
        return
    single = UsageTotals((usage,))
    while ledger is not None:
        ledger.spent = ledger.spent.combined(single)
        ledger = ledger.parent

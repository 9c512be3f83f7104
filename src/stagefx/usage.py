"""Token usage totals per model: kept in the state, summed across branches."""

from __future__ import annotations

from typing import final

import attrs

from stagefx.conversation import TokenUsage

__all__ = ["UsageTotals"]


@final
@attrs.frozen(slots=True)
class UsageTotals:
    """Input and output tokens per model, for one execution.

    Completions add to the `UsageTotals` in the state (`state.get(UsageTotals)`);
    `concurrent` adds what every branch used, whichever state the merge keeps.
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

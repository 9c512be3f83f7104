"""The conversation with a model: inputs, outputs, tool requests and responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias, final

import attrs

from stagefx._core.content import ContentElement, MultimodalContent

__all__ = [
    "ModelContext",
    "ModelInput",
    "ModelOutput",
    "ModelToolRequest",
    "ModelToolResponse",
    "RateLimitHint",
    "TokenUsage",
]


def _frozen_arguments(value: Mapping[str, object]) -> Mapping[str, object]:
    return dict(value)


@final
@attrs.frozen(slots=True)
class ModelToolRequest:
    """The model asking for one tool call: an id, the tool's name and its arguments."""

    identifier: str
    tool: str
    arguments: Mapping[str, object] = attrs.field(  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type
        factory=dict, converter=_frozen_arguments
    )

    def __hash__(self) -> int:
        return hash((self.identifier, self.tool))


@final
@attrs.frozen(slots=True)
class ModelToolResponse:
    """The answer to one tool request; `error` marks a failed call the model should see."""

    identifier: str
    tool: str
    content: MultimodalContent
    error: bool = False


@final
@attrs.frozen(slots=True)
class ModelInput:
    """A turn given to the model: user content and, after tool calls, their responses."""

    content: MultimodalContent = MultimodalContent.empty
    tool_responses: tuple[ModelToolResponse, ...] = ()

    @classmethod
    def of(
        cls, *elements: ContentElement, tool_responses: tuple[ModelToolResponse, ...] = ()
    ) -> ModelInput:
        return cls(MultimodalContent.of(*elements), tool_responses)


@final
@attrs.frozen(slots=True)
class TokenUsage:
    """Tokens a model call consumed, per model."""

    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


@final
@attrs.frozen(slots=True)
class RateLimitHint:
    """What the provider said is left of its rate limits when it answered.

    `remaining_requests` / `remaining_tokens`: what may still be sent (None:
    not said); `reset_requests` / `reset_tokens`: seconds from the answer until
    that limit is back to full (None: not said). The OpenAI provider reads
    them from the `x-ratelimit-*` headers; a `RateLimits` uses them to hold
    calls when the provider has less left than its own budget would send.

    Example: `RateLimitHint(remaining_tokens=0, reset_tokens=6.0)`
    """

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None


@final
@attrs.frozen(slots=True)
class ModelOutput:
    """A turn produced by the model: content, and the tool calls it asks for.

    `usage`, `finish_reason` and `limits` (the provider's rate-limit hint, see
    `RateLimitHint`) describe the call that produced it; they do not take part
    in equality, so contexts compare by what was said. `limits` is not kept
    by the codec (cassettes, step records): it only matters the moment the
    answer arrives. `provider_data` is what only its provider reads, JSON-like,
    to be sent back with the next turn unchanged (Anthropic's thinking blocks
    and their signatures, Gemini's thought signatures): kept by the codec, left
    out of equality and of the answer's text.
    """

    content: MultimodalContent = MultimodalContent.empty
    tool_requests: tuple[ModelToolRequest, ...] = ()
    usage: TokenUsage | None = attrs.field(default=None, eq=False)
    finish_reason: str | None = attrs.field(default=None, eq=False)
    limits: RateLimitHint | None = attrs.field(default=None, eq=False)
    provider_data: Mapping[str, object] = attrs.field(  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type
        factory=dict, eq=False, converter=_frozen_arguments
    )

    @classmethod
    def of(
        cls, *elements: ContentElement, tool_requests: tuple[ModelToolRequest, ...] = ()
    ) -> ModelOutput:
        return cls(MultimodalContent.of(*elements), tool_requests)


ModelContext: TypeAlias = tuple[ModelInput | ModelOutput, ...]
"""The conversation so far, oldest first."""

"""Which Anthropic model to call, with what options; a provider in the Env."""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

__all__ = ["AnthropicConfig"]


def _check(name: str, value: object, *, optional: bool) -> None:
    """Token counts are ints >= 1 (None: unset, where allowed)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"AnthropicConfig({name}=...) needs an int >= 1, got {value!r}")


@final
@attrs.frozen(slots=True)
class AnthropicConfig:
    """Use the Messages API (`/v1/messages`) with `model`.

    `max_tokens` is required, as the API requires it. `thinking_budget`
    turns extended thinking on with that many tokens (at least 1024, below
    `max_tokens`). `extra` holds any other request field; a stage's own
    `**extra` wins over it.
    """

    model: str
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    thinking_budget: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    def __attrs_post_init__(self) -> None:
        _check("max_tokens", self.max_tokens, optional=False)
        _check("thinking_budget", self.thinking_budget, optional=True)

    def options(self) -> dict[str, object]:
        """The request fields these settings add (unset ones left out)."""
        options: dict[str, object] = {"max_tokens": self.max_tokens}
        for name, value in (
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("top_k", self.top_k),
        ):
            if value is not None:
                options[name] = value
        if self.thinking_budget is not None:
            options["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_budget}
        return {**options, **self.extra}

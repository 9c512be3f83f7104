"""Which Gemini model to call, with what options; a provider in the Env."""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

__all__ = ["GeminiConfig"]


@final
@attrs.frozen(slots=True)
class GeminiConfig:
    """Call the Gemini API (`models/{model}:generateContent`) with `model`.

    `thinking_budget` is the thinking tokens allowed (0 turns thinking off
    where the model allows it). `extra` holds any other request field: a
    `generationConfig` field (snake_case or camelCase, e.g. `seed`,
    `stop_sequences`), or a top-level one (`safetySettings`, `toolConfig`,
    `cachedContent`); a stage's own `**extra` wins over it.
    """

    model: str
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    thinking_budget: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    def options(self) -> dict[str, object]:
        """The request options these settings add (unset ones left out)."""
        values: dict[str, object] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_output_tokens": self.max_output_tokens,
            "thinking_budget": self.thinking_budget,
        }
        return {**{key: value for key, value in values.items() if value is not None}, **self.extra}

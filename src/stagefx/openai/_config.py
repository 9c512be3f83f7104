"""Which OpenAI API to call, with what model and options; providers in the Env."""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

__all__ = ["OpenAIChatConfig", "OpenAIResponsesConfig"]


def _options(**values: object) -> dict[str, object]:
    return {key: value for key, value in values.items() if value is not None}


@final
@attrs.frozen(slots=True)
class OpenAIResponsesConfig:
    """Use the Responses API (`/v1/responses`) with `model`.

    `extra` holds any other request field; a stage's own `**extra` wins over it.
    """

    model: str
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    def options(self) -> dict[str, object]:
        """The request fields these settings add (unset ones left out)."""
        return {
            **_options(
                temperature=self.temperature,
                top_p=self.top_p,
                max_output_tokens=self.max_output_tokens,
            ),
            **self.extra,
        }


@final
@attrs.frozen(slots=True)
class OpenAIChatConfig:
    """Use the Chat Completions API (`/v1/chat/completions`) with `model`.

    This is the API OpenAI-compatible local servers speak (Ollama, vLLM,
    LM Studio, llama.cpp): point `OpenAI(base_url=...)` at them.
    """

    model: str
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    def options(self) -> dict[str, object]:
        """The request fields these settings add (unset ones left out)."""
        return {
            **_options(
                temperature=self.temperature,
                top_p=self.top_p,
                max_completion_tokens=self.max_completion_tokens,
            ),
            **self.extra,
        }

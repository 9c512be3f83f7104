"""What one model call is: the request a provider is asked, and the failures
it may answer with as values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias, final

import attrs

from stagefx._core.conversation import ModelContext

__all__ = ["FailureKind", "ModelFailure", "ModelRequest", "OutputSpec", "ToolSpec"]

FailureKind: TypeAlias = Literal[
    "rate_limited",
    "unavailable",
    "refused",
    "context_too_long",
    "invalid_request",
    "authentication",
]


@final
@attrs.frozen(slots=True)
class ModelFailure:
    """An expected provider failure, as a value; stages lift it into a `ModelError`.

    `message` must hold nothing secret: it ends up in exceptions and logs.
    """

    kind: FailureKind
    message: str
    retry_after: float | None = None


@final
@attrs.frozen(slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description, JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, object]


@final
@attrs.frozen(slots=True)
class OutputSpec:
    """What shape of answer is wanted: free text, any JSON or YAML, or a schema."""

    mode: Literal["auto", "text", "json", "yaml", "schema"] = "auto"
    schema: Mapping[str, object] | None = None
    name: str | None = None


@final
@attrs.frozen(slots=True)
class ModelRequest:
    """Everything a provider needs for one model call."""

    instructions: str
    context: ModelContext
    tools: tuple[ToolSpec, ...] = ()
    output: OutputSpec = OutputSpec()
    extra: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

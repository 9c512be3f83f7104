"""Reading a provider's JSON body without trusting it: each field is checked
as it is read, a body of the wrong shape is a `MalformedBody` naming where,
and a body that cannot be read is the `unavailable` failure `malformed` says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from stagefx._core.errors import describe_error
from stagefx._core.request import ModelFailure
from stagefx._core.secrets import Scrubber

__all__ = ["MAX_TOKENS", "MalformedBody", "items", "malformed", "mapping", "text", "token_count"]


class MalformedBody(ValueError):
    """A body that is JSON but not the shape the API promises."""


def mapping(value: object, where: str) -> Mapping[str, object]:
    """`value` as a JSON object, or a `MalformedBody` naming where it was expected."""
    if not isinstance(value, Mapping):
        raise MalformedBody(f"expected an object at {where}, got {type(value).__name__}")
    return cast("Mapping[str, object]", value)  # a JSON object: its keys are str


def items(value: object, where: str) -> list[object]:
    """`value` as a JSON list, or a `MalformedBody`."""
    if not isinstance(value, list):
        raise MalformedBody(f"expected a list at {where}, got {type(value).__name__}")
    return cast("list[object]", value)


def text(value: object, where: str) -> str:
    """`value` as text, or a `MalformedBody`."""
    if not isinstance(value, str):
        raise MalformedBody(f"expected text at {where}, got {type(value).__name__}")
    return value


MAX_TOKENS: Final = 10**15
"""Token counts above this (or below 0) are not counts: they read as 0."""


def token_count(value: object) -> int:
    """A token count from the body; anything that is not a plausible one is 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return 0


def malformed(what: str, error: Exception, scrub: Scrubber) -> ModelFailure:
    """`unavailable`, for a body or a stream (`what`: "response from OpenAI")
    that could not be read: not JSON, not UTF-8, too deep, not the shape."""
    return ModelFailure("unavailable", f"malformed {what}: {scrub.clip(describe_error(error))}")

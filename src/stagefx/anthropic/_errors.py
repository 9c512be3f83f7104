"""Anthropic's failures as typed `ModelFailure`s, with nothing secret in the message.

- `failure_of`: an HTTP error the anthropic client raised.
- `body_failure`: an error object inside an answer (an `error` event midway
  through a stream, or a 200 body of `"type": "error"`).

The wait a server asks for is `stagefx._model.http`'s to read, and what a
message may hold `stagefx._core.secrets.Scrubber`'s to decide, as for every provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

import anthropic

from stagefx._core.request import FailureKind, ModelFailure
from stagefx._core.secrets import Scrubber
from stagefx._model.http import rate_limited, retry_after

__all__ = ["body_failure", "failure_of", "kind_of"]


_KINDS: Mapping[str, FailureKind] = {
    # Anthropic's error types (https://docs.claude.com/en/api/errors).
    "invalid_request_error": "invalid_request",
    "request_too_large": "invalid_request",
    "not_found_error": "invalid_request",
    "billing_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "authentication",
    "rate_limit_error": "rate_limited",
    "api_error": "unavailable",
    "overloaded_error": "unavailable",
    "timeout_error": "unavailable",
}

_TOO_LONG: Final = (
    "prompt is too long",
    "context limit",
    "context window",
    "context length",
    "too many tokens",
)


def too_long(message: str) -> bool:
    """Whether an invalid request's message says the context is too long
    (Anthropic: "prompt is too long: 208310 tokens > 200000 maximum")."""
    lowered = message.lower()
    return any(phrase in lowered for phrase in _TOO_LONG)


def kind_of(kind: object, message: str = "") -> FailureKind:
    """The failure kind an error type names; an invalid request whose message
    says the prompt is too long is `context_too_long`; unknown: `unavailable`."""
    found = _KINDS.get(kind, "unavailable") if isinstance(kind, str) else "unavailable"
    if found == "invalid_request" and too_long(message):
        return "context_too_long"
    return found


def body_failure(error: object, what: str) -> ModelFailure:
    """The failure an error object (`{"type": "error", "error": {"type",
    "message"}}`, or its inner object) describes. Its message is the server's
    text, unscrubbed: the provider scrubs every failure it returns."""
    if not isinstance(error, Mapping):
        return ModelFailure("unavailable", f"{what} with no error object")
    fields = cast("Mapping[str, object]", error)  # a JSON object: its keys are str
    inner = fields.get("error")
    if isinstance(inner, Mapping):
        fields = cast("Mapping[str, object]", inner)
    kind, told = fields.get("type"), fields.get("message")
    message = told if isinstance(told, str) else ""
    label = kind if isinstance(kind, str) else None
    detail = ": ".join(part for part in (label, message) if part) or "no message"
    return ModelFailure(kind_of(kind, message), f"{what}: {detail}")


def failure_of(error: anthropic.APIError, scrub: Scrubber, max_retry_after: float) -> ModelFailure:
    """The `ModelFailure` for an error the anthropic client raised, its message
    scrubbed; a 429's `retry_after` is capped at `max_retry_after`.

    429 is `rate_limited`; 401 and 403 `authentication`; a 400 or 413 saying
    the prompt is too long `context_too_long`; 408 and 409 `unavailable`
    (transient); other 4xx `invalid_request`; 5xx and 529 ("overloaded")
    `unavailable`.
    """
    if isinstance(error, anthropic.APITimeoutError):
        return ModelFailure("unavailable", "Anthropic request timed out")
    if isinstance(error, anthropic.APIConnectionError):
        return ModelFailure(
            "unavailable", f"could not reach Anthropic: {type(error.__cause__).__name__}"
        )
    if not isinstance(error, anthropic.APIStatusError):
        return ModelFailure("unavailable", f"Anthropic error: {scrub.clip(_told(error.message))}")
    status = error.status_code
    told = _told(error.api_message) or _told(error.message)
    kind = error.type
    detail = ": ".join(part for part in (kind, told) if part)
    message = f"Anthropic {status}: {scrub.clip(detail or 'no message')}"
    if status == 429:
        return rate_limited(message, retry_after(error.response.headers, max_retry_after))
    if status in (401, 403):
        return ModelFailure("authentication", message)
    if status in (400, 413) and too_long(told):
        return ModelFailure("context_too_long", message)
    if status in (408, 409):
        return ModelFailure("unavailable", message)
    if 400 <= status < 500:
        return ModelFailure("invalid_request", message)
    if status >= 500:
        return ModelFailure("unavailable", message)
    # A status the client raised for that is no HTTP error: an error event
    # mid-stream (status 200) is read from its body by the stream's reader.
    found = body_failure(error.body, "Anthropic failed")
    return ModelFailure(found.kind, scrub.clip(found.message))


def _told(message: object) -> str:
    return message if isinstance(message, str) else ""

"""Anthropic's failures as typed `ModelFailure`s, with nothing secret in the message.

- `failure_of`: an HTTP error the anthropic client raised.
- `body_failure`: an error object inside an answer (an `error` event midway
  through a stream, or a 200 body of `"type": "error"`).
- `retry_after`: the wait a server asks for, parsed leniently and capped.
- `Scrubber`: the provider's key taken out of any text a failure carries
  (stagefx's one secret policy), before it is shortened.

These follow `stagefx.openai._errors`, which cannot be imported here: it
needs the `openai` SDK.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from typing import Final, cast, final

import anthropic

from stagefx._model import FailureKind, ModelFailure
from stagefx._secrets import scrub

__all__ = ["MAX_MESSAGE", "Scrubber", "body_failure", "failure_of", "kind_of", "retry_after"]

MAX_MESSAGE: Final = 1000
"""Characters of a server's own text a failure message keeps (after scrubbing)."""


@final
class Scrubber:
    """Takes the provider's keys out of text by stagefx's one secret policy
    (`stagefx._secrets.scrub`)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(keys)

    def __call__(self, text: str) -> str:
        return scrub(text, self._keys)

    def clip(self, text: str, limit: int = MAX_MESSAGE) -> str:
        """`text` scrubbed, then cut to `limit` characters (never cut before
        scrubbing: a cut key would no longer match)."""
        text = self(text)
        return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more)"


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


def retry_after(
    headers: object, maximum: float, *, now: float | None = None
) -> tuple[float | None, str]:
    """Seconds the server asks to wait, at most `maximum`, and a note when capped.

    Read leniently: `retry-after-ms`, else `retry-after` as seconds or as an
    HTTP date. Negative waits are 0; waits past `maximum` (or not finite)
    are `maximum`, with the note "server asked to wait N s; capped at M s".
    Text that is none of these is no advice: `(None, "")`.
    """
    asked = _asked(headers, now)
    if asked is None:
        return None, ""
    if asked <= maximum:  # False for nan: capped like inf
        return max(asked, 0.0), ""
    return maximum, f"server asked to wait {_seconds(asked)} s; capped at {_seconds(maximum)} s"


def header(headers: object, name: str) -> str | None:
    """A header's value, stripped (None when absent or unreadable)."""
    get = getattr(headers, "get", None)
    try:
        value = get(name) if callable(get) else None
    except Exception:  # a headers object that cannot be read has nothing to say
        return None
    return value.strip() if isinstance(value, str) else None


def _asked(headers: object, now: float | None) -> float | None:
    milliseconds = _number(header(headers, "retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = header(headers, "retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    moment = http_date(value)
    if moment is None:
        return None
    base = http_date(header(headers, "date") or "")
    return moment - (base if base is not None else now if now is not None else time.time())


def _number(text: str | None) -> float | None:
    if not text or len(text) > 400:  # no number of seconds needs more
        return None
    try:
        return float(text)
    except ValueError:
        return None


def http_date(text: str) -> float | None:
    """An HTTP date as a POSIX timestamp (a date without a zone is UTC)."""
    if not text or len(text) > 400:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    except (ValueError, TypeError, OverflowError, OSError, IndexError):
        return None


def _seconds(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


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
        seconds, note = retry_after(error.response.headers, max_retry_after)
        return ModelFailure("rate_limited", f"{message} ({note})" if note else message, seconds)
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

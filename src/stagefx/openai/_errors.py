"""OpenAI's failures as typed `ModelFailure`s, with nothing secret in the message.

- `failure_of`: an HTTP error the openai client raised.
- `body_failure`: an error object inside an answer (a Responses body whose
  `status` is `failed`, or an OpenAI-compatible server's 200 with `error`).
- `retry_after`: the wait a server asks for, parsed leniently and capped.
- `Scrubber`: the provider's API key and anything else secret taken out of
  any text a failure carries (stagefx's one secret policy), before it is shortened.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from typing import cast, final

import openai

from stagefx._model import FailureKind, ModelFailure
from stagefx._secrets import scrub

__all__ = ["MAX_MESSAGE", "Scrubber", "body_failure", "failure_of", "kind_of", "retry_after"]

MAX_MESSAGE = 1000
"""Characters of a server's own text a failure message keeps (after scrubbing)."""


@final
class Scrubber:
    """Takes the provider's keys out of text by stagefx's one secret policy
    (`stagefx._secrets.scrub`: each key as sent, URL-encoded or escaped, the
    environment's credentials, `Bearer` tokens and `sk-...` shapes)."""

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
    # ResponseErrorCode in OpenAI's OpenAPI description, plus the codes and
    # types its HTTP errors and OpenAI-compatible servers use.
    "rate_limit_exceeded": "rate_limited",
    "rate_limit_error": "rate_limited",
    "too_many_requests": "rate_limited",
    "server_error": "unavailable",
    "vector_store_timeout": "unavailable",
    "internal_error": "unavailable",
    "service_unavailable": "unavailable",
    "overloaded": "unavailable",
    "overloaded_error": "unavailable",
    "timeout": "unavailable",
    "context_length_exceeded": "context_too_long",
    "invalid_prompt": "invalid_request",
    "invalid_request_error": "invalid_request",
    "data_residency_mismatch": "invalid_request",
    "invalid_base64_image": "invalid_request",
    "empty_image_file": "invalid_request",
    "failed_to_download_image": "invalid_request",
    "unsupported_image_media_type": "invalid_request",
    "bio_policy": "refused",
    "image_content_policy_violation": "refused",
    "content_policy_violation": "refused",
    "content_filter": "refused",
    "invalid_api_key": "authentication",
    "authentication_error": "authentication",
}


def kind_of(code: object, kind: object = None, message: str = "") -> FailureKind:
    """The failure kind an error code (else its type) names: rate limits are
    `rate_limited`, server errors `unavailable`, context length
    `context_too_long`, invalid requests (image errors included)
    `invalid_request`, policy violations `refused`; anything else `unavailable`."""
    if "context length" in message.lower():
        return "context_too_long"
    for name in (code, kind):
        if not isinstance(name, str):
            continue
        found = _KINDS.get(name.lower())
        if found is not None:
            return found
        if name.startswith(("image_", "invalid_image")):
            return "invalid_request"
    return "unavailable"


def body_failure(error: object, what: str) -> ModelFailure:
    """The failure an error object in an answer describes (`what` says where it
    was: "the response failed"). Its message is the server's text, unscrubbed:
    the provider scrubs every failure it returns."""
    if not isinstance(error, Mapping):
        return ModelFailure("unavailable", f"{what} with no error object")
    fields = cast("Mapping[str, object]", error)  # a JSON object: its keys are str
    code, kind, told = fields.get("code"), fields.get("type"), fields.get("message")
    message = told if isinstance(told, str) else ""
    label = code if isinstance(code, str) else kind if isinstance(kind, str) else None
    detail = ": ".join(part for part in (label, message) if part) or "no message"
    return ModelFailure(kind_of(code, kind, message), f"{what}: {detail}")


def retry_after(
    headers: object, maximum: float, *, now: float | None = None
) -> tuple[float | None, str]:
    """Seconds the server asks to wait, at most `maximum`, and a note when capped.

    Read leniently: `retry-after-ms`, else `retry-after` as seconds (int or
    float) or as an HTTP date (counted from the answer's `Date` header when it
    has one, else from `now` or the wall clock). Negative waits are 0; waits
    past `maximum` (a year, `inf`, `1e999`, `nan`, a date far ahead) are
    `maximum`, with the note "server asked to wait N s; capped at M s".
    Text that is none of these (`soon`) is no advice: `(None, "")`.
    """
    asked = _asked(headers, now)
    if asked is None:
        return None, ""
    if asked <= maximum:  # False for nan: capped like inf
        return max(asked, 0.0), ""
    return maximum, f"server asked to wait {_seconds(asked)} s; capped at {_seconds(maximum)} s"


def _header(headers: object, name: str) -> str | None:
    get = getattr(headers, "get", None)
    value = get(name) if callable(get) else None
    return value.strip() if isinstance(value, str) else None


def _asked(headers: object, now: float | None) -> float | None:
    milliseconds = _number(_header(headers, "retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = _header(headers, "retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    moment = _date(value)
    if moment is None:
        return None
    base = _date(_header(headers, "date") or "")
    return moment - (base if base is not None else now if now is not None else time.time())


def _number(text: str | None) -> float | None:
    if not text or len(text) > 400:  # no number of seconds needs more
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> float | None:
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


def failure_of(error: openai.APIError, scrub: Scrubber, max_retry_after: float) -> ModelFailure:
    """The `ModelFailure` for an error the openai client raised, its message
    scrubbed; a 429's `retry_after` is capped at `max_retry_after`."""
    if isinstance(error, openai.APITimeoutError):
        return ModelFailure("unavailable", "OpenAI request timed out")
    if isinstance(error, openai.APIConnectionError):
        return ModelFailure(
            "unavailable", f"could not reach OpenAI: {type(error.__cause__).__name__}"
        )
    if not isinstance(error, openai.APIStatusError):
        return ModelFailure("unavailable", f"OpenAI error: {scrub.clip(_told(error.message))}")
    status = error.status_code
    told = _told(error.message)
    prefix = f"Error code: {status}"
    detail = told.removeprefix(prefix).removeprefix(" - ") if told.startswith(prefix) else told
    message = f"OpenAI {status}: {scrub.clip(detail or 'no message')}"
    code = error.code or ""
    if status == 429:
        seconds, note = retry_after(error.response.headers, max_retry_after)
        return ModelFailure("rate_limited", f"{message} ({note})" if note else message, seconds)
    if status in (401, 403):
        return ModelFailure("authentication", message)
    if code == "context_length_exceeded" or "context length" in detail.lower():
        return ModelFailure("context_too_long", message)
    if status in (408, 409):  # the openai client retries these as transient
        return ModelFailure("unavailable", message)
    if 400 <= status < 500:
        return ModelFailure("invalid_request", message)
    return ModelFailure("unavailable", message)


def _told(message: object) -> str:
    return message if isinstance(message, str) else ""

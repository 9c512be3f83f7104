"""Gemini's failures as typed `ModelFailure`s, with nothing secret in the message.

- `failure_of`: an HTTP error the `google-genai` client raised (its JSON
  `error` object: `code`, `message`, `status`, `details`).
- `retry_delay`: the wait a 429 asks for, from its `google.rpc.RetryInfo`
  detail (`retryDelay: "2s"`), else a `Retry-After` header; capped.

What a message may hold is `stagefx._core.secrets.Scrubber`'s to decide, as for
every provider; a wait past the cap is cut by `stagefx._model.http.capped`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, cast

from google.genai import errors

from stagefx._core.request import ModelFailure
from stagefx._core.secrets import Scrubber
from stagefx._model.http import capped, header, rate_limited

__all__ = ["failure_of", "retry_delay"]


RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"


_DURATION: Final = re.compile(r"\s*(\d{1,18}(?:\.\d{1,18})?)s?\s*")


def _seconds_of(text: object) -> float | None:
    """Seconds in a protobuf Duration's JSON (`"2s"`, `"0.5s"`) or a plain
    number of seconds; None for anything else."""
    if not isinstance(text, str) or len(text) > 100:
        return None
    found = _DURATION.fullmatch(text)
    return float(found.group(1)) if found else None


def _details(body: object) -> list[Mapping[str, object]]:
    """The `details` of an error body (`{"error": {...}}` or the error itself)."""
    if not isinstance(body, Mapping):
        return []
    fields = cast("Mapping[str, object]", body)  # a JSON object: its keys are str
    inner = fields.get("error")
    if isinstance(inner, Mapping):
        fields = cast("Mapping[str, object]", inner)
    found = fields.get("details")
    if not isinstance(found, list):
        return []
    return [
        cast("Mapping[str, object]", detail)
        for detail in cast("list[object]", found)
        if isinstance(detail, Mapping)
    ]


def retry_delay(body: object, headers: object, maximum: float) -> tuple[float | None, str]:
    """Seconds a 429 asks to wait, at most `maximum`, and a note when capped:
    the `retryDelay` of its `google.rpc.RetryInfo` detail, else its
    `Retry-After` header (seconds). Garbage is no advice: `(None, "")`."""
    asked: float | None = None
    for detail in _details(body):
        if detail.get("@type") == RETRY_INFO:
            asked = _seconds_of(detail.get("retryDelay"))
            break
    if asked is None:
        asked = _seconds_of(header(headers, "retry-after"))
    return capped(asked, maximum)


_TOO_LONG: Final = (
    "input token count",
    "exceeds the maximum number of tokens",
    "context length",
    "too long",
)


def failure_of(error: errors.APIError, scrub: Scrubber, max_retry_after: float) -> ModelFailure:
    """The `ModelFailure` for an error the client raised, its message
    scrubbed; a 429's wait is capped at `max_retry_after`.

    429 is `rate_limited`; 401, 403 and a 400 whose `ErrorInfo` reason is
    `API_KEY_INVALID` (Gemini's answer to a wrong key) `authentication`; a 400
    saying the input has too many tokens `context_too_long`; other 4xx
    `invalid_request` (408 and 409 `unavailable`); 5xx and the rest `unavailable`.
    """
    code = error.code if isinstance(cast(object, error.code), int) else 0
    told: str = error.message if isinstance(error.message, str) else ""
    status = error.status if isinstance(cast(object, error.status), str) else ""
    label = f"{code} {status}".strip()
    message = f"Gemini {label}: {scrub.clip(told or 'no message')}"
    if code == 429:
        response: object = getattr(
            error, "response", None
        )  # the SDK's HTTP response, of whichever client
        body: object = getattr(error, "details", None)  # the error's JSON
        return rate_limited(
            message, retry_delay(body, getattr(response, "headers", None), max_retry_after)
        )
    found: object = getattr(error, "details", None)  # the error's JSON
    reasons = {detail.get("reason") for detail in _details(found)}
    if code in (401, 403) or "API_KEY_INVALID" in reasons or status == "UNAUTHENTICATED":
        return ModelFailure("authentication", message)
    if code == 400 and any(phrase in told.lower() for phrase in _TOO_LONG):
        return ModelFailure("context_too_long", message)
    if code in (408, 409):
        return ModelFailure("unavailable", message)
    if 400 <= code < 500:
        return ModelFailure("invalid_request", message)
    return ModelFailure("unavailable", message)

"""OpenAI client errors as typed `ModelFailure`s, with nothing secret in the message."""

from __future__ import annotations

import email.utils
import time

import openai

from stagefx._env import redact
from stagefx._model import ModelFailure

__all__ = ["failure_of", "retry_after"]


def retry_after(headers: object) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, `retry-after` in
    seconds, or `retry-after` as an HTTP date."""
    get = getattr(headers, "get", None)
    if not callable(get):
        return None
    milliseconds = get("retry-after-ms")
    if isinstance(milliseconds, str):
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    seconds = get("retry-after")
    if not isinstance(seconds, str):
        return None
    try:
        return max(float(seconds), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(seconds) if seconds else None
        return None if parsed is None else max(parsed.timestamp() - time.time(), 0.0)


def _safe(message: str) -> str:
    return str(redact({"message": message})["message"])


def failure_of(error: openai.APIError) -> ModelFailure:
    """The `ModelFailure` for an error the openai client raised."""
    if isinstance(error, openai.APITimeoutError):
        return ModelFailure("unavailable", "OpenAI request timed out")
    if isinstance(error, openai.APIConnectionError):
        return ModelFailure(
            "unavailable", f"could not reach OpenAI: {type(error.__cause__).__name__}"
        )
    if not isinstance(error, openai.APIStatusError):
        return ModelFailure("unavailable", _safe(f"OpenAI error: {error.message}"))
    status = error.status_code
    message = _safe(f"OpenAI {status}: {error.message}")
    code = error.code or ""
    if status == 429:
        return ModelFailure("rate_limited", message, retry_after(error.response.headers))
    if status in (401, 403):
        return ModelFailure("authentication", message)
    if code == "context_length_exceeded" or "context length" in error.message.lower():
        return ModelFailure("context_too_long", message)
    if 400 <= status < 500:
        return ModelFailure("invalid_request", message)
    return ModelFailure("unavailable", message)

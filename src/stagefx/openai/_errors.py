"""OpenAI's failures as typed `ModelFailure`s, with nothing secret in the message.

- `failure_of`: an HTTP error the openai client raised.
- `body_failure`: an error object inside an answer (a Responses body whose
  `status` is `failed`, or an OpenAI-compatible server's 200 with `error`).

The wait a server asks for is `stagefx._model.http`'s to read, and what a
message may hold `stagefx._core.secrets.Scrubber`'s to decide, as for every provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import openai

from stagefx._core.request import FailureKind, ModelFailure
from stagefx._core.secrets import Scrubber
from stagefx._model.http import rate_limited, retry_after

__all__ = ["body_failure", "failure_of", "kind_of"]


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
        return rate_limited(message, retry_after(error.response.headers, max_retry_after))
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

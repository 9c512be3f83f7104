"""What HTTP tells a provider, read without trusting the server: how long it
asks to wait (leniently, and capped: garbage is no advice and no wait is
endless), whether a failure was the connection's rather than a bug, and
what an answer's headers add to it."""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import attrs

from stagefx._core.conversation import ModelOutput, RateLimitHint
from stagefx._core.request import ModelFailure
from stagefx._core.secrets import Scrubber

__all__ = [
    "answered",
    "capped",
    "finite_seconds",
    "header",
    "http_date",
    "is_transport",
    "rate_limited",
    "retry_after",
    "sent",
]

T = TypeVar("T")
E = TypeVar("E", bound=Exception)

_TRANSPORT_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11", "h2", "anyio"})


def is_transport(error: Exception) -> bool:
    """Whether `error` says the connection failed (an HTTP client's or socket's
    error), not that the provider's code did."""
    if isinstance(error, OSError | RecursionError):
        return True
    return type(error).__module__.partition(".")[0] in _TRANSPORT_PACKAGES


async def sent(
    provider: str,
    request: Awaitable[T],
    api_error: type[E],
    failure_of: Callable[[E], ModelFailure],
) -> T | ModelFailure:
    """What `request` (a call of `provider`'s SDK client) answers; the failure
    `failure_of` makes of the SDK's `api_error`; `unavailable` when the
    connection broke, whichever layer of the HTTP stack noticed (or,
    defensively, when the SDK's own reading of an error body ran out of
    stack). Anything else is a bug, raised as such."""
    try:
        return await request
    except api_error as error:
        return failure_of(error)
    except Exception as error:
        if not is_transport(error):
            raise
        return ModelFailure(
            "unavailable", f"could not read {provider}'s answer: {type(error).__name__}"
        )


def finite_seconds(value: float, where: str) -> float:
    """`value` (a wait or a timeout a caller gives, `where`) as seconds; a
    `ValueError` unless it is a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(cast(object, value), int | float)  # may be untyped
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{where} needs finite seconds >= 0, got {value!r}")
    return float(value)


def answered(
    decoded: ModelOutput | ModelFailure,
    headers: object,
    scrub: Scrubber,
    provider: str,
    hint: Callable[[object], RateLimitHint | None],
    max_retry_after: float,
) -> ModelOutput | ModelFailure:
    """What `provider` answers for `decoded`, read from a body that came with
    `headers`: an output with the rate-limit hint `hint` reads in them; a
    failure with its message scrubbed and named for `provider`, a rate
    limit's wait read from them (at most `max_retry_after`, see `retry_after`)."""
    if isinstance(decoded, ModelOutput):
        found = hint(headers)
        return decoded if found is None else attrs.evolve(decoded, limits=found)
    message = f"{provider}: {scrub.clip(decoded.message)}"
    if decoded.kind != "rate_limited":
        return ModelFailure(decoded.kind, message)
    return rate_limited(message, retry_after(headers, max_retry_after))


def rate_limited(message: str, wait: tuple[float | None, str]) -> ModelFailure:
    """A `rate_limited` failure that waits `wait` (the seconds and the note
    `retry_after` or `capped` give), the note added to `message`."""
    seconds, note = wait
    return ModelFailure("rate_limited", f"{message} ({note})" if note else message, seconds)


def retry_after(
    headers: object, maximum: float, *, now: float | None = None
) -> tuple[float | None, str]:
    """Seconds the server asks to wait, at most `maximum`, and a note when capped.

    Read leniently: `retry-after-ms`, else `retry-after` as seconds (int or
    float) or as an HTTP date (counted from the answer's `Date` header when it
    has one, else from `now` or the wall clock). See `capped`. Text that is
    none of these (`soon`) is no advice: `(None, "")`.
    """
    return capped(_requested_wait(headers, now), maximum)


def capped(asked: float | None, maximum: float) -> tuple[float | None, str]:
    """A wait a server asked for, at most `maximum`, and a note when cut:
    negative waits are 0; waits past `maximum` (a year, `inf`, `nan`) are
    `maximum`, noted "server asked to wait N s; capped at M s"."""
    if asked is None:
        return None, ""
    if asked <= maximum:  # False for nan: capped like inf
        return max(asked, 0.0), ""
    return maximum, f"server asked to wait {_seconds(asked)} s; capped at {_seconds(maximum)} s"


def header(headers: object, name: str, *, longest: int | None = None) -> str | None:
    """A header's value, stripped (None when absent or unreadable, or longer
    than `longest` characters: garbage, when no value it may hold needs more)."""
    get = getattr(headers, "get", None)
    try:
        value = get(name) if callable(get) else None
    except Exception:  # a headers object that cannot be read has nothing to say
        return None
    if not isinstance(value, str) or (longest is not None and len(value) > longest):
        return None
    return value.strip()


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


def _requested_wait(headers: object, now: float | None) -> float | None:
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


def _seconds(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"

"""What HTTP tells a provider, read without trusting the server: how long it
asks to wait (leniently, and capped: garbage is no advice and no wait is
endless), and whether a failure was the connection's rather than a bug."""

from __future__ import annotations

import datetime
import email.utils
import math
import time

__all__ = ["capped", "header", "http_date", "is_transport", "retry_after"]

_TRANSPORT_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "h11", "h2", "anyio"})


def is_transport(error: Exception) -> bool:
    """Whether `error` says the connection failed (an HTTP client's or socket's
    error), not that the provider's code did."""
    if isinstance(error, OSError | RecursionError):
        return True
    return type(error).__module__.partition(".")[0] in _TRANSPORT_PACKAGES


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


def header(headers: object, name: str) -> str | None:
    """A header's value, stripped (None when absent or unreadable)."""
    get = getattr(headers, "get", None)
    try:
        value = get(name) if callable(get) else None
    except Exception:  # a headers object that cannot be read has nothing to say
        return None
    return value.strip() if isinstance(value, str) else None


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

"""Anthropic's `anthropic-ratelimit-*` answer headers, read leniently into a `RateLimitHint`."""

from __future__ import annotations

import datetime
import math
import re
import time
from typing import Final

from stagefx._core.conversation import RateLimitHint
from stagefx._model.http import header, http_date

__all__ = ["rate_limit_hint"]

_MAX_HEADER: Final = 100
"""Longer values are garbage: no count or timestamp needs more characters."""

_COUNT: Final = re.compile(r"\d{1,18}")


def rate_limit_hint(headers: object, *, now: float | None = None) -> RateLimitHint | None:
    """The hint in `headers` (anything with `.get(name)`), or None if it holds none.

    `anthropic-ratelimit-requests-remaining` / `-tokens-remaining` are counts;
    `anthropic-ratelimit-requests-reset` / `-tokens-reset` are RFC 3339
    times, turned into seconds from the answer's `Date` header (else from
    `now`, else the wall clock). A value that cannot be read is left out.
    """
    date = http_date(_value(headers, "date") or "")
    base = date if date is not None else now if now is not None else time.time()
    hint = RateLimitHint(
        remaining_requests=_count(_value(headers, "anthropic-ratelimit-requests-remaining")),
        remaining_tokens=_count(_value(headers, "anthropic-ratelimit-tokens-remaining")),
        reset_requests=_reset(_value(headers, "anthropic-ratelimit-requests-reset"), base),
        reset_tokens=_reset(_value(headers, "anthropic-ratelimit-tokens-reset"), base),
    )
    return None if hint == RateLimitHint() else hint


def _value(headers: object, name: str) -> str | None:
    value = header(headers, name)
    return value if value is not None and len(value) <= _MAX_HEADER else None


def _count(text: str | None) -> int | None:
    return int(text) if text and _COUNT.fullmatch(text) else None


def _reset(text: str | None, base: float) -> float | None:
    """Seconds from `base` until the RFC 3339 time `text` (0 if past)."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    try:
        seconds = moment.timestamp() - base
    except (OverflowError, OSError, ValueError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None

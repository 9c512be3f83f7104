"""OpenAI's `x-ratelimit-*` answer headers, read leniently into a `RateLimitHint`."""

from __future__ import annotations

import math
import re
from typing import Final

from stagefx._core.conversation import RateLimitHint
from stagefx._model.http import header

__all__ = ["parse_duration", "rate_limit_hint"]

_MAX_HEADER: Final = 100
"""Longer values are garbage: no count or duration needs more characters."""

_COUNT: Final = re.compile(r"\d{1,18}")
_DURATION: Final = re.compile(r"(?:\d{1,18}(?:\.\d{1,18})?(?:h|ms|us|µs|ns|m|s))+")
_PART: Final = re.compile(r"(\d{1,18}(?:\.\d{1,18})?)(h|ms|us|µs|ns|m|s)")
_PLAIN: Final = re.compile(r"\d{1,18}(?:\.\d{1,18})?")
_UNIT: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def rate_limit_hint(headers: object) -> RateLimitHint | None:
    """The hint in `headers` (anything with `.get(name)`), or None if it holds
    none: `x-ratelimit-remaining-requests` / `-tokens` (counts) and
    `x-ratelimit-reset-requests` / `-tokens` (durations, see `parse_duration`).
    A value that cannot be read is left out; the others still count."""
    hint = RateLimitHint(
        remaining_requests=_count(_header(headers, "x-ratelimit-remaining-requests")),
        remaining_tokens=_count(_header(headers, "x-ratelimit-remaining-tokens")),
        reset_requests=parse_duration(_header(headers, "x-ratelimit-reset-requests")),
        reset_tokens=parse_duration(_header(headers, "x-ratelimit-reset-tokens")),
    )
    return None if hint == RateLimitHint() else hint


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration ("1s", "6m0s", "20ms", "1h2m3.5s") or a
    plain number of seconds ("0.5"); None for anything else."""
    if not text or len(text) > _MAX_HEADER:
        return None
    if _PLAIN.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(float(number) * _UNIT[unit] for number, unit in _PART.findall(text))
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def _count(text: str | None) -> int | None:
    return int(text) if text and _COUNT.fullmatch(text) else None


def _header(headers: object, name: str) -> str | None:
    return header(headers, name, longest=_MAX_HEADER)

"""The one secret policy: what counts as a secret, and how it is kept out.

A secret is a string a provider says it holds (its API key: `HoldsSecrets`),
the value of an environment variable named like a credential, or a string
shaped like a key (`sk-...`, `Bearer ...`). Logs, failure messages (a
provider's, a tool's answer to the model, a durable step's row) scrub them;
cassettes refuse to be written with one (a cassette is committed, so a
scrubbed answer would replay a lie).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final, final

import msgspec

__all__ = [
    "MAX_MESSAGE",
    "MIN_SECRET",
    "Scrubber",
    "held_secret",
    "redact",
    "scrub",
]

_SECRET_NAME = re.compile(
    r"(?:^|[_\-.])(api[_\-]?key|authori[sz]ation|secret|password|passwd|credentials?|token|auth)"
    r"(?:$|[_\-.])",
    re.IGNORECASE,
)
"""A whole word of a name: `api_key`, `OPENAI_API_KEY`, `access_token`,
`client_secret`, but not `input_tokens`, `max_tokens` or `tokenizer`."""

_KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+", re.IGNORECASE)

MIN_SECRET = 4
"""Secrets shorter than this (a placeholder key such as "x" for a local
server) are not scrubbed: replacing every "x" would garble each message and
protect nothing."""

_MIN_ENVIRONMENT = 8
"""Environment values shorter than this are not taken for credentials."""


def is_secret_name(name: str) -> bool:
    """Whether an attribute or environment variable named `name` holds a credential."""
    return _SECRET_NAME.search(name) is not None


def environment_secrets() -> tuple[str, ...]:
    """Values of this process's environment variables named like credentials."""
    return tuple(
        value
        for name, value in os.environ.items()
        if len(value) >= _MIN_ENVIRONMENT and is_secret_name(name)
    )


def _forms(secret: str) -> tuple[str, ...]:
    """`secret` as written, URL-encoded, and escaped as JSON writes it in a string."""
    try:
        escaped = msgspec.json.encode(secret)[1:-1].decode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no JSON file holds it
        escaped = secret
    return (secret, urllib.parse.quote(secret, safe=""), escaped)


def _all_forms(secrets: Iterable[str]) -> list[str]:
    """Every form of `secrets` and of the environment's credentials, longest
    first, so no part of a longer one is left behind."""
    forms = {
        form
        for secret in (*secrets, *environment_secrets())
        if len(secret) >= MIN_SECRET
        for form in _forms(secret)
    }
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with `secrets`, credentials from the environment and key-shaped
    strings replaced by `***`."""
    for form in _all_forms(secrets):
        text = text.replace(form, "***")
    return _KEY_SHAPE.sub("***", text)


def redact(attributes: Mapping[str, object], secrets: Iterable[str] = ()) -> dict[str, object]:
    """Attributes safe to log: values of secret-named attributes are hidden,
    and text values scrubbed."""
    known = tuple(secrets)
    safe: dict[str, object] = {}
    for key, value in attributes.items():
        if is_secret_name(key):
            safe[key] = "***"
        elif isinstance(value, str):
            safe[key] = scrub(value, known)
        elif value is None or isinstance(value, bool | int | float):
            safe[key] = value
        else:  # a container or an object: its text, scrubbed (its repr may hold anything)
            try:
                safe[key] = scrub(repr(value), known)
            except Exception:
                safe[key] = "<unprintable>"
    return safe


def held_secret(text: str, secrets: Iterable[str] = ()) -> str | None:
    """What secret `text` holds, described without showing it; None if none."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET and any(form in text for form in _forms(secret)):
            return "a configured secret"
    for name, value in os.environ.items():
        named = len(value) >= _MIN_ENVIRONMENT and is_secret_name(name)
        if named and any(form in text for form in _forms(value)):
            return f"the value of ${name}"
    if _KEY_SHAPE.search(text):
        return "an API-key-shaped string"
    return None


MAX_MESSAGE: Final = 1000
"""Characters of a server's own text a failure message keeps (after scrubbing)."""


@final
class Scrubber:
    """A provider's keys taken out of text by this policy (`scrub`), for the
    failure messages it returns."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(keys)

    def __call__(self, text: str) -> str:
        return scrub(text, self._keys)

    def clip(self, text: str, limit: int = MAX_MESSAGE) -> str:
        """`text` scrubbed, then cut to `limit` characters (never cut before
        scrubbing: a cut key would no longer match)."""
        text = self(text)
        return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more)"

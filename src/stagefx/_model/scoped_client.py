"""An SDK client a provider owns for the scopes it is open in: made on the
first call, closed when the last of those scopes exits."""

from __future__ import annotations

import abc
import os
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from stagefx._core.request import ModelFailure

__all__ = ["ScopedClient", "key_or_env", "keys_sent"]


class Closable(Protocol):
    """An SDK client: it holds connections until it is closed."""

    async def close(self) -> None: ...


class Keyed(Protocol):
    """An SDK client that sends an API key."""

    @property
    def api_key(self) -> str | None: ...


C = TypeVar("C", bound=Closable)


class ScopedClient(abc.ABC, Generic[C]):
    """A provider that owns one SDK client, a disposable:
    `ctx.scope(..., disposables=(provider,))`.

    The client is made on the first call (`_opened`), so a scope whose calls
    are all replayed from a cassette needs no API key. Scopes are counted: one
    provider may be entered by several at once (nested or overlapping), and
    its client is closed when the last of them exits; a scope entering after
    that makes a new one. A client given to the provider is used in any
    scope, or none, and never closed: whoever made it closes it.

    A provider says how its client is made (`_new_client`).
    """

    def __init__(self, given: C | None = None) -> None:
        self._given = given
        self._client: C | None = given
        self._entered = 0  # scopes inside which this provider is open

    async def __aenter__(self) -> Self:
        self._entered += 1
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered = max(self._entered - 1, 0)
        if self._entered or self._given is not None or self._client is None:
            return
        client, self._client = self._client, None  # a scope entering now makes a new one
        await client.close()

    def _opened(self) -> C | ModelFailure:
        """The client, made on the first call; a failure when it cannot be
        made (no API key). Raises `RuntimeError` outside every scope."""
        if not self._entered and self._given is None:
            raise RuntimeError(
                f"{type(self).__name__}() is not open: pass it in ctx.scope(..., disposables=(...))"
            )
        if self._client is None:
            made = self._new_client()
            if isinstance(made, ModelFailure):
                return made
            self._client = made
        return self._client

    @abc.abstractmethod
    def _new_client(self) -> C | ModelFailure:
        """A new client; a failure when there is no API key."""


def key_or_env(given: str | None, *variables: str) -> str | None:
    """The API key a provider sends: the one it was given, else the first of
    the environment `variables` set (None when there is none)."""
    if given is not None:
        return given
    for name in variables:
        if found := os.environ.get(name):
            return found
    return None


def keys_sent(
    api_key: str | None, given: Keyed | None, opened: Keyed | None, *variables: str
) -> tuple[str, ...]:
    """The API keys a provider sends, to keep out of messages and logs: the
    one it was given (`api_key`, else its `given` client's, else the first of
    the environment `variables` set), and its `opened` client's if that
    differs."""
    key = key_or_env(api_key if api_key is not None or given is None else given.api_key, *variables)
    found = (key, None if opened is None else opened.api_key)
    return tuple(dict.fromkeys(each for each in found if isinstance(each, str) and each))

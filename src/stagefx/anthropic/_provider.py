"""`Anthropic()`: the provider that owns one `AsyncAnthropic` client for a scope."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Final, Self, cast, final

import anthropic
import anyio
import attrs
import httpx2

from stagefx._core.conversation import ModelOutput
from stagefx._core.errors import describe_error
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import Scrubber
from stagefx._env.env import Env
from stagefx._model.generative import GenerativeModel, ModelStream
from stagefx._model.http import is_transport, retry_after
from stagefx.anthropic import _messages as messages
from stagefx.anthropic._config import AnthropicConfig
from stagefx.anthropic._errors import failure_of
from stagefx.anthropic._limits import rate_limit_hint
from stagefx.anthropic._stream import MessageStream

__all__ = ["Anthropic"]

_PATH: Final = "/v1/messages"


@final
class Anthropic(GenerativeModel):
    """The Anthropic provider, a disposable: `ctx.scope(..., disposables=(Anthropic(),))`.

    Entering it opens one `AsyncAnthropic` client (API key and base URL from
    the arguments, else `ANTHROPIC_API_KEY` and the SDK's default; `base_url`
    is the server root, as the SDK takes it); exiting closes it. Each call
    uses the latest `AnthropicConfig` in the Env. The client's own retries
    are off (`max_retries=0`): retry with `Stage.with_retry`, which waits on
    the Env's clock and honours Retry-After.

    Every failure comes back as a typed `ModelFailure`: 429 `rate_limited`
    with the server's Retry-After (a wait longer than `max_retry_after`
    seconds is cut to it), 401/403 `authentication`, a prompt too long
    `context_too_long`, other 4xx `invalid_request`, 5xx and 529
    ("overloaded") `unavailable`, `stop_reason: refusal` `refused`, and bodies
    or streams that cannot be read `unavailable`. No failure message holds
    the API key.

    An answer's `anthropic-ratelimit-requests-remaining` / `-tokens-remaining`
    and `-requests-reset` / `-tokens-reset` headers, when present, come back as
    `ModelOutput.limits` (a `RateLimitHint`).

    With extended thinking (`AnthropicConfig(thinking_budget=...)`), the
    model's thinking blocks are kept, as the API gave them and in order, in
    its `ModelOutput.provider_data` (`{"anthropic": {"thinking": [...]}}`,
    not in its content, which holds only what the model said) and sent back
    unchanged, signatures included, first in its turn, as the API requires
    when thinking meets tools.

    `stream` streams natively: text deltas as they arrive, then the same
    `ModelOutput` `generate` gives. A stream cut short, an error event midway
    or events that cannot be read end it with a typed failure; leaving early
    (`aclose`, cancellation) closes the HTTP response at once.

    One provider may be entered by several scopes at once: it stays open
    until the last of them exits.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 0,
        client: anthropic.AsyncAnthropic | None = None,
        max_retry_after: float = 60.0,
    ) -> None:
        if (
            isinstance(max_retry_after, bool)
            or not isinstance(cast(object, max_retry_after), int | float)  # may be untyped
            or not math.isfinite(max_retry_after)
            or max_retry_after < 0
        ):
            raise ValueError(
                f"Anthropic(max_retry_after=...) needs finite seconds >= 0, got {max_retry_after!r}"
            )
        self._settings = (api_key, base_url, timeout, max_retries)
        self._given = client
        self._client: anthropic.AsyncAnthropic | None = client
        self._max_retry_after = float(max_retry_after)
        self._entered = 0  # scopes inside which this provider is open

    async def __aenter__(self) -> Self:
        # The client is made on the first call, so a scope whose calls are all
        # replayed from a cassette needs no API key. Scopes are counted: the
        # client is closed when the last one exits.
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

    def __repr__(self) -> str:
        return "Anthropic()"  # never the key

    def _opened(self) -> anthropic.AsyncAnthropic | ModelFailure:
        """The client, made on the first call; a failure when there is no key."""
        if not self._entered and self._given is None:
            raise RuntimeError(
                "Anthropic() is not open: pass it in ctx.scope(..., disposables=(...))"
            )
        if self._client is None:
            api_key, base_url, timeout, max_retries = self._settings
            key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                return ModelFailure(
                    "authentication",
                    "no Anthropic API key: pass Anthropic(api_key=...) or set ANTHROPIC_API_KEY",
                )
            self._client = anthropic.AsyncAnthropic(
                api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries
            )
        return self._client

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Send `request` with the Env's config; failures come back typed.

        Raises `RuntimeError` when used outside its scope and `LookupError` when
        the Env holds no `AnthropicConfig` (both surface as `StageExecutionError`).
        """
        client = self._opened()
        if isinstance(client, ModelFailure):
            return client
        config = _config(env)
        body, tool = messages.encode_request(
            request, config.model, {**config.options(), **request.extra}
        )
        scrub = Scrubber(self.secrets())
        try:
            answer = await client.post(_PATH, cast_to=httpx2.Response, body=body)
        except anthropic.APIError as error:
            return failure_of(error, scrub, self._max_retry_after)
        except Exception as error:
            if not is_transport(error):  # anything else is a bug, raised as such
                raise
            return ModelFailure(
                "unavailable", f"could not read Anthropic's answer: {type(error).__name__}"
            )
        try:
            decoded = messages.decode_response(answer.json(), config.model, tool)
        except Exception as error:  # not JSON, not UTF-8, too deep, not the shape
            return ModelFailure(
                "unavailable",
                f"malformed response from Anthropic: {scrub.clip(describe_error(error))}",
            )
        return self._answered(decoded, answer.headers, scrub)

    def _answered(
        self, decoded: ModelOutput | ModelFailure, headers: httpx2.Headers, scrub: Scrubber
    ) -> ModelOutput | ModelFailure:
        """An output with the rate-limit hint of `headers`, or a failure with
        its message scrubbed (a rate limit's wait read from `headers`, capped)."""
        if isinstance(decoded, ModelOutput):
            hint = rate_limit_hint(headers)
            return decoded if hint is None else attrs.evolve(decoded, limits=hint)
        message = f"Anthropic: {scrub.clip(decoded.message)}"
        if decoded.kind != "rate_limited":
            return ModelFailure(decoded.kind, message)
        seconds, note = retry_after(headers, self._max_retry_after)
        return ModelFailure("rate_limited", f"{message} ({note})" if note else message, seconds)

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """Stream `request`: text deltas as they arrive, then the whole answer
        (as `generate` gives it), last.

        Failures come back typed, as the last item: an HTTP error before the
        stream starts as in `generate`; an `error` event midway as the failure
        its type names; a stream cut short or unreadable as `unavailable`.
        Leaving early closes the HTTP response at once.
        """
        client = self._opened()
        if isinstance(client, ModelFailure):
            yield client
            return
        config = _config(env)
        body, tool = messages.encode_request(
            request, config.model, {**config.options(), **request.extra}
        )
        body["stream"] = True
        reader = MessageStream(config.model, tool)
        scrub = Scrubber(self.secrets())
        try:
            # What `messages.create(stream=True)` does, with the body as built
            # and the events as JSON: one decoder reads streamed and whole answers.
            events = await client.post(
                _PATH,
                cast_to=object,
                body=body,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
        except anthropic.APIError as error:
            yield failure_of(error, scrub, self._max_retry_after)
            return
        except Exception as error:
            if not is_transport(error):  # as in `generate`: a bug, raised as such
                raise
            yield ModelFailure(
                "unavailable", f"could not read Anthropic's answer: {type(error).__name__}"
            )
            return
        final: ModelOutput | ModelFailure | None = None  # set early when the stream breaks
        try:
            while not reader.done:
                try:
                    delta = reader.feed(await events.__anext__())
                except StopAsyncIteration:
                    break
                except anthropic.APIStatusError as error:
                    if error.body is None or error.status_code >= 400:
                        final = _broken(error, scrub)
                        break
                    reader.fail(error.body)  # an `error` event: the failure it names
                    continue
                except Exception as error:  # cut, not JSON, not UTF-8, not the shape
                    final = _broken(error, scrub)
                    break
                if delta:
                    yield delta
            if final is None:
                try:
                    tail, answer = reader.finish()
                except Exception as error:  # what the events add up to is not a message
                    final = _broken(error, scrub)
                else:
                    if tail:
                        yield tail
                    final = self._answered(answer, events.response.headers, scrub)
        finally:
            with anyio.move_on_after(_CLOSE_SECONDS, shield=True), contextlib.suppress(Exception):
                await events.close()  # closing a broken connection changes no answer
        yield final

    def secrets(self) -> tuple[str, ...]:
        """The API key this provider sends (given, or from `ANTHROPIC_API_KEY`),
        and the key of the client it opened if that differs."""
        given = self._settings[0]
        if given is None and self._given is not None:
            given = self._given.api_key
        key = given if given is not None else os.environ.get("ANTHROPIC_API_KEY")
        keys = [key] if key else []
        opened = None if self._client is None else self._client.api_key
        if isinstance(opened, str) and opened and opened not in keys:
            keys.append(opened)
        return tuple(keys)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The model and options the Env's config selects (never the key)."""
        config = _config(env)
        return {"provider": "anthropic", "model": config.model, **config.options()}


_CLOSE_SECONDS: Final = 1.0
"""How long closing a stream's HTTP response may take (shielded from cancellation)."""


def _broken(error: Exception, scrub: Scrubber) -> ModelFailure:
    """`unavailable`, for a stream that could not be read to its end."""
    if isinstance(error, anthropic.APITimeoutError):
        return ModelFailure("unavailable", "the stream from Anthropic timed out")
    if isinstance(error, anthropic.APIConnectionError) or is_transport(error):
        cause = error.__cause__ if error.__cause__ is not None else error
        return ModelFailure(
            "unavailable", f"the stream from Anthropic broke off: {type(cause).__name__}"
        )
    return ModelFailure(
        "unavailable", f"malformed stream from Anthropic: {scrub.clip(describe_error(error))}"
    )


def _config(env: Env) -> AnthropicConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, AnthropicConfig):
            return provider
    raise LookupError(
        "no Anthropic config in the Env: add AnthropicConfig(model=..., max_tokens=...) "
        "to ctx.scope(...)"
    )

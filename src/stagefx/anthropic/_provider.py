"""`Anthropic()`: the provider that owns one `AsyncAnthropic` client for a scope."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Final, final

import anthropic
import httpx2

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import Scrubber
from stagefx._env.env import Env
from stagefx._model.body import malformed
from stagefx._model.event_stream import relay
from stagefx._model.generative import GenerativeModel, ModelStream
from stagefx._model.http import answered, finite_seconds, is_transport, sent
from stagefx._model.scoped_client import ScopedClient, key_or_env, keys_sent
from stagefx.anthropic import _messages as messages
from stagefx.anthropic._config import AnthropicConfig
from stagefx.anthropic._errors import failure_of
from stagefx.anthropic._limits import rate_limit_hint
from stagefx.anthropic._stream import MessageStream

__all__ = ["Anthropic"]

_PATH: Final = "/v1/messages"


@final
class Anthropic(ScopedClient[anthropic.AsyncAnthropic], GenerativeModel):
    """The Anthropic provider, a disposable: `ctx.scope(..., disposables=(Anthropic(),))`.

    Owns one `AsyncAnthropic` client (key and base URL from the arguments,
    else `ANTHROPIC_API_KEY` and the SDK's default) and calls the Messages API
    with the Env's latest `AnthropicConfig`, whole or streamed. Thinking
    blocks are kept in `ModelOutput.provider_data` and sent back unchanged,
    as the API requires when thinking meets tools. docs/providers.md has its
    failures, rate-limit hints, streaming and scopes.
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
        self._max_retry_after = finite_seconds(max_retry_after, "Anthropic(max_retry_after=...)")
        self._settings = (api_key, base_url, timeout, max_retries)
        super().__init__(client)

    def __repr__(self) -> str:
        return "Anthropic()"  # never the key

    def _new_client(self) -> anthropic.AsyncAnthropic | ModelFailure:
        given, base_url, timeout, max_retries = self._settings
        key = key_or_env(given, "ANTHROPIC_API_KEY")
        if not key:
            return ModelFailure(
                "authentication",
                "no Anthropic API key: pass Anthropic(api_key=...) or set ANTHROPIC_API_KEY",
            )
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

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
        answer = await sent(
            "Anthropic",
            client.post(_PATH, cast_to=httpx2.Response, body=body),
            anthropic.APIError,
            lambda error: failure_of(error, scrub, self._max_retry_after),
        )
        if isinstance(answer, ModelFailure):
            return answer
        try:
            decoded = messages.decode_response(answer.json(), config.model, tool)
        except Exception as error:  # not JSON, not UTF-8, too deep, not the shape
            return malformed("response from Anthropic", error, scrub)
        return self._answered(decoded, answer.headers, scrub)

    def _answered(
        self, decoded: ModelOutput | ModelFailure, headers: httpx2.Headers, scrub: Scrubber
    ) -> ModelOutput | ModelFailure:
        """`decoded` with what the answer's `headers` add (see `answered`)."""
        return answered(
            decoded, headers, scrub, "Anthropic", rate_limit_hint, self._max_retry_after
        )

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
        scrub = Scrubber(self.secrets())
        # What `messages.create(stream=True)` does, with the body as built and
        # the events as JSON: one decoder reads streamed and whole answers.
        events = await sent(
            "Anthropic",
            client.post(
                _PATH,
                cast_to=object,
                body=body,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            ),
            anthropic.APIError,
            lambda error: failure_of(error, scrub, self._max_retry_after),
        )
        if isinstance(events, ModelFailure):
            yield events
            return
        headers = events.response.headers
        answers = relay(
            events,
            MessageStream(config.model, tool),
            error_object=_error_event,
            broken=lambda error: _broken(error, scrub),
            answered=lambda answer: self._answered(answer, headers, scrub),
        )
        async with contextlib.aclosing(answers):
            async for item in answers:
                yield item

    def secrets(self) -> tuple[str, ...]:
        """The API key this provider sends (given, or from `ANTHROPIC_API_KEY`),
        and the key of the client it opened if that differs."""
        return keys_sent(self._settings[0], self._given, self._client, "ANTHROPIC_API_KEY")

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The model and options the Env's config selects (never the key)."""
        config = _config(env)
        return {"provider": "anthropic", "model": config.model, **config.options()}


def _error_event(error: Exception) -> object:
    """The error object an `error` event carried (the SDK raises it with
    status 200); None when the stream broke."""
    if isinstance(error, anthropic.APIStatusError) and error.status_code < 400:
        return error.body
    return None


def _broken(error: Exception, scrub: Scrubber) -> ModelFailure:
    """`unavailable`, for a stream that could not be read to its end."""
    if isinstance(error, anthropic.APITimeoutError):
        return ModelFailure("unavailable", "the stream from Anthropic timed out")
    if isinstance(error, anthropic.APIConnectionError) or is_transport(error):
        cause = error.__cause__ if error.__cause__ is not None else error
        return ModelFailure(
            "unavailable", f"the stream from Anthropic broke off: {type(cause).__name__}"
        )
    return malformed("stream from Anthropic", error, scrub)


def _config(env: Env) -> AnthropicConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, AnthropicConfig):
            return provider
    raise LookupError(
        "no Anthropic config in the Env: add AnthropicConfig(model=..., max_tokens=...) "
        "to ctx.scope(...)"
    )

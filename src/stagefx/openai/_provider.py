"""`OpenAI()`: the provider that owns one `AsyncOpenAI` client for a scope."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import cast, final

import httpx2
import openai

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import Scrubber
from stagefx._env.env import Env
from stagefx._model.body import malformed
from stagefx._model.event_stream import StreamReader, relay
from stagefx._model.generative import GenerativeModel, ModelStream
from stagefx._model.http import answered, finite_seconds, sent
from stagefx._model.scoped_client import ScopedClient, keys_sent
from stagefx.openai import _chat as chat
from stagefx.openai import _responses as responses
from stagefx.openai._config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._errors import failure_of
from stagefx.openai._limits import rate_limit_hint
from stagefx.openai._stream import ChatStream, ResponsesStream

__all__ = ["OpenAI"]


@final
class OpenAI(ScopedClient[openai.AsyncOpenAI], GenerativeModel):
    """The OpenAI provider, a disposable: `ctx.scope(..., disposables=(OpenAI(),))`.

    Owns one `AsyncOpenAI` client (key and base URL from the arguments, else
    `OPENAI_API_KEY` / `OPENAI_BASE_URL`) and calls the API the Env's latest
    `OpenAIResponsesConfig` or `OpenAIChatConfig` names, whole or streamed.
    docs/providers.md ("What every provider promises") has its failures,
    rate-limit hints, streaming and scopes.

    Example: `ctx.scope("app", OpenAIChatConfig(model="llama3.1"),
    disposables=(OpenAI(base_url="http://localhost:11434/v1", api_key="ollama"),))`
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 0,
        client: openai.AsyncOpenAI | None = None,
        max_retry_after: float = 60.0,
    ) -> None:
        self._max_retry_after = finite_seconds(max_retry_after, "OpenAI(max_retry_after=...)")
        self._settings = (api_key, base_url, timeout, max_retries)
        super().__init__(client)

    def __repr__(self) -> str:
        return "OpenAI()"  # never the key

    def _new_client(self) -> openai.AsyncOpenAI | ModelFailure:
        api_key, base_url, timeout, max_retries = self._settings
        try:
            return openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
            )
        except openai.OpenAIError:
            return ModelFailure(
                "authentication",
                "no OpenAI API key: pass OpenAI(api_key=...) or set OPENAI_API_KEY",
            )

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Send `request` to the API the Env's config names; failures come back typed.

        Raises `RuntimeError` when used outside its scope and `LookupError` when
        the Env holds no OpenAI config (both surface as `StageExecutionError`).
        """
        client = self._opened()
        if isinstance(client, ModelFailure):
            return client
        config = _config(env)
        if isinstance(config, OpenAIResponsesConfig):
            path, encode, decode = "/responses", responses.encode_request, responses.decode_response
        else:
            path, encode, decode = "/chat/completions", chat.encode_request, chat.decode_response
        body = encode(request, config.model, {**config.options(), **request.extra})
        scrub = Scrubber(self.secrets())
        answer = await sent(
            "OpenAI",
            client.post(path, cast_to=httpx2.Response, body=body),
            openai.APIError,
            lambda error: failure_of(error, scrub, self._max_retry_after),
        )
        if isinstance(answer, ModelFailure):
            return answer
        try:
            decoded = decode(answer.json(), config.model)
        except Exception as error:  # not JSON, not UTF-8, too deep, too long, not the shape
            return malformed("response from OpenAI", error, scrub)
        return self._answered(decoded, answer.headers, scrub)

    def _answered(
        self, decoded: ModelOutput | ModelFailure, headers: httpx2.Headers, scrub: Scrubber
    ) -> ModelOutput | ModelFailure:
        """`decoded` with what the answer's `headers` add (see `answered`)."""
        return answered(decoded, headers, scrub, "OpenAI", rate_limit_hint, self._max_retry_after)

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """Stream `request` from the API the Env's config names: text deltas as
        they arrive, then the whole answer (as `generate` gives it), last.

        Failures come back typed, as the last item: an HTTP error before the
        stream starts as in `generate`; an error event midway as the failure
        its code names; a stream cut short or unreadable as `unavailable`.
        Leaving early (`aclose`, cancellation) closes the HTTP response at
        once. Raises as `generate` does when used outside its scope or with
        no OpenAI config in the Env.
        """
        client = self._opened()
        if isinstance(client, ModelFailure):
            yield client
            return
        config = _config(env)
        options = {**config.options(), **request.extra}
        reader: StreamReader
        if isinstance(config, OpenAIResponsesConfig):
            path, reader = "/responses", ResponsesStream(config.model)
            body = {**responses.encode_request(request, config.model, options), "stream": True}
        else:
            path, reader = "/chat/completions", ChatStream(config.model)
            body = {**chat.encode_request(request, config.model, options), "stream": True}
            given = body.get("stream_options")
            # A JSON object (a caller's option): its keys are str.
            kept: Mapping[str, object] = (
                cast("Mapping[str, object]", given) if isinstance(given, Mapping) else {}
            )
            body["stream_options"] = {**kept, "include_usage": True}
        scrub = Scrubber(self.secrets())
        # What `responses.create(stream=True)` and `chat.completions.create(
        # stream=True)` do, with the body as built and the events as JSON:
        # one decoder reads streamed and whole answers alike.
        events = await sent(
            "OpenAI",
            client.post(
                path, cast_to=object, body=body, stream=True, stream_cls=openai.AsyncStream[object]
            ),
            openai.APIError,
            lambda error: failure_of(error, scrub, self._max_retry_after),
        )
        if isinstance(events, ModelFailure):
            yield events
            return
        headers = events.response.headers
        answers = relay(
            events,
            reader,
            error_object=_error_object,
            broken=lambda error: _broken(error, scrub),
            answered=lambda answer: self._answered(answer, headers, scrub),
            drain=True,
        )
        async with contextlib.aclosing(answers):
            async for item in answers:
                yield item

    def secrets(self) -> tuple[str, ...]:
        """The API key this provider sends (given, or from `OPENAI_API_KEY`),
        and the key of the client it opened if that differs."""
        return keys_sent(self._settings[0], self._given, self._client, "OPENAI_API_KEY")

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The API, model and options the Env's config selects (never the key)."""
        config = _config(env)
        api = "responses" if isinstance(config, OpenAIResponsesConfig) else "chat"
        return {"provider": "openai", "api": api, "model": config.model, **config.options()}


def _error_object(error: Exception) -> object:
    """The error object the server sent in place of an event (the SDK raises
    it); None when the stream broke."""
    if isinstance(error, openai.APIError) and not isinstance(error, openai.APIConnectionError):
        return error.body
    return None


def _broken(error: Exception, scrub: Scrubber) -> ModelFailure:
    """`unavailable`, for a stream that could not be read to its end: the
    connection was cut or timed out, or its chunks are not JSON or not the shape."""
    if isinstance(error, openai.APITimeoutError):
        return ModelFailure("unavailable", "the stream from OpenAI timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ if error.__cause__ is not None else error
        return ModelFailure(
            "unavailable", f"the stream from OpenAI broke off: {type(cause).__name__}"
        )
    return malformed("stream from OpenAI", error, scrub)


def _config(env: Env) -> OpenAIResponsesConfig | OpenAIChatConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, OpenAIResponsesConfig | OpenAIChatConfig):
            return provider
    raise LookupError(
        "no OpenAI config in the Env: add OpenAIResponsesConfig(model=...) or "
        "OpenAIChatConfig(model=...) to ctx.scope(...)"
    )

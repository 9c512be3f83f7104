"""`OpenAI()`: the provider that owns one `AsyncOpenAI` client for a scope."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Self, cast, final

import anyio
import attrs
import httpx2
import openai

from stagefx._core.conversation import ModelOutput
from stagefx._core.errors import describe_error
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import Scrubber
from stagefx._env.env import Env
from stagefx._model.generative import GenerativeModel, ModelStream
from stagefx._model.http import is_transport, retry_after
from stagefx.openai import _chat as chat
from stagefx.openai import _responses as responses
from stagefx.openai._config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._errors import failure_of
from stagefx.openai._limits import rate_limit_hint
from stagefx.openai._stream import ChatStream, ResponsesStream, StreamReader

__all__ = ["OpenAI"]


@final
class OpenAI(GenerativeModel):
    """The OpenAI provider, a disposable: `ctx.scope(..., disposables=(OpenAI(),))`.

    Entering it opens one `AsyncOpenAI` client (API key and base URL from the
    arguments, else `OPENAI_API_KEY` / `OPENAI_BASE_URL`); exiting closes it.
    Each call uses the latest `OpenAIResponsesConfig` or `OpenAIChatConfig` in
    the Env. The client's own retries are off (`max_retries=0`): retry with
    `Stage.with_retry`, which waits on the Env's clock and honours Retry-After.

    The server is not trusted. Every failure comes back as a typed
    `ModelFailure`: HTTP errors, Responses bodies whose `status` is `failed`,
    `incomplete` or `cancelled`, and bodies that cannot be read (not JSON,
    invalid UTF-8, too deep, integers past Python's digit limit, wrong
    shapes) as `unavailable`. A `Retry-After` wait longer than
    `max_retry_after` seconds (or not finite) is cut to it, and the message
    says so. Tool-call arguments that are not a JSON object reach the tool as
    `{"(arguments are not a JSON object)": text}`, which its validation
    answers with an error the model can correct. No failure message holds the
    API key, whatever its shape, nor a `Bearer` token.

    An answer's `x-ratelimit-remaining-requests` / `-tokens` and
    `x-ratelimit-reset-requests` / `-tokens` headers, when present, come back
    as `ModelOutput.limits` (a `RateLimitHint`; values that cannot be read
    are left out), which a `RateLimits` in the Env uses to hold calls.

    `stream` streams natively on both APIs (`"stream": true`): text deltas as
    they arrive, then the same `ModelOutput` `generate` gives for the whole
    body, tool calls, usage and limits included. A stream cut short, an error
    midway or chunks that cannot be read end it with a typed failure;
    leaving early (`aclose`, cancellation) closes the HTTP response at once.

    One provider may be entered by several scopes at once (nested or
    overlapping): it stays open until the last of them exits.

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
        if (
            isinstance(max_retry_after, bool)
            or not isinstance(cast(object, max_retry_after), int | float)  # may be untyped
            or not math.isfinite(max_retry_after)
            or max_retry_after < 0
        ):
            raise ValueError(
                f"OpenAI(max_retry_after=...) needs finite seconds >= 0, got {max_retry_after!r}"
            )
        self._settings = (api_key, base_url, timeout, max_retries)
        self._given = client
        self._client: openai.AsyncOpenAI | None = client
        self._max_retry_after = float(max_retry_after)
        self._entered = 0  # scopes inside which this provider is open

    @property
    def _open(self) -> bool:
        return self._entered > 0

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
        return "OpenAI()"  # never the key

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
        try:
            answer = await client.post(path, cast_to=httpx2.Response, body=body)
        except openai.APIError as error:
            return failure_of(error, scrub, self._max_retry_after)
        except Exception as error:
            # The connection broke (whichever layer of the HTTP stack noticed),
            # or (defensively) the client's own reading of an error body ran out
            # of stack. Anything else is a bug, raised as such.
            if not is_transport(error):
                raise
            return ModelFailure(
                "unavailable", f"could not read OpenAI's answer: {type(error).__name__}"
            )
        return self._decoded(answer, decode, config.model, scrub)

    def _opened(self) -> openai.AsyncOpenAI | ModelFailure:
        """The client, made on the first call; a failure when there is no key."""
        if not self._open and self._given is None:
            raise RuntimeError("OpenAI() is not open: pass it in ctx.scope(..., disposables=(...))")
        if self._client is None:
            api_key, base_url, timeout, max_retries = self._settings
            try:
                self._client = openai.AsyncOpenAI(
                    api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
                )
            except openai.OpenAIError:
                return ModelFailure(
                    "authentication",
                    "no OpenAI API key: pass OpenAI(api_key=...) or set OPENAI_API_KEY",
                )
        return self._client

    def _decoded(
        self,
        answer: httpx2.Response,
        decode: Callable[[object, str], ModelOutput | ModelFailure],
        model: str,
        scrub: Scrubber,
    ) -> ModelOutput | ModelFailure:
        """The body's output with the rate-limit hint of the answer's headers,
        or its failure with the message scrubbed and a rate limit's wait read
        from the answer's headers (capped)."""
        try:
            decoded = decode(answer.json(), model)
        except Exception as error:  # not JSON, not UTF-8, too deep, too long, not the shape
            return ModelFailure(
                "unavailable",
                f"malformed response from OpenAI: {scrub.clip(describe_error(error))}",
            )
        return self._answered(decoded, answer.headers, scrub)

    def _answered(
        self, decoded: ModelOutput | ModelFailure, headers: httpx2.Headers, scrub: Scrubber
    ) -> ModelOutput | ModelFailure:
        """An output with the rate-limit hint of `headers`, or a failure with
        its message scrubbed and a rate limit's wait read from `headers` (capped)."""
        if isinstance(decoded, ModelOutput):
            hint = rate_limit_hint(headers)
            return decoded if hint is None else attrs.evolve(decoded, limits=hint)
        message = f"OpenAI: {scrub.clip(decoded.message)}"
        if decoded.kind != "rate_limited":
            return ModelFailure(decoded.kind, message)
        seconds, note = retry_after(headers, self._max_retry_after)
        return ModelFailure("rate_limited", f"{message} ({note})" if note else message, seconds)

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
        try:
            # What `responses.create(stream=True)` and `chat.completions.create(
            # stream=True)` do, with the body as built and the events as JSON:
            # one decoder reads streamed and whole answers alike.
            events = await client.post(
                path, cast_to=object, body=body, stream=True, stream_cls=openai.AsyncStream[object]
            )
        except openai.APIError as error:
            yield failure_of(error, scrub, self._max_retry_after)
            return
        except Exception as error:
            if not is_transport(error):  # as in `generate`: a bug, raised as such
                raise
            yield ModelFailure(
                "unavailable", f"could not read OpenAI's answer: {type(error).__name__}"
            )
            return
        final: ModelOutput | ModelFailure | None = None  # set early when the stream breaks
        try:
            while not reader.done:
                try:
                    delta = reader.feed(await events.__anext__())
                except StopAsyncIteration:
                    break
                except openai.APIError as error:
                    if isinstance(error, openai.APIConnectionError) or error.body is None:
                        final = _broken(error, scrub)
                        break
                    reader.fail(error.body)  # an error object in place of an event
                    continue
                except Exception as error:  # not JSON, not UTF-8, not the shape
                    final = _broken(error, scrub)
                    break
                if delta:
                    yield delta
            if reader.done:
                await _drain(events)
            if final is None:
                try:
                    tail, answer = reader.finish()
                except Exception as error:  # what the events add up to is not the API's shape
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
        """The API key this provider sends (given, or from `OPENAI_API_KEY`),
        and the key of the client it opened if that differs."""
        given = self._settings[0]
        if given is None and self._given is not None:
            given = self._given.api_key
        key = given if given is not None else os.environ.get("OPENAI_API_KEY")
        keys = [key] if key else []
        opened = None if self._client is None else self._client.api_key
        if isinstance(opened, str) and opened and opened not in keys:
            keys.append(opened)
        return tuple(keys)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The API, model and options the Env's config selects (never the key)."""
        config = _config(env)
        api = "responses" if isinstance(config, OpenAIResponsesConfig) else "chat"
        return {"provider": "openai", "api": api, "model": config.model, **config.options()}


_DRAIN_SECONDS: Final = 0.1
"""How long what follows a stream's last event is read, so that a
well-behaved server's connection goes back to the pool."""

_CLOSE_SECONDS: Final = 1.0
"""How long closing a stream's HTTP response may take (shielded from cancellation)."""


async def _drain(events: openai.AsyncStream[object]) -> None:
    """Read the rest of a stream whose answer is complete, briefly."""
    with anyio.move_on_after(_DRAIN_SECONDS):
        try:
            while True:
                await events.__anext__()
        except Exception:  # StopAsyncIteration when the stream ends, as it should
            return


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
    return ModelFailure(
        "unavailable", f"malformed stream from OpenAI: {scrub.clip(describe_error(error))}"
    )


def _config(env: Env) -> OpenAIResponsesConfig | OpenAIChatConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, OpenAIResponsesConfig | OpenAIChatConfig):
            return provider
    raise LookupError(
        "no OpenAI config in the Env: add OpenAIResponsesConfig(model=...) or "
        "OpenAIChatConfig(model=...) to ctx.scope(...)"
    )

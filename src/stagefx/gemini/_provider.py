"""`Gemini()`: the provider that owns one `google.genai.Client(...).aio` for a scope."""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
from collections.abc import Mapping
from typing import Final, cast, final

import anyio
import attrs
import httpx2
from google import genai
from google.genai import errors, types

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import Scrubber
from stagefx._env.env import Env
from stagefx._model.body import malformed
from stagefx._model.event_stream import CLOSE_SECONDS
from stagefx._model.generative import GenerativeModel, ModelStream
from stagefx._model.http import finite_seconds, is_transport, sent
from stagefx._model.scoped_client import ScopedClient, key_or_env
from stagefx.gemini._config import GeminiConfig
from stagefx.gemini._errors import failure_of
from stagefx.gemini._generate import chunk_text, decode_chunks, encode_request

__all__ = ["Gemini"]

_KEY_VARIABLES: Final = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

_OPENED: contextvars.ContextVar[list[httpx2.Response] | None] = contextvars.ContextVar(
    "stagefx_gemini_opened", default=None
)
"""Where the HTTP client hands the responses it opens while a stream is being
started, so the stream can close its response when it is left early (the SDK's
own stream iterator does not close it)."""


async def _hand_over(response: httpx2.Response) -> None:
    held = _OPENED.get()
    if held is not None:
        held.append(response)


@final
@attrs.define
class _Opened:
    """The clients one scope uses: the SDK's and the HTTP client under it."""

    client: genai.Client
    http: httpx2.AsyncClient

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            self.client.close()  # the SDK's sync HTTP client, never used
            await self.client.aio.aclose()
            await self.http.aclose()


@final
class Gemini(ScopedClient[_Opened], GenerativeModel):
    """The Gemini provider, a disposable: `ctx.scope(..., disposables=(Gemini(),))`.

    Owns one `google.genai.Client(...).aio` (key from `api_key=`, else
    `GEMINI_API_KEY`, else `GOOGLE_API_KEY`; `base_url=` the server root) and
    sends the REST `GenerateContentRequest` body with the Env's latest
    `GeminiConfig`, whole or streamed. Thought signatures are kept in
    `ModelOutput.provider_data` and sent back on the parts that carried them.
    docs/providers.md has its failures, rate-limit hints, streaming and scopes.

    Example: `ctx.scope("app", GeminiConfig(model="gemini-2.5-flash"), disposables=(Gemini(),))`
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retry_after: float = 60.0,
    ) -> None:
        self._timeout = finite_seconds(timeout, "Gemini(timeout=...)")
        self._max_retry_after = finite_seconds(max_retry_after, "Gemini(max_retry_after=...)")
        self._api_key = api_key
        self._base_url = base_url
        super().__init__()

    def __repr__(self) -> str:
        return "Gemini()"  # never the key

    def _key(self) -> str | None:
        return key_or_env(self._api_key, *_KEY_VARIABLES)

    def _new_client(self) -> _Opened | ModelFailure:
        key = self._key()
        if not key:
            return ModelFailure(
                "authentication",
                "no Gemini API key: pass Gemini(api_key=...) or set GEMINI_API_KEY",
            )
        http = httpx2.AsyncClient(timeout=self._timeout, event_hooks={"response": [_hand_over]})
        options = types.HttpOptions(
            base_url=self._base_url,
            api_version="v1beta",  # the API Google describes (and stagefx checks bodies against)
            timeout=math.ceil(self._timeout * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # retries are the Stage's
            httpx_async_client=http,  # httpx2 runs on asyncio and trio alike
        )
        client = genai.Client(api_key=key, vertexai=False, http_options=options)
        return _Opened(client, http)

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Send `request` to `models/{model}:generateContent`; failures come back typed.

        Raises `RuntimeError` when used outside its scope and `LookupError` when
        the Env holds no `GeminiConfig` (both surface as `StageExecutionError`).
        """
        opened = self._opened()
        if isinstance(opened, ModelFailure):
            return opened
        config = _config(env)
        body = encode_request(request, config.model, {**config.options(), **request.extra})
        scrub = Scrubber(self.secrets())
        answer = await sent(
            "Gemini",
            _api(opened).async_request("post", f"models/{config.model}:generateContent", body),
            errors.APIError,
            lambda error: failure_of(error, scrub, self._max_retry_after),
        )
        if isinstance(answer, ModelFailure):
            return answer
        try:
            decoded = decode_chunks([json.loads(answer.body or "")], config.model)
        except Exception as error:  # not JSON, too deep, not the shape
            return malformed("response from Gemini", error, scrub)
        return _scrubbed(decoded, scrub)

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """Stream `request` from `models/{model}:streamGenerateContent?alt=sse`:
        text deltas as they arrive, then the whole answer (as `generate` gives
        it), last. Failures come back typed, as the last item; leaving early
        closes the HTTP response at once. Raises as `generate` does."""
        opened = self._opened()
        if isinstance(opened, ModelFailure):
            yield opened
            return
        config = _config(env)
        body = encode_request(request, config.model, {**config.options(), **request.extra})
        scrub = Scrubber(self.secrets())
        responses: list[httpx2.Response] = []
        final: ModelOutput | ModelFailure | None = None
        try:
            handed = _OPENED.set(responses)
            try:
                started = await sent(
                    "Gemini",
                    _api(opened).async_request_streamed(
                        "post", f"models/{config.model}:streamGenerateContent?alt=sse", body
                    ),
                    errors.APIError,
                    lambda error: failure_of(error, scrub, self._max_retry_after),
                )
            finally:
                _OPENED.reset(handed)  # before anything is yielded
            if isinstance(started, ModelFailure):
                final = started
            else:
                chunks: list[object] = []
                # The SDK's stream: an async iterator of `types.HttpResponse`s,
                # each one server-sent event's JSON.
                iterator = cast("_Events", started)
                while True:
                    try:
                        event = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    except errors.APIError as error:  # an error object in place of an event
                        final = failure_of(error, scrub, self._max_retry_after)
                        break
                    except Exception as error:  # cut, timed out, not JSON
                        final = _broken(error, scrub)
                        break
                    try:
                        chunk: object = json.loads(event.body or "")
                        delta = chunk_text(chunk)
                    except Exception as error:  # not the shape
                        final = _broken(error, scrub)
                        break
                    chunks.append(chunk)
                    if delta:
                        yield delta
                if final is None:
                    try:
                        final = _scrubbed(decode_chunks(chunks, config.model), scrub)
                    except Exception as error:  # what the chunks add up to is not the shape
                        final = _broken(error, scrub)
        finally:
            with anyio.move_on_after(CLOSE_SECONDS, shield=True):
                for response in responses:
                    with contextlib.suppress(Exception):  # closing a broken one changes nothing
                        await response.aclose()
        yield final

    def secrets(self) -> tuple[str, ...]:
        """The API key this provider sends (given, or from `GEMINI_API_KEY` /
        `GOOGLE_API_KEY`)."""
        key = self._key()
        return (key,) if key else ()

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The model and options the Env's config selects (never the key)."""
        config = _config(env)
        return {"provider": "gemini", "model": config.model, **config.options()}


class _Events:
    """What the SDK's `async_request_streamed` gives (it is typed `Any`)."""

    async def __anext__(self) -> types.HttpResponse:
        raise NotImplementedError


class _Api:
    """The part of the SDK's `BaseApiClient` this provider uses."""

    async def async_request(
        self, http_method: str, path: str, request_dict: dict[str, object]
    ) -> types.HttpResponse:
        raise NotImplementedError

    async def async_request_streamed(
        self, http_method: str, path: str, request_dict: dict[str, object]
    ) -> object:
        raise NotImplementedError


def _api(opened: _Opened) -> _Api:
    """The SDK's API client: it posts a JSON body to a path, as the SDK's
    `models.generate_content` does once it has built its body. The body
    stagefx builds is the REST one, checked against Google's API description."""
    return cast("_Api", opened.client.aio._api_client)  # pyright: ignore[reportPrivateUsage]  # the SDK's one way to send a REST body


def _scrubbed(decoded: ModelOutput | ModelFailure, scrub: Scrubber) -> ModelOutput | ModelFailure:
    if isinstance(decoded, ModelOutput):
        return decoded
    return ModelFailure(decoded.kind, f"Gemini: {scrub.clip(decoded.message)}", decoded.retry_after)


def _broken(error: Exception, scrub: Scrubber) -> ModelFailure:
    """`unavailable`, for a stream that could not be read to its end."""
    if isinstance(error, httpx2.TimeoutException):
        return ModelFailure("unavailable", "the stream from Gemini timed out")
    if is_transport(error):
        return ModelFailure(
            "unavailable", f"the stream from Gemini broke off: {type(error).__name__}"
        )
    return malformed("stream from Gemini", error, scrub)


def _config(env: Env) -> GeminiConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, GeminiConfig):
            return provider
    raise LookupError("no Gemini config in the Env: add GeminiConfig(model=...) to ctx.scope(...)")

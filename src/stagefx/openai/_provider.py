"""`OpenAI()`: the provider that owns one `AsyncOpenAI` client for a scope."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Self, final

import httpx2
import openai

from stagefx._conversation import ModelOutput
from stagefx._env import Env
from stagefx._model import GenerativeModel, ModelFailure, ModelRequest
from stagefx.openai import _chat as chat
from stagefx.openai import _responses as responses
from stagefx.openai._config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._errors import failure_of
from stagefx.openai._wire import MalformedBody

__all__ = ["OpenAI"]


@final
class OpenAI(GenerativeModel):
    """The OpenAI provider, a disposable: `ctx.scope(..., disposables=(OpenAI(),))`.

    Entering it opens one `AsyncOpenAI` client (API key and base URL from the
    arguments, else `OPENAI_API_KEY` / `OPENAI_BASE_URL`); exiting closes it.
    Each call uses the latest `OpenAIResponsesConfig` or `OpenAIChatConfig` in
    the Env. The client's own retries are off (`max_retries=0`): retry with
    `Stage.with_retry`, which waits on the Env's clock and honours Retry-After.

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
    ) -> None:
        self._settings = (api_key, base_url, timeout, max_retries)
        self._given = client
        self._client: openai.AsyncOpenAI | None = client
        self._open = False

    async def __aenter__(self) -> Self:
        # The client is made on the first call, so a scope whose calls are all
        # replayed from a cassette needs no API key.
        self._open = True
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._open = False
        if self._client is not None and self._given is None:
            await self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return "OpenAI()"  # never the key

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Send `request` to the API the Env's config names; failures come back typed.

        Raises `RuntimeError` when used outside its scope and `LookupError` when
        the Env holds no OpenAI config (both surface as `StageExecutionError`).
        """
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
        client = self._client
        config = _config(env)
        if isinstance(config, OpenAIResponsesConfig):
            path, encode, decode = "/responses", responses.encode_request, responses.decode_response
        else:
            path, encode, decode = "/chat/completions", chat.encode_request, chat.decode_response
        body = encode(request, config.model, {**config.options(), **request.extra})
        try:
            answer = await client.post(path, cast_to=httpx2.Response, body=body)
            return decode(answer.json(), config.model)
        except openai.APIError as error:
            return failure_of(error)
        except (json.JSONDecodeError, UnicodeDecodeError, MalformedBody) as error:
            return ModelFailure("unavailable", f"malformed response from OpenAI: {error}")
        except httpx2.HTTPError as error:
            return ModelFailure(
                "unavailable", f"could not read OpenAI's answer: {type(error).__name__}"
            )

    def secrets(self) -> tuple[str, ...]:
        """The API key this provider sends (given, or from `OPENAI_API_KEY`)."""
        given = self._settings[0]
        if given is None and self._given is not None:
            given = self._given.api_key
        key = given if given is not None else os.environ.get("OPENAI_API_KEY")
        return () if not key else (key,)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """The API, model and options the Env's config selects (never the key)."""
        config = _config(env)
        api = "responses" if isinstance(config, OpenAIResponsesConfig) else "chat"
        return {"provider": "openai", "api": api, "model": config.model, **config.options()}


def _config(env: Env) -> OpenAIResponsesConfig | OpenAIChatConfig:
    for provider in reversed(env.providers):
        if isinstance(provider, OpenAIResponsesConfig | OpenAIChatConfig):
            return provider
    raise LookupError(
        "no OpenAI config in the Env: add OpenAIResponsesConfig(model=...) or "
        "OpenAIChatConfig(model=...) to ctx.scope(...)"
    )

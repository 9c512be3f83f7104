"""The provider side: what a generative model is asked, and what it may answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TypeAlias, cast

from stagefx._core.conversation import ModelOutput
from stagefx._core.errors import (
    MissingEnvironmentError,
    ModelAuthenticationError,
    ModelContextTooLongError,
    ModelError,
    ModelInvalidRequestError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelUnavailableError,
)
from stagefx._core.iteration import close_iterator
from stagefx._core.request import FailureKind, ModelFailure, ModelRequest
from stagefx._core.state import StageState
from stagefx._env.env import Env, HoldsSecrets

__all__ = [
    "GenerativeModel",
    "ModelStream",
    "ModelStreamItem",
    "NO_ANSWER",
    "model_error",
    "missing_model",
]

ModelStreamItem: TypeAlias = "str | ModelOutput | ModelFailure"
"""What a model's stream yields: text deltas as they arrive, then its whole
answer (a `ModelOutput` whose text, `content.as_string()`, is the deltas
joined, or a failure). The answer is the first item that is not a `str`;
the stream is closed once it has come."""

ModelStream: TypeAlias = AsyncIterator[ModelStreamItem]


async def answer_of(stream: ModelStream) -> object:
    """A stream's answer: its first item that is not text (None if it has none).
    The stream is closed after it, whatever happens."""
    try:
        async for item in stream:
            if not isinstance(item, str):
                return item
        return None
    finally:
        await close_iterator(stream)


NO_ANSWER = "a model gave no answer (generate returned None, or its stream ended without one)"


class GenerativeModel(HoldsSecrets):
    """A provider: answers a request with a `ModelOutput` or a `ModelFailure`,
    whole (`generate`) or as a stream of text deltas ending with it (`stream`).

    Define either (a provider that streams natively defines both); each
    defaults to the other. Expected failures (rate limits, outages, refusals)
    are returned; anything raised is treated as a bug in the provider and
    surfaces with its cause. A role: subclass it to give an Env your model.
    An object that merely has a `generate` method is only a value to the Env.
    """

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Answer `request`; `env` gives access to configs and other providers.
        Default: `stream`'s answer (its first item that is not text)."""
        if type(self).stream is GenerativeModel.stream:
            raise NotImplementedError(f"{type(self).__name__} must define generate() or stream()")
        answer = await answer_of(self.stream(request, env))
        return cast("ModelOutput | ModelFailure", answer)  # checked by the model boundary

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """Answer `request` as it is produced: text deltas (`str`), then the
        whole answer, last. Leaving early (`aclose`) must stop the call.
        Default: `generate`'s answer, whole (its text is then one delta)."""
        yield await self.generate(request, env)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        """What besides the request decides this model's answer (provider, model
        name, options), as JSON-like data. A `Recorder` stores it with each call
        and matches on it; it must never hold a secret. Default: the class name."""
        return {"provider": type(self).__name__}

    def secrets(self) -> tuple[str, ...]:
        """Strings this model holds that must never be written anywhere (its
        API key): a `Recorder` refuses to write a cassette holding one."""
        return ()


def missing_model(state: StageState) -> MissingEnvironmentError:
    return MissingEnvironmentError(
        "no GenerativeModel in the Env: add one to ctx.scope(...) or Env.of(...), "
        "e.g. OpenAI() from stagefx.openai, or ScriptedModel(...) from stagefx.testing",
        state=state,
    )


_ERRORS: Mapping[FailureKind, type[ModelError]] = {
    "unavailable": ModelUnavailableError,
    "refused": ModelRefusalError,
    "context_too_long": ModelContextTooLongError,
    "invalid_request": ModelInvalidRequestError,
    "authentication": ModelAuthenticationError,
}


def model_error(failure: ModelFailure, state: StageState) -> ModelError:
    """The `ModelError` subclass for `failure`, carrying `state`."""
    if failure.kind == "rate_limited":
        return ModelRateLimitError(failure.message, state=state, retry_after=failure.retry_after)
    return _ERRORS[failure.kind](failure.message, state=state)
